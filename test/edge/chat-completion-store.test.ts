// Stored chat completions on workerd's own KV (Miniflare, as `wrangler dev` runs it): the per-key scope, the
// index's paging and filters, metadata updates, expiry; a KV that throws stands in only for an outage.
import { readFileSync } from 'node:fs';
import { beforeEach, describe, expect, it } from 'vitest';
import { ChatCompletionStore, completionObject, type ListQuery, type StoredChatCompletion } from '../../edge/chat-completion-store';
import { jsonText } from '../../edge/ordered-json';
import { promptLogprobsOf } from '../../edge/prompt-logprobs';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import { models } from '../support/shared-data';
import { workerdKv } from '../support/workerd-kv';

const workerd = workerdKv();
let kv: KVNamespace;
beforeEach(() => {
  kv = workerd();
});

function record(id: string, created: number, metadata: Record<string, string> = {}, model = 'stories260K', text = 'Once upon a time.'): StoredChatCompletion {
  return {
    id,
    created,
    model,
    completion: { id, object: 'chat.completion', created, model, choices: [{ index: 0, message: { role: 'assistant', content: text } }] },
    metadata,
    messages: [{ role: 'user', content: 'Tell a story.', id: `${id}-0` }],
    expiresAt: null,
  };
}

function query(over: Partial<ListQuery> = {}): ListQuery {
  return { order: 'asc', limit: 20, after: null, model: null, metadata: {}, ...over };
}

/** Every id a list gives, page by page as the SDK follows them (`after` the last id). */
async function allIds(store: ChatCompletionStore, over: Partial<ListQuery>): Promise<string[][]> {
  const pages: string[][] = [];
  let after: string | null = null;
  for (;;) {
    const page = await store.list(query({ ...over, after }));
    pages.push(page.data.map((c) => (c as { id: string }).id));
    expect(page.first_id).toBe(pages.at(-1)![0] ?? null);
    expect(page.last_id).toBe(pages.at(-1)!.at(-1) ?? null);
    if (!page.has_more) return pages;
    after = page.last_id;
  }
}

describe('ChatCompletionStore', () => {
  it("keeps a key's completions its own: another key gets, lists, updates and deletes none of them", async () => {
    const a = new ChatCompletionStore(kv, 'key-a', 0, 1 << 20);
    const b = new ChatCompletionStore(kv, 'key-b', 0, 1 << 20);
    const stored = record('chatcmpl-a1', 1_000, { run: '1' });
    expect(await a.put(stored)).toBe(true);
    expect(await a.get('chatcmpl-a1')).toEqual({ ...stored, storedAtMs: expect.any(Number) });
    expect(await b.get('chatcmpl-a1')).toBeNull();
    expect((await b.list(query())).data).toEqual([]);
    expect(await b.updateMetadata('chatcmpl-a1', { run: 'b' })).toBeNull();
    expect(await b.delete('chatcmpl-a1')).toBe(false);
    expect((await a.list(query())).data).toEqual([{ ...stored.completion, metadata: { run: '1' } }]);
    expect(await a.delete('chatcmpl-a1')).toBe(true);
    expect(await a.get('chatcmpl-a1')).toBeNull();
    expect(await a.delete('chatcmpl-a1')).toBe(false);
    expect((await a.list(query())).data).toEqual([]);
  });

  it('pages by created, ascending or descending (each the other reversed, ties in one second too), following `after` to the end', async () => {
    const store = new ChatCompletionStore(kv, 'key-pages', 0, 1 << 20);
    // Stored out of order, three in one second.
    const created = [1_005, 1_001, 1_003, 1_003, 1_002, 1_003, 1_004];
    const ids = created.map((_, i) => `chatcmpl-${'abcdefg'[i]}${i}`);
    for (const [i, id] of ids.entries()) expect(await store.put(record(id, created[i]))).toBe(true);
    const asc = await allIds(store, { limit: 3 });
    expect(asc.map((page) => page.length)).toEqual([3, 3, 1]);
    const ascending = asc.flat();
    expect(ascending.map((id) => created[ids.indexOf(id)])).toEqual([...created].sort());
    expect(new Set(ascending)).toEqual(new Set(ids));
    const desc = (await allIds(store, { order: 'desc', limit: 2 })).flat();
    expect(desc).toEqual([...ascending].reverse());
    // A limit that takes them all: no more after it.
    expect(await store.list(query({ limit: 7 }))).toMatchObject({ object: 'list', has_more: false, first_id: ascending[0], last_id: ascending[6] });
    expect((await store.list(query({ limit: 6 }))).has_more).toBe(true);
    // After the last one: an empty page.
    expect(await store.list(query({ after: ascending[6] }))).toEqual({ object: 'list', data: [], first_id: null, last_id: null, has_more: false });
    // After one this key never stored: a 400 naming `after`.
    await expect(store.list(query({ after: 'chatcmpl-nope' }))).rejects.toMatchObject({ status: 400, param: 'after' });
    // A deleted one is listed no more, and the page still fills.
    expect(await store.delete(ascending[1])).toBe(true);
    expect((await store.list(query({ limit: 3 }))).data.map((c) => (c as { id: string }).id)).toEqual([ascending[0], ascending[2], ascending[3]]);
  });

  it('lists completions of one second in the order they were stored, not by their ids', async () => {
    const store = new ChatCompletionStore(kv, 'key-second', 0, 1 << 20);
    // Ids that sort against the order they come in, all of one `created` second.
    const ids = ['chatcmpl-z', 'chatcmpl-m', 'chatcmpl-a'];
    for (const [i, id] of ids.entries()) await store.put({ ...record(id, 4_000), storedAtMs: 4_000_000 + i });
    expect((await allIds(store, { order: 'asc' })).flat()).toEqual(ids);
    expect((await allIds(store, { order: 'desc' })).flat()).toEqual([...ids].reverse());
  });

  it('ends a page early, with has_more, past the characters a page may read, and the next page goes on from there (review h151)', async () => {
    // Records of ~20,000 characters against a budget of 50,000: two whole, the third past it, at any limit.
    const store = new ChatCompletionStore(kv, 'key-budget', 0, 1 << 20, 50_000);
    const ids = Array.from({ length: 7 }, (_, i) => `chatcmpl-big${i}`);
    for (const [i, id] of ids.entries()) expect(await store.put(record(id, 1_000 + i, {}, 'stories260K', 'x'.repeat(20_000)))).toBe(true);
    const pages = await allIds(store, { limit: 100 });
    expect(pages).toEqual([ids.slice(0, 2), ids.slice(2, 4), ids.slice(4, 6), ids.slice(6)]);
    // One record over the whole budget is still a page of one, never an empty page that says there is more.
    const huge = new ChatCompletionStore(kv, 'key-budget', 0, 1 << 20, 1_000);
    expect((await allIds(huge, { limit: 3 })).flat()).toEqual(ids);
    // Records as large as 32 MiB may be are read one at a time, not a batch of them in flight (review h153): a page of
    // one reads that one and the next, which it stops at.
    let gets = 0;
    const get = kv.get.bind(kv) as unknown as (key: string, ...rest: unknown[]) => Promise<unknown>;
    const counting = { get: (key: string, ...rest: unknown[]) => (gets++, get(key, ...rest)), list: kv.list.bind(kv), put: kv.put.bind(kv), delete: kv.delete.bind(kv) } as unknown as KVNamespace;
    const bounded = new ChatCompletionStore(counting, 'key-budget', 0, 32 * 1024 * 1024, 30_000);
    const first = await bounded.list(query({ limit: 100 }));
    expect(first.data).toHaveLength(1);
    expect(first.has_more).toBe(true);
    expect(gets).toBe(2);
  });

  it("lets the SDK's list-and-delete loop delete every one: a page after one just deleted goes on from its place", async () => {
    const store = new ChatCompletionStore(kv, 'key-a', 0, 1 << 20);
    for (let i = 0; i < 5; i++) await store.put(record(`chatcmpl-d${i}`, 2_000 + i));
    for (const order of ['asc', 'desc'] as const) {
      // As `for await (const c of client.chat.completions.list({limit: 2})) await client.chat.completions.delete(c.id)`.
      let after: string | null = null;
      const deleted: string[] = [];
      for (;;) {
        const page = await store.list(query({ order, limit: 2, after }));
        for (const c of page.data) {
          const id = (c as { id: string }).id;
          expect(await store.delete(id)).toBe(true);
          deleted.push(id);
        }
        if (!page.has_more) break;
        after = page.last_id;
      }
      expect(deleted).toHaveLength(order === 'asc' ? 5 : 0);
      expect((await store.list(query())).data).toEqual([]);
    }
    // One never stored (or deleted over an hour ago) is no place to go on from.
    await expect(store.list(query({ after: 'chatcmpl-never' }))).rejects.toMatchObject({ status: 400, param: 'after' });
  });

  it('takes back an update whose write came after a delete it raced: the delete stands, the update is a 404', async () => {
    const store = new ChatCompletionStore(kv, 'key-a', 0, 1 << 20);
    await store.put(record('chatcmpl-r1', 3_000, { run: '1' }));
    // The update reads the completion; the delete comes between that read and the update's write.
    class Raced extends ChatCompletionStore {
      override async get(id: string): Promise<StoredChatCompletion | null> {
        const read = await super.get(id);
        expect(await store.delete(id)).toBe(true);
        return read;
      }
    }
    expect(await new Raced(kv, 'key-a', 0, 1 << 20).updateMetadata('chatcmpl-r1', { run: '2' })).toBeNull();
    expect(await store.get('chatcmpl-r1')).toBeNull();
    expect((await store.list(query())).data).toEqual([]);
  });

  it('filters by model and by every metadata pair asked, and an update changes what matches', async () => {
    const store = new ChatCompletionStore(kv, 'key-filter', 0, 1 << 20);
    await store.put(record('chatcmpl-1', 1, { team: 'red', run: '1' }));
    await store.put(record('chatcmpl-2', 2, { team: 'blue', run: '1' }));
    await store.put(record('chatcmpl-3', 3, { team: 'red', run: '2' }, 'other-model'));
    await store.put(record('chatcmpl-4', 4, { team: 'red', run: '1' }));
    const ids = async (over: Partial<ListQuery>): Promise<string[]> => (await allIds(store, { limit: 1, ...over })).flat();
    expect(await ids({ metadata: { team: 'red' } })).toEqual(['chatcmpl-1', 'chatcmpl-3', 'chatcmpl-4']);
    expect(await ids({ metadata: { team: 'red', run: '1' } })).toEqual(['chatcmpl-1', 'chatcmpl-4']);
    expect(await ids({ metadata: { team: 'red', run: '1' }, order: 'desc' })).toEqual(['chatcmpl-4', 'chatcmpl-1']);
    expect(await ids({ model: 'other-model' })).toEqual(['chatcmpl-3']);
    expect(await ids({ model: 'stories260K', metadata: { run: '2' } })).toEqual([]);
    // A value is matched whole, not as a prefix; a key absent does not match an empty value.
    expect(await ids({ metadata: { team: 're' } })).toEqual([]);
    expect(await ids({ metadata: { colour: '' } })).toEqual([]);

    const updated = await store.updateMetadata('chatcmpl-1', { team: 'blue' });
    expect(updated?.metadata).toEqual({ team: 'blue' });
    expect((await store.get('chatcmpl-1'))?.metadata).toEqual({ team: 'blue' });
    expect(await ids({ metadata: { team: 'red' } })).toEqual(['chatcmpl-3', 'chatcmpl-4']);
    expect(await ids({ metadata: { team: 'blue' } })).toEqual(['chatcmpl-1', 'chatcmpl-2']);
    // Cleared: matches no pair.
    await store.updateMetadata('chatcmpl-2', {});
    expect(await ids({ metadata: { team: 'blue' } })).toEqual(['chatcmpl-1']);
  });

  it('expires the record and its index entries together, and an update keeps the expiry it had', async () => {
    const store = new ChatCompletionStore(kv, 'key-ttl', 30 * 86_400, 1 << 20);
    const now = Date.now();
    const stored = { ...record('chatcmpl-ttl', 10), expiresAt: store.expiresAt(now) };
    expect(stored.expiresAt).toBe(Math.floor(now / 1000) + 30 * 86_400);
    await store.put(stored);
    // The other tests' values expire never, or within the hour (a deleted one's marks): these three, due in 30 days, are
    // this one's record and its two index entries.
    const dayAhead = Math.floor(now / 1000) + 86_400;
    const expirations = async (): Promise<Array<number | undefined>> => (await kv.list()).keys.filter((k) => k.expiration !== undefined && k.expiration > dayAhead).map((k) => k.expiration);
    expect(await expirations()).toEqual([stored.expiresAt, stored.expiresAt, stored.expiresAt]);
    await store.updateMetadata('chatcmpl-ttl', { later: 'yes' });
    expect(await expirations()).toEqual([stored.expiresAt, stored.expiresAt, stored.expiresAt]);
    expect(new ChatCompletionStore(kv, 'key-forever', 0, 1 << 20).expiresAt()).toBeNull();
  });

  it("reads prompt_logprobs back in the order they were answered (the prompt token first, then by rank), not by ascending id", async () => {
    const tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)), 'llama2c');
    // Each scored prompt token among alternatives whose ids do not ascend by rank: JSON.parse would list them ascending.
    const promptLogprobs = promptLogprobsOf(
      [1, 400, 30, 7],
      [-2.5, -0.25, -4],
      [
        [[300, -0.5], [12, -1.25], [400, -2.5]],
        [[30, -0.25], [9, -2], [250, -3]],
        [[50, -0.75], [100, -1.5]],
      ],
      3,
      tokenizer,
    );
    const base = record('chatcmpl-scored', 3_000, { run: '1' });
    const stored: StoredChatCompletion = { ...base, completion: { ...base.completion, prompt_logprobs: promptLogprobs } };
    const answered = (metadata: Record<string, string>): string => jsonText({ ...stored.completion, metadata });
    // What JSON.stringify and JSON.parse would give differs: the test can fail.
    expect(JSON.stringify({ ...stored.completion, metadata: { run: '1' } })).not.toBe(answered({ run: '1' }));
    expect(Object.keys(JSON.parse(answered({ run: '1' })).prompt_logprobs[1] as object)).toEqual(['12', '300', '400']);

    const store = new ChatCompletionStore(kv, 'key-scored', 0, 1 << 20);
    expect(await store.put(stored)).toBe(true);
    const got = await store.get('chatcmpl-scored');
    expect(jsonText(completionObject(got!))).toBe(answered({ run: '1' }));
    expect(Object.keys((completionObject(got!) as { prompt_logprobs: object[] }).prompt_logprobs[1])).toEqual(['12', '300', '400']);
    expect(jsonText((await store.list(query())).data)).toBe(`[${answered({ run: '1' })}]`);
    // An update writes the record again: the order stays with it.
    expect(jsonText(completionObject((await store.updateMetadata('chatcmpl-scored', { run: '2' }))!))).toBe(answered({ run: '2' }));
    expect(jsonText(completionObject((await store.get('chatcmpl-scored'))!))).toBe(answered({ run: '2' }));
    // A position already in ascending order (the last: 7 first, then 50 and 100) needs no stored order.
    expect(got!.promptLogprobsOrder).toEqual([null, ['400', '300', '12'], ['30', '9', '250'], null]);
  });

  it('keeps a completion over its size cap without its messages, or not at all where even that is over', async () => {
    const small = new ChatCompletionStore(kv, 'key-cap', 0, 1024);
    const long = { ...record('chatcmpl-long', 1), messages: [{ role: 'user' as const, content: 'x'.repeat(2000), id: 'chatcmpl-long-0' }] };
    expect(await small.put(long)).toBe(true);
    expect(await small.get('chatcmpl-long')).toMatchObject({ messages: [], messagesNotKept: true, completion: long.completion });
    expect(await small.put(record('chatcmpl-huge', 2, {}, 'stories260K', 'y'.repeat(2000)))).toBe(false);
    expect(await small.get('chatcmpl-huge')).toBeNull();
    expect((await small.list(query())).data.map((c) => (c as { id: string }).id)).toEqual(['chatcmpl-long']);
  });

  it('answers a 503 where KV fails to read or list, and a put that fails is false, never thrown', async () => {
    const failing = {
      put: () => Promise.reject(new Error('KV PUT failed: 503')),
      get: () => Promise.reject(new Error('KV GET failed: 503')),
      list: () => Promise.reject(new Error('KV LIST failed: 503')),
    } as unknown as KVNamespace;
    const down = new ChatCompletionStore(failing, 'key-down', 0, 1 << 20);
    expect(await down.put(record('chatcmpl-down', 1))).toBe(false);
    const outage = { status: 503, code: 'chat_completion_store_unavailable' };
    await expect(down.get('chatcmpl-down')).rejects.toMatchObject(outage);
    await expect(down.list(query())).rejects.toMatchObject(outage);
    await expect(down.delete('chatcmpl-down')).rejects.toMatchObject(outage);
  });
});
