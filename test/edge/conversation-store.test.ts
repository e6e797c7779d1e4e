// Conversations on workerd's own KV (Miniflare, as `wrangler dev` runs it); a KV that throws stands in only for an
// outage.
import { beforeEach, describe, expect, it } from 'vitest';
import type { ApiError } from '../../edge/api-error';
import { conversationItemsPage, createBody } from '../../edge/conversation-routes';
import { ConversationStore, withoutItem } from '../../edge/conversation-store';
import { KEY_WRITE_INTERVAL_MS } from '../../edge/kv-record';
import { responseId } from '../../edge/responses-format';
import { planResponse } from '../../edge/responses-reply';
import { ResponseStore, type StoredInputItem } from '../../edge/response-store';
import { workerdKv } from '../support/workerd-kv';

const workerd = workerdKv();
let kv: KVNamespace;
beforeEach(() => {
  kv = workerd();
});

const user = (id: string, content: string): StoredInputItem => ({ type: 'message', role: 'user', content, id });
const refusal = async (run: Promise<unknown>): Promise<ApiError> => (await run.then(() => null, (err: unknown) => err)) as ApiError;

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
    const start = Date.now();
    // Three appends at once: each reads what the one before wrote, a second apart.
    const appended = await Promise.all(['a', 'b', 'c'].map((text) => store.change(made.id, (record) => ({ ...record, items: [...record.items, user(`msg_${text}`, text)] }), 'items')));
    const elapsed = Date.now() - start;
    expect(elapsed).toBeGreaterThanOrEqual(3 * KEY_WRITE_INTERVAL_MS - 50);
    expect((await store.get(made.id))?.items.map((item) => item.id)).toEqual(['msg_a', 'msg_b', 'msg_c']);
    const times = appended.map((record) => record?.writtenAt ?? 0);
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
    expect((await refusal(store.create([user('msg_big', 'x'.repeat(700))], {}))).toBody().error).toMatchObject({ param: 'items', message: expect.stringContaining('SSSD_RESPONSE_MAX_BYTES') });
    const made = await store.create([user('msg_1', 'small')], {});
    // Bytes, not characters: 150 euro signs are 450 bytes.
    const err = await refusal(store.change(made.id, (record) => ({ ...record, items: [...record.items, user('msg_2', '€'.repeat(150))] }), 'conversation'));
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
      const err = await refusal(run(new ConversationStore(failingKv(fail), 'key-down', 0, 1 << 20)));
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
    expect((await createBody(null, responses)).items).toEqual([]);
    const param = async (body: unknown) => (await refusal(createBody(body, responses))).param;
    expect(await param({ items: [{ role: 'user', content: [{ type: 'input_image', image_url: 'x' }] }] })).toBe('items.0.content.0.type');
    expect(await param({ items: [{ role: 'user', content: 'a', id: 'x' }, { role: 'user', content: 'b', id: 'x' }] })).toBe('items.1');
    expect(await param({ items: Array.from({ length: 21 }, () => ({ role: 'user', content: 'a' })) })).toBe('items');
    expect(await param({ items: [{ id: 'msg_nowhere' }] })).toBe('items.0.id');
    expect(await param({ metadata: { k: 'x'.repeat(513) } })).toBe('metadata.k');
    expect(await param({ title: 'x' })).toBe('title');
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
    expect((await refusal(plan({ conversation: made.id, input: 'and?' }))).message).toBe('No tool output found for function call call_1.');
    expect((await refusal(plan({ conversation: made.id, input: [{ role: 'user', content: 'again', id: 'msg_1' }, { type: 'function_call_output', call_id: 'call_1', output: 'ok' }] }))).param).toBe('input.0');
    const other = new ConversationStore(kv, 'key-other', 0, 1 << 20);
    const missing = await refusal(planResponse({ model: 'm', conversation: made.id, input: 'x' }, responses, responseId('cd'.repeat(12)), other));
    expect(missing.toBody().error).toMatchObject({ param: 'conversation', code: 'not_found' });
    expect(missing.status).toBe(404);
  });
});
