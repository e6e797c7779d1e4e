// item_reference input items resolved against stored responses on workerd's own KV (Miniflare).
import { beforeEach, describe, expect, it } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { MAX_REFERENCED_CHARS, MAX_REFERENCED_RESPONSES, referencedItems } from '../../edge/item-references';
import { functionCallItem, itemId, responseId, responseOfItem } from '../../edge/responses-format';
import { parseResponsesBody, translateResponsesRequest } from '../../edge/responses-request';
import { inputItemsPage, planResponse } from '../../edge/responses-reply';
import { ResponseStore, type StoredResponse } from '../../edge/response-store';
import { storedRecord as record } from '../support/stored-response';
import { workerdKv } from '../support/workerd-kv';
import { refusalOfAsync, refusalOrNull } from '../support/refusal';

const workerd = workerdKv();
let kv: KVNamespace;
beforeEach(() => {
  kv = workerd();
});

const parsed = (input: unknown[]) => parseResponsesBody({ model: 'm', input });

describe('item_reference', () => {
  it("names its response in the ids this server makes, and in no client's id", () => {
    const id = responseId('0123456789abcdef01234567');
    const item = itemId('msg', id);
    expect(item).toMatch(/^msg_0123456789abcdef01234567[0-9a-f]{24}$/);
    expect(responseOfItem(item)).toBe(id);
    expect(responseOfItem(itemId('fc', id))).toBe(id);
    for (const other of ['msg_1', 'msg_0123456789abcdef01234567', 'my-own-id', `msg_${'0'.repeat(48)}x`]) expect(responseOfItem(other)).toBeNull();
  });

  it("resolves to a stored response's output and input items, as the items they were, for the chain's prompt", async () => {
    const store = new ResponseStore(kv, 'key-a', 0, 1 << 20);
    const first = record(responseId('aaaaaaaaaaaaaaaaaaaaaaaa'), 'Once upon a time.');
    expect(await store.put(first)).toBe(true);
    const reply = first.response.output[0].id;
    const asked = first.inputItems[0].id;
    const request = parsed([{ type: 'item_reference', id: asked }, { type: 'item_reference', id: reply }, { role: 'user', content: 'Go on.' }]);
    const { found } = await referencedItems(request.items, store);
    expect([...found.keys()].sort()).toEqual([asked, reply].sort());
    const translated = translateResponsesRequest(request, [], [], found);
    expect(translated.chat.messages).toEqual([
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Once upon a time.' },
      { role: 'user', content: 'Go on.' },
    ]);
    // Another key's store finds none of them: OpenAI's 400, naming the item.
    const other = new ResponseStore(kv, 'key-b', 0, 1 << 20);
    const refused = refusalOrNull(() => translateResponsesRequest(request, [], [], new Map()));
    expect((await referencedItems(request.items, other)).found.size).toBe(0);
    expect(refused).toBeInstanceOf(ApiError);
    expect(refused!.toBody().error).toMatchObject({ message: `Item with id '${asked}' not found.`, param: 'input.0.id', code: 'invalid_value' });
  });

  it("makes a referenced call's call_id known, so its output may follow", async () => {
    const store = new ResponseStore(kv, 'key-c', 0, 1 << 20);
    const id = responseId('cccccccccccccccccccccccc');
    const stored = record(id, '');
    stored.response.output = [functionCallItem(itemId('fc', id), 'call_abc', 'get_weather', '{"city":"Paris"}', 'completed')];
    await store.put(stored);
    const request = parsed([{ role: 'user', content: 'Weather?' }, { type: 'item_reference', id: stored.response.output[0].id }, { type: 'function_call_output', call_id: 'call_abc', output: 'sunny' }]);
    const translated = translateResponsesRequest(request, [], [], (await referencedItems(request.items, store)).found);
    expect(translated.callIds).toEqual(['call_abc']);
    expect(translated.items[1]).toMatchObject({ type: 'function_call', call_id: 'call_abc', name: 'get_weather', arguments: '{"city":"Paris"}' });
  });

  it("reads a long conversation's references in one read: the newest response holds the items its own references resolved to", async () => {
    let reads = 0;
    const store = new (class extends ResponseStore {
      override async get(id: string): Promise<StoredResponse | null> {
        reads++;
        return super.get(id);
      }
    })(kv, 'key-e', 0, 1 << 20);
    // 70 turns as the AI SDK chains them: each request names every earlier reply by reference, and is stored.
    const replies: string[] = [];
    for (let turn = 0; turn < 70; turn++) {
      const id = responseId(turn.toString(16).padStart(24, 'e'));
      const request = parsed([...replies.flatMap((reply, i) => [{ role: 'user', content: `q${i}` }, { type: 'item_reference', id: reply }]), { role: 'user', content: `q${turn}` }]);
      reads = 0;
      const translated = translateResponsesRequest(request, [], [], (await referencedItems(request.items, store)).found);
      expect(reads).toBe(turn === 0 ? 0 : 1);
      const stored = record(id, `a${turn}`);
      stored.inputItems = translated.items.map((item) => ({ ...item, id: item.id ?? itemId('msg', id) }));
      await store.put(stored);
      replies.push(stored.response.output[0].id);
      if (turn === 69) expect(translated.chat.messages.filter((m) => m.role === 'assistant').map((m) => m.content)).toEqual(Array.from({ length: 69 }, (_, i) => `a${i}`));
    }
  });

  it('refuses references into more stored responses than one request may read, naming the first past the bound', async () => {
    const store = new ResponseStore(kv, 'key-d', 0, 1 << 20);
    const input = Array.from({ length: MAX_REFERENCED_RESPONSES + 1 }, (_, i) => ({ type: 'item_reference', id: itemId('msg', responseId(i.toString(16).padStart(24, '0'))) }));
    const err = await referencedItems(parsed(input).items, store).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    // Read newest (last) first: the first past the bound is the oldest.
    expect((err as ApiError).toBody().error).toMatchObject({ param: 'input.0', code: 'invalid_value' });
  });

  it('refuses references whose stored responses are together past what one request may parse, before parsing the one past it', async () => {
    const store = new ResponseStore(kv, 'key-h', 0, 1 << 20);
    const ids = ['a1', 'b2', 'c3'].map((h) => responseId(h.repeat(12)));
    for (const id of ids) expect(await store.put(record(id, 'x'.repeat(3000)))).toBe(true);
    const input = ids.map((id) => ({ type: 'item_reference', id: itemId('msg', id) }));
    // Each record is ~7,300 characters (the reply twice: its output, its conversation): two fit in 16,000, three do not.
    expect((await referencedItems(parsed(input.slice(1)).items, store, 16_000)).found.size).toBe(0);
    const err = await referencedItems(parsed(input).items, store, 16_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).toBody().error).toMatchObject({ param: 'input.0', code: 'invalid_value', message: expect.stringContaining('more than 16000 characters together') });
    expect(MAX_REFERENCED_CHARS).toBe(16 * 1024 * 1024);
  });

  it("refuses an item sent twice, as OpenAI does: twice in the input, or already in the previous_response_id chain", async () => {
    const store = new ResponseStore(kv, 'key-f', 0, 1 << 20);
    const id = responseId('ffffffffffffffffffffffff');
    const first = record(id, 'Once.');
    first.itemIds = [first.inputItems[0].id, first.response.output[0].id];
    await store.put(first);
    const reply = first.response.output[0].id;
    const refusal = async (body: object) => (await refusalOfAsync(planResponse({ model: 'm', ...body }, store, responseId('0'.repeat(24))))).toBody().error;
    expect(await refusal({ input: [{ type: 'item_reference', id: reply }, { type: 'item_reference', id: reply }, { role: 'user', content: 'x' }] })).toMatchObject({
      message: `Duplicate item found with id ${reply}. Remove duplicate items from your input and try again.`,
      param: 'input.1',
    });
    expect((await refusal({ input: [{ role: 'user', content: 'a', id: 'mine' }, { role: 'user', content: 'b', id: 'mine' }] })).param).toBe('input.1');
    // The chain already holds the reply: referenced again beside previous_response_id, the model would read it twice.
    expect((await refusal({ previous_response_id: id, input: [{ type: 'item_reference', id: reply }, { role: 'user', content: 'x' }] })).param).toBe('input.0');
    // Once each, it is taken; a reference may leave its type out, as OpenAI's ItemReference may.
    const plan = await planResponse({ model: 'm', input: [{ id: reply }, { role: 'user', content: 'Go on.' }] }, store, responseId('1'.repeat(24)));
    expect(plan.translated.chat.messages).toEqual([{ role: 'assistant', content: 'Once.' }, { role: 'user', content: 'Go on.' }]);
  });

  it("keeps a record over the store's bound as the response alone: retrieved and its output referenced, a chain from it refused by name", async () => {
    const store = new ResponseStore(kv, 'key-g', 0, 2000);
    const id = responseId('abababababababababababab');
    const big = record(id, 'The end.');
    big.conversation = [{ role: 'user', content: 'x'.repeat(3000) }, { role: 'assistant', content: 'The end.' }];
    big.inputItems = [{ role: 'user', content: 'x'.repeat(3000), id: itemId('msg', id) }];
    expect(await store.put(big)).toBe(true);
    const kept = await store.get(id);
    expect(kept).toMatchObject({ response: { id, output: big.response.output }, inputItems: [], conversationNotKept: true });
    const next = responseId('cdcdcdcdcdcdcdcdcdcdcdcd');
    const refusal = (body: object) => refusalOfAsync(planResponse({ model: 'm', ...body }, store, next));
    const chained = await refusal({ previous_response_id: id, input: 'more' });
    expect(chained.toBody().error).toMatchObject({ param: 'previous_response_id', message: expect.stringContaining('stored without its conversation') });
    const input = await refusal({ input: [{ type: 'item_reference', id: big.inputItems[0].id }, { role: 'user', content: 'more' }] });
    expect(input.toBody().error).toMatchObject({ param: 'input.0.id', message: expect.stringContaining('stored without them') });
    expect(() => inputItemsPage(kept!, new URLSearchParams())).toThrow(/stored without its input items/);
    // Its output is kept: referenced, it is taken.
    const plan = await planResponse({ model: 'm', input: [{ type: 'item_reference', id: big.response.output[0].id }, { role: 'user', content: 'more' }] }, store, next);
    expect(plan.translated.chat.messages[0]).toEqual({ role: 'assistant', content: 'The end.' });
  });
});
