// Conversations on workerd's own KV (Miniflare, as `wrangler dev` runs it); a KV that throws stands in only for an
// outage.
import { beforeEach, describe, expect, it } from 'vitest';
import { conversationItems, conversationItemsPage, createBody } from '../../edge/conversation-routes';
import { ConversationStore, withoutItem } from '../../edge/conversation-store';
import { KEY_WRITE_INTERVAL_MS } from '../../edge/kv-record';
import { responseId, responseOfItem } from '../../edge/responses-format';
import { planResponse } from '../../edge/responses-reply';
import { ResponseStore, type StoredInputItem } from '../../edge/response-store';
import { refusalOfAsync } from '../support/refusal';
import { storedRecord } from '../support/stored-response';
import { workerdKv } from '../support/workerd-kv';

const workerd = workerdKv();
let kv: KVNamespace;
beforeEach(() => {
  kv = workerd();
});

const user = (id: string, content: string): StoredInputItem => ({ type: 'message', role: 'user', content, id });

/** A KV whose reads or writes fail, as in an outage. */
function failingKv(fail: 'get' | 'put'): KVNamespace {
  return new Proxy(kv, {
    get(target, name) {
      if (name === fail) return () => Promise.reject(new Error('KV is down'));
      const value = Reflect.get(target, name) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

describe('ConversationStore', () => {
  it("keeps a key's conversations its own, with conv_ ids, and deletes them", async () => {
    const a = new ConversationStore(kv, 'key-a', 0, 1 << 20);
    const b = new ConversationStore(kv, 'key-b', 0, 1 << 20);
    const made = await a.create([user('msg_1', 'hello')], { topic: 'x' });
    expect(made.id).toMatch(/^conv_[0-9a-f]{48}$/);
    expect(await a.get(made.id)).toMatchObject({ id: made.id, metadata: { topic: 'x' }, items: [user('msg_1', 'hello')] });
    expect(await b.get(made.id)).toBeNull();
    expect(await b.delete(made.id)).toBe(false);
    expect(await b.change(made.id, (record) => ({ ...record, metadata: {} }), 'metadata')).toBeNull();
    expect(await a.delete(made.id)).toBe(true);
    expect(await a.get(made.id)).toBeNull();
    expect(await a.delete(made.id)).toBe(false);
  });

  it('sets the expiration from the TTL on each write (none at 0)', async () => {
    const before = Date.now() / 1000;
    const store = new ConversationStore(kv, 'key-ttl', 7 * 86_400, 1 << 20);
    const made = await store.create([], {});
    const name = await store.keyFor(made.id);
    const expiration = (await kv.list({ prefix: name })).keys.find((k) => k.name === name)?.expiration;
    expect(expiration).toBeGreaterThanOrEqual(Math.floor(before + 7 * 86_400));
    const forever = new ConversationStore(kv, 'key-forever', 0, 1 << 20);
    const kept = await forever.create([], {});
    const keptName = await forever.keyFor(kept.id);
    expect((await kv.list({ prefix: keptName })).keys.find((k) => k.name === keptName)?.expiration).toBeUndefined();
  });

  it("waits out KV's second after the last write, and runs one isolate's changes one after the other, none lost", async () => {
    const store = new ConversationStore(kv, 'key-rate', 0, 1 << 20);
    const made = await store.create([], {});
    // Three appends at once: each reads what the one before wrote, a second apart. Timed from the create's own write
    // (the first append waits out KV's second from it), not from when its put returned: a slow put is no shorter wait.
    const appended = await Promise.all(['a', 'b', 'c'].map((text) => store.change(made.id, (record) => ({ ...record, items: [...record.items, user(`msg_${text}`, text)] }), 'items')));
    expect(Date.now() - made.writtenAt).toBeGreaterThanOrEqual(3 * KEY_WRITE_INTERVAL_MS);
    expect((await store.get(made.id))?.items.map((item) => item.id)).toEqual(['msg_a', 'msg_b', 'msg_c']);
    const times = appended.map((record) => record?.writtenAt ?? 0);
    expect(times[0] - made.writtenAt).toBeGreaterThanOrEqual(KEY_WRITE_INTERVAL_MS);
    expect(times[1] - times[0]).toBeGreaterThanOrEqual(KEY_WRITE_INTERVAL_MS);
    expect(times[2] - times[1]).toBeGreaterThanOrEqual(KEY_WRITE_INTERVAL_MS);
  });

  it('deletes a conversation in its turn: a change that read it before the delete does not write it back after (review h130)', async () => {
    const store = new ConversationStore(kv, 'key-del', 0, 1 << 20);
    const made = await store.create([user('msg_1', 'hello')], {});
    // The change waits out KV's second after the create; the delete comes meanwhile.
    const changing = store.change(made.id, (record) => ({ ...record, items: [...record.items, user('msg_2', 'again')] }), 'items');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await store.delete(made.id)).toBe(true);
    expect(await changing).toMatchObject({ items: [{ id: 'msg_1' }, { id: 'msg_2' }] });
    expect(await store.get(made.id)).toBeNull();
  });

  it('refuses with a 400 naming the param a create or change that would pass SSSD_RESPONSE_MAX_BYTES, and leaves it as it was', async () => {
    const store = new ConversationStore(kv, 'key-cap', 0, 600);
    expect((await refusalOfAsync(store.create([user('msg_big', 'x'.repeat(700))], {}))).toBody().error).toMatchObject({ param: 'items', message: expect.stringContaining('SSSD_RESPONSE_MAX_BYTES') });
    const made = await store.create([user('msg_1', 'small')], {});
    // Bytes, not characters: 150 euro signs are 450 bytes.
    const err = await refusalOfAsync(store.change(made.id, (record) => ({ ...record, items: [...record.items, user('msg_2', '€'.repeat(150))] }), 'conversation'));
    expect(err.status).toBe(400);
    expect(err.param).toBe('conversation');
    expect((await store.get(made.id))?.items.map((item) => item.id)).toEqual(['msg_1']);
  });

  it('is a 503 with its own code where KV fails', async () => {
    const store = new ConversationStore(kv, 'key-down', 0, 1 << 20);
    const made = await store.create([], {});
    for (const [fail, run] of [
      ['get', (s: ConversationStore) => s.get(made.id)],
      ['put', (s: ConversationStore) => s.create([], {})],
    ] as const) {
      const err = await refusalOfAsync(run(new ConversationStore(failingKv(fail), 'key-down', 0, 1 << 20)));
      expect(err.status, fail).toBe(503);
      expect(err.code, fail).toBe('conversation_store_unavailable');
    }
  });
});

describe('conversation bodies and pages', () => {
  it('reads items as Responses input, ids kept or made, errors naming items.N', async () => {
    const responses = new ResponseStore(kv, 'key-body', 0, 1 << 20);
    const { items, metadata } = await createBody({ items: [{ role: 'user', content: 'hi' }, { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'yo' }], id: 'msg_mine' }], metadata: { a: 'b' } }, responses);
    expect(metadata).toEqual({ a: 'b' });
    expect(items[0]).toMatchObject({ role: 'user', content: 'hi', id: expect.stringMatching(/^msg_[0-9a-f]{48}$/) });
    expect(items[1].id).toBe('msg_mine');
    // No body (the SDK's create()) is an empty conversation; a JSON null is a body, no object, refused as [] is (review h175: an empty conversation).
    expect(await createBody(undefined, responses)).toEqual({ items: [], metadata: {} });
    for (const body of [null, []]) expect(await refusalOfAsync(createBody(body, responses)), JSON.stringify(body)).toMatchObject({ status: 400, code: 'invalid_value', message: 'The body is a JSON object: {"items": [...], "metadata": {...}}.' });
    const param = async (body: unknown) => (await refusalOfAsync(createBody(body, responses))).param;
    expect(await param({ items: [{ role: 'user', content: [{ type: 'input_image', image_url: 'x' }] }] })).toBe('items.0.content.0.type');
    expect(await param({ items: [{ role: 'user', content: 'a', id: 'x' }, { role: 'user', content: 'b', id: 'x' }] })).toBe('items.1');
    expect(await param({ items: Array.from({ length: 21 }, () => ({ role: 'user', content: 'a' })) })).toBe('items');
    expect(await param({ items: [{ id: 'msg_nowhere' }] })).toBe('items.0.id');
    expect(await param({ metadata: { k: 'x'.repeat(513) } })).toBe('metadata.k');
    expect(await param({ title: 'x' })).toBe('title');
  });

  it('refuses an item id a client could not name again (a space, a slash), as in a request\'s input, naming the item', async () => {
    const responses = new ResponseStore(kv, 'key-ids', 0, 1 << 20);
    for (const id of ['a b', 'a/b', 'msg_1?x', 'x'.repeat(257)]) {
      const err = await refusalOfAsync(createBody({ items: [{ role: 'user', content: 'hi', id }] }, responses));
      expect(err.toBody().error, id).toMatchObject({ param: 'items.0.id', code: 'invalid_value' });
      expect(err.status, id).toBe(400);
      expect((await refusalOfAsync(conversationItems([{ type: 'function_call', call_id: 'c', name: 'f', arguments: '{}' }, { type: 'function_call_output', call_id: 'c', output: 'ok', id }], true, responses))).param, id).toBe('items.1.id');
      expect((await refusalOfAsync(planResponse({ model: 'm', input: [{ role: 'user', content: 'hi', id }] }, responses, responseId('ab'.repeat(12))))).param, id).toBe('input.0.id');
    }
    // The ids OpenAI, this server and the SDKs make are taken as they are; an empty one is none (the item gets one).
    const { items } = await createBody({ items: ['msg_ABC123', 'fc-1_x', 'x'.repeat(256), ''].map((id) => ({ role: 'user', content: 'hi', id })) }, responses);
    expect(items.slice(0, 3).map((item) => item.id)).toEqual(['msg_ABC123', 'fc-1_x', 'x'.repeat(256)]);
    expect(items[3].id).toMatch(/^msg_[0-9a-f]{48}$/);
  });

  it("refuses an output that answers no call of the conversation or of the call before it, as a request's input is refused (OpenAI's words, naming the item)", async () => {
    const responses = new ResponseStore(kv, 'key-calls', 0, 1 << 20);
    const call = { type: 'function_call', call_id: 'call_1', name: 'f', arguments: '{}' };
    const output = (callId: string) => ({ type: 'function_call_output', call_id: callId, output: 'ok' });
    const stray = await refusalOfAsync(conversationItems([{ role: 'user', content: 'hi' }, output('call_9')], true, responses));
    expect(stray.status).toBe(400);
    expect(stray.toBody().error).toMatchObject({ message: 'No tool call found for function call output with call_id call_9.', param: 'items.1.call_id', code: 'invalid_value' });
    // The same item as a request's input: the same 400.
    const asInput = await refusalOfAsync(planResponse({ model: 'm', input: [{ role: 'user', content: 'hi' }, output('call_9')] }, responses, responseId('ab'.repeat(12))));
    expect(asInput.toBody().error).toMatchObject({ message: stray.message, param: 'input.1.call_id' });
    // An output before its call in one batch answers nothing yet.
    expect((await refusalOfAsync(conversationItems([output('call_1'), call], true, responses))).param).toBe('items.0.call_id');
    expect((await refusalOfAsync(createBody({ items: [output('call_1')] }, responses))).param).toBe('items.0.call_id');
    // A call earlier in the batch, or in the conversation already, is answered.
    expect((await conversationItems([call, output('call_1')], true, responses)).map((item) => item.type)).toEqual(['function_call', 'function_call_output']);
    const existing = await conversationItems([call], true, responses);
    expect(await conversationItems([output('call_1')], true, responses, existing)).toMatchObject([{ type: 'function_call_output', call_id: 'call_1' }]);
  });

  it("lets the SDK's list-and-delete loop delete every item, in either order: a page after an item just deleted goes on from its place (review h129)", async () => {
    for (const order of ['asc', 'desc'] as const) {
      const store = new ConversationStore(kv, `key-loop-${order}`, 0, 1 << 20);
      const made = await store.create(['a', 'b', 'c', 'd', 'e'].map((id) => user(`msg_${id}`, id)), {});
      const deleted: string[] = [];
      let after: string | null = null;
      for (;;) {
        const record = (await store.get(made.id))!;
        const page = conversationItemsPage(record, new URLSearchParams({ order, limit: '2', ...(after ? { after } : {}) }));
        for (const item of page.data) {
          expect(await store.change(made.id, (r) => withoutItem(r, item.id)!, 'item_id')).not.toBeNull();
          deleted.push(item.id);
        }
        if (!page.has_more) break;
        after = page.last_id;
      }
      expect(deleted).toEqual(order === 'asc' ? ['msg_a', 'msg_b', 'msg_c', 'msg_d', 'msg_e'] : ['msg_e', 'msg_d', 'msg_c', 'msg_b', 'msg_a']);
      expect((await store.get(made.id))!.items).toEqual([]);
    }
  }, 30_000);

  it('lists newest first by default, as OpenAI lists them, and pages by after', () => {
    const record = { id: 'conv_1', created_at: 0, metadata: {}, writtenAt: 0, items: [user('msg_1', 'a'), user('msg_2', 'b'), user('msg_3', 'c')] };
    const page = (query: string) => conversationItemsPage(record, new URLSearchParams(query));
    expect(page('')).toMatchObject({ object: 'list', first_id: 'msg_3', last_id: 'msg_1', has_more: false });
    expect(page('').data[0]).toEqual({ type: 'message', id: 'msg_3', role: 'user', status: 'completed', content: [{ type: 'input_text', text: 'c' }] });
    expect(page('order=asc&limit=2')).toMatchObject({ data: [{ id: 'msg_1' }, { id: 'msg_2' }], has_more: true });
    expect(page('order=asc&after=msg_2')).toMatchObject({ data: [{ id: 'msg_3' }], has_more: false });
    expect(page('include[]=message.output_text.logprobs').data).toHaveLength(3);
    expect(() => page('after=msg_9')).toThrow(/after/);
    expect(() => page('include[]=reasoning.encrypted_content')).toThrow(/include/);
  });
});

describe('a response naming a conversation', () => {
  it("takes the conversation's items as its context, refuses one not this key's, and answers each call the conversation left open", async () => {
    const responses = new ResponseStore(kv, 'key-r', 0, 1 << 20);
    const conversations = new ConversationStore(kv, 'key-r', 0, 1 << 20);
    const made = await conversations.create([user('msg_1', 'Tell me a story.'), { type: 'function_call', call_id: 'call_1', name: 'f', arguments: '{}', id: 'fc_1' }], {});
    const plan = (body: object) => planResponse({ model: 'm', ...body }, responses, responseId('ab'.repeat(12)), conversations);
    const answered = await plan({ conversation: { id: made.id }, input: [{ type: 'function_call_output', call_id: 'call_1', output: 'ok' }] });
    expect(answered.translated.chat.messages).toEqual([
      { role: 'user', content: 'Tell me a story.' },
      { role: 'assistant', content: null },
      { role: 'tool', content: 'ok' },
    ]);
    expect(answered.started.conversation).toEqual({ id: made.id });
    expect((await refusalOfAsync(plan({ conversation: made.id, input: 'and?' }))).message).toBe('No tool output found for function call call_1.');
    expect((await refusalOfAsync(plan({ conversation: made.id, input: [{ role: 'user', content: 'again', id: 'msg_1' }, { type: 'function_call_output', call_id: 'call_1', output: 'ok' }] }))).param).toBe('input.0');
    const other = new ConversationStore(kv, 'key-other', 0, 1 << 20);
    const missing = await refusalOfAsync(planResponse({ model: 'm', conversation: made.id, input: 'x' }, responses, responseId('cd'.repeat(12)), other));
    expect(missing.toBody().error).toMatchObject({ param: 'conversation', code: 'not_found' });
    expect(missing.status).toBe(404);
  });

  it("resolves a reference to an item of its own conversation to that item, in the reference's place, as a reference to a stored response's item is", async () => {
    const responses = new ResponseStore(kv, 'key-own', 0, 1 << 20);
    const conversations = new ConversationStore(kv, 'key-own', 0, 1 << 20);
    // An id the items route made (msg_ and 48 hex: it reads as a response's item id, of a response never stored), and a client's.
    const { items } = await createBody({ items: [{ role: 'user', content: 'Tell me a story.' }, { role: 'assistant', content: 'Once upon a time.', id: 'msg_mine' }] }, responses);
    expect(responseOfItem(items[0].id)).not.toBeNull();
    const made = await conversations.create(items, {});
    const id = responseId('ab'.repeat(12));
    const plan = await planResponse({ model: 'm', conversation: made.id, input: [{ type: 'item_reference', id: items[0].id }, { id: 'msg_mine' }] }, responses, id, conversations);
    expect(plan.translated.chat.messages).toEqual([
      { role: 'user', content: 'Tell me a story.' },
      { role: 'assistant', content: 'Once upon a time.' },
      { role: 'user', content: 'Tell me a story.' },
      { role: 'assistant', content: 'Once upon a time.' },
    ]);
    // Repeated under ids of this response's own, so the conversation it is appended to keeps one item an id.
    const ids = plan.inputItems.map((item) => item.id);
    expect(ids.every((given) => given.startsWith(`msg_${'ab'.repeat(12)}`))).toBe(true);
    expect(new Set([...ids, ...items.map((item) => item.id)]).size).toBe(4);
    // Named twice in one input, it is a duplicate, as two references to a stored response's item are.
    expect((await refusalOfAsync(planResponse({ model: 'm', conversation: made.id, input: [{ id: 'msg_mine' }, { id: 'msg_mine' }] }, responses, id, conversations))).param).toBe('input.1');
    // A reference to a stored response's item resolves as before beside the conversation; to neither, OpenAI's 400.
    const stored = storedRecord(responseId('cd'.repeat(12)), 'The end.');
    expect(await responses.put(stored)).toBe(true);
    const chained = await planResponse({ model: 'm', conversation: made.id, input: [{ type: 'item_reference', id: stored.response.output[0].id }] }, responses, id, conversations);
    expect(chained.translated.chat.messages.at(-1)).toEqual({ role: 'assistant', content: 'The end.' });
    expect(chained.inputItems[0].id).toBe(stored.response.output[0].id);
    expect((await refusalOfAsync(planResponse({ model: 'm', conversation: made.id, input: [{ id: 'msg_nowhere' }] }, responses, id, conversations))).toBody().error).toMatchObject({ message: "Item with id 'msg_nowhere' not found.", param: 'input.0.id' });
  });

  it('says an input too large for any conversation is too large, and blames the conversation only where its items make the difference', async () => {
    const responses = new ResponseStore(kv, 'key-big', 0, 1 << 20);
    const conversations = new ConversationStore(kv, 'key-big', 0, 1_000);
    const plan = (conversation: string, input: string) => planResponse({ model: 'm', conversation, input }, responses, responseId('ab'.repeat(12)), conversations);
    const empty = await conversations.create([], {});
    const tooLarge = await refusalOfAsync(plan(empty.id, 'x'.repeat(1_200)));
    expect(tooLarge.status).toBe(400);
    expect(tooLarge.param).toBe('input');
    expect(tooLarge.message).toMatch(/^input is too large/);
    expect(tooLarge.message).toContain('SSSD_RESPONSE_MAX_BYTES, 1000 bytes');
    // 600 characters fit alone, not after the conversation's 500.
    const full = await conversations.create([user('msg_1', 'y'.repeat(500))], {});
    expect((await plan(empty.id, 'x'.repeat(600))).translated.chat.messages).toHaveLength(1);
    const over = await refusalOfAsync(plan(full.id, 'x'.repeat(600)));
    expect(over.param).toBe('conversation');
    expect(over.message).toMatch(/^The conversation would be over this server's bound on one \(SSSD_RESPONSE_MAX_BYTES, 1000 bytes\)/);
  });
});
