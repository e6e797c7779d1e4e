// OpenAI's stored chat completions (`store: true`) on the edge against the real stack (a pool process and
// `wrangler dev` with local KV), driven by the official `openai` client as a user calls it.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../launcher/stack';
import { startTestStack, type TestStack } from './stack-fixture';

const OTHER_KEY = 'e2e-stored-chat-other-key';
/** The lone-surrogate tests' own key: its stored completions are theirs alone. */
const LONE_KEY = 'e2e-lone-surrogate-key';
/** A key that stores 1 MiB a day (storage-budget.ts): its stored completions spend it. */
const STORING_KEY = 'e2e-stored-chat-storing-key';

let stack: TestStack;
let client: OpenAI;
let model: string;

beforeAll(async () => {
  stack = await startTestStack({
    vars: {
      SSSD_API_KEYS: JSON.stringify({ [sha256Hex(OTHER_KEY)]: { tenant: 'other' }, [sha256Hex(LONE_KEY)]: { tenant: 'lone' }, [sha256Hex(STORING_KEY)]: { tenant: 'storing', rpm: 6000, storageMbPerDay: 1 } }),
    },
  });
  client = new OpenAI({ apiKey: stack.devKey, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
  model = (await client.models.list()).data[0].id;
});

afterAll(async () => {
  await stack?.dispose();
});

const MESSAGES: OpenAI.ChatCompletionMessageParam[] = [
  { role: 'system', content: 'A story.' },
  { role: 'user', content: 'Once upon a time, there was a little dog named Max.' },
];

/** Every stored completion a list gives, following its pages as the SDK does. */
async function listed(params: OpenAI.Chat.ChatCompletionListParams): Promise<OpenAI.ChatCompletion[]> {
  const all: OpenAI.ChatCompletion[] = [];
  for await (const completion of client.chat.completions.list(params)) all.push(completion);
  return all;
}

describe('stored chat completions', () => {
  it('stores a store: true completion for its key: retrieve, messages, update, delete; none without store, none for another key', async () => {
    const created = await client.chat.completions.create({ model, messages: MESSAGES, max_tokens: 16, temperature: 0, store: true, metadata: { suite: 'crud', step: '1' } });
    const retrieved = await client.chat.completions.retrieve(created.id);
    // As its client got it, its system_fingerprint included.
    expect(created.system_fingerprint).toMatch(/^fp_[0-9a-f]{10}$/);
    expect(retrieved).toEqual({ ...created, metadata: { suite: 'crud', step: '1' } });

    const messages = await client.chat.completions.messages.list(created.id);
    expect(messages.data.map((m) => [m.role, m.content])).toEqual(MESSAGES.map((m) => [m.role, m.content]));
    expect(new Set(messages.data.map((m) => m.id)).size).toBe(2);
    const second = await client.chat.completions.messages.list(created.id, { limit: 1, after: messages.data[0].id });
    expect(second.data.map((m) => m.id)).toEqual([messages.data[1].id]);

    // Only metadata changes; the completion is as it was.
    const updated = await client.chat.completions.update(created.id, { metadata: { suite: 'crud', step: '2' } });
    expect(updated).toEqual({ ...created, metadata: { suite: 'crud', step: '2' } });
    expect(await client.chat.completions.retrieve(created.id)).toMatchObject({ metadata: { suite: 'crud', step: '2' } });
    const refused = await client.chat.completions.update(created.id, { metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
    expect((refused as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('metadata');

    // Another key finds none of it.
    const other = new OpenAI({ apiKey: OTHER_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    await expect(other.chat.completions.retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(other.chat.completions.delete(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(other.chat.completions.update(created.id, { metadata: {} })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(other.chat.completions.messages.list(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect((await other.chat.completions.list()).data).toEqual([]);

    // Without store (OpenAI's default) or with store: false, nothing is kept.
    for (const store of [undefined, false]) {
      const unstored = await client.chat.completions.create({ model, messages: MESSAGES, max_tokens: 4, temperature: 0, ...(store === undefined ? {} : { store }) });
      await expect(client.chat.completions.retrieve(unstored.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    }

    expect(await client.chat.completions.delete(created.id)).toEqual({ object: 'chat.completion.deleted', id: created.id, deleted: true });
    const gone = await client.chat.completions.retrieve(created.id).catch((err: unknown) => err);
    expect(gone).toBeInstanceOf(OpenAI.NotFoundError);
    expect((gone as InstanceType<typeof OpenAI.NotFoundError>).error).toMatchObject({ type: 'invalid_request_error', code: 'not_found' });
    await expect(client.chat.completions.delete(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('stores a streamed completion, every choice of n, as the whole chat.completion its chunks add up to', async () => {
    const stream = client.chat.completions.stream({ model, messages: MESSAGES, max_tokens: 12, temperature: 0.8, seed: 5, n: 2, store: true, metadata: { suite: 'stream' } });
    const final = await stream.finalChatCompletion();
    expect(final.choices).toHaveLength(2);
    // Stored before the stream's last byte: found at once.
    const stored = await client.chat.completions.retrieve(final.id);
    expect(stored.choices.map((c) => [c.index, c.message.content, c.finish_reason])).toEqual(final.choices.map((c) => [c.index, c.message.content, c.finish_reason]));
    expect(stored).toMatchObject({ object: 'chat.completion', id: final.id, created: final.created, model, metadata: { suite: 'stream' } });
    expect(final.system_fingerprint).toMatch(/^fp_[0-9a-f]{10}$/);
    expect(stored.system_fingerprint).toBe(final.system_fingerprint);
    expect(stored.usage?.completion_tokens).toBeGreaterThan(0);
    // The same request whole: the same texts (seeded), so the stored stream is the reply, not a part of it.
    const whole = await client.chat.completions.create({ model, messages: MESSAGES, max_tokens: 12, temperature: 0.8, seed: 5, n: 2 });
    expect(stored.choices.map((c) => c.message.content)).toEqual(whole.choices.map((c) => c.message.content));
    expect(stored.usage?.completion_tokens).toBe(whole.usage?.completion_tokens);
  });

  it('stores nothing of a stream its client leaves, nor of a request that fails', async () => {
    const controller = new AbortController();
    const stream = await client.chat.completions.create({ model, messages: MESSAGES, max_tokens: 400, ignore_eos: true, temperature: 0, stream: true, store: true, metadata: { suite: 'left' } } as OpenAI.ChatCompletionCreateParamsStreaming, { signal: controller.signal });
    let id = '';
    try {
      for await (const chunk of stream) {
        id = chunk.id;
        if (chunk.choices[0]?.delta.content) break;
      }
    } finally {
      controller.abort();
    }
    expect(id).toMatch(/^chatcmpl-/);
    const failed = await client.chat.completions.create({ model, messages: MESSAGES, max_tokens: 100_000_000, store: true, metadata: { suite: 'left' } }).catch((err: unknown) => err);
    expect(failed).toBeInstanceOf(OpenAI.APIError);
    // Long enough for a run left to end (400 tokens of stories260K take well under this), had it been kept.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await expect(client.chat.completions.retrieve(id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect(await listed({ metadata: { suite: 'left' } })).toEqual([]);
  });

  it("reads a completion's prompt_logprobs back in the order its client got them (the prompt token first, then by rank), on retrieve, update and list", async () => {
    const call = async (path: string, body?: object): Promise<string> => {
      const res = await fetch(`${stack.edgeUrl}/v1${path}`, {
        method: body ? 'POST' : 'GET',
        headers: { authorization: `Bearer ${stack.devKey}`, 'content-type': 'application/json' },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type'), path).toMatch(/^application\/json/);
      return res.text();
    };
    const answered = await call('/chat/completions', { model, messages: MESSAGES, max_tokens: 4, temperature: 0, prompt_logprobs: 5, store: true, metadata: { suite: 'prompt-logprobs' } });
    const { id, prompt_logprobs: scored } = JSON.parse(answered) as { id: string; prompt_logprobs: Array<object | null> };
    expect(scored.length).toBeGreaterThan(2);
    // JSON.parse lists each position's ids ascending: a reply that reads back so was not in vLLM's order to begin with.
    expect(JSON.stringify(JSON.parse(answered))).not.toBe(answered);
    const withMetadata = (metadata: Record<string, string>): string => `${answered.slice(0, -1)},"metadata":${JSON.stringify(metadata)}}`;
    expect(await call(`/chat/completions/${id}`)).toBe(withMetadata({ suite: 'prompt-logprobs' }));
    expect(await call(`/chat/completions/${id}`, { metadata: { suite: 'prompt-logprobs', step: '2' } })).toBe(withMetadata({ suite: 'prompt-logprobs', step: '2' }));
    expect(await call(`/chat/completions/${id}`)).toBe(withMetadata({ suite: 'prompt-logprobs', step: '2' }));
    const list = await call(`/chat/completions?metadata[suite]=prompt-logprobs`);
    expect(list.startsWith(`{"object":"list","data":[${withMetadata({ suite: 'prompt-logprobs', step: '2' })}]`)).toBe(true);
  });

  it('lists the key\'s completions by created, asc by default, filtered by model and metadata, page by page', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await client.chat.completions.create({ model, messages: [{ role: 'user', content: `Story ${i}.` }], max_tokens: 2, store: true, metadata: { suite: 'list', parity: i % 2 === 0 ? 'even' : 'odd' } });
      ids.push(c.id);
      // A second apart: `created` orders them.
      if (i < 2) await new Promise((resolve) => setTimeout(resolve, 1100));
    }
    const asc = await listed({ metadata: { suite: 'list' }, limit: 2 });
    expect(asc.map((c) => c.id)).toEqual(ids);
    expect(asc.every((c) => c.object === 'chat.completion' && c.model === model)).toBe(true);
    const firstPage = await client.chat.completions.list({ metadata: { suite: 'list' }, limit: 2 });
    expect([firstPage.data.length, firstPage.has_more]).toEqual([2, true]);
    expect((await listed({ metadata: { suite: 'list' }, order: 'desc', limit: 1 })).map((c) => c.id)).toEqual([...ids].reverse());
    expect((await listed({ metadata: { suite: 'list', parity: 'even' } })).map((c) => c.id)).toEqual([ids[0], ids[2]]);
    expect((await listed({ metadata: { suite: 'list' }, model })).map((c) => c.id)).toEqual(ids);
    expect(await listed({ metadata: { suite: 'list' }, model: 'another-model' })).toEqual([]);
    // An update moves it between filters; a delete takes it out.
    await client.chat.completions.update(ids[1], { metadata: { suite: 'list', parity: 'even' } });
    expect((await listed({ metadata: { suite: 'list', parity: 'even' } })).map((c) => c.id)).toEqual(ids);
    await client.chat.completions.delete(ids[0]);
    expect((await listed({ metadata: { suite: 'list' } })).map((c) => c.id)).toEqual(ids.slice(1));
    // Bad query parameters are 400s naming them.
    for (const [query, param] of [['limit=0', 'limit'], ['order=up', 'order'], ['after=chatcmpl-none', 'after']] as const) {
      const res = await fetch(`${stack.edgeUrl}/v1/chat/completions?${query}`, { headers: { authorization: `Bearer ${stack.devKey}` } });
      expect([res.status, ((await res.json()) as { error: { param: string } }).error.param]).toEqual([400, param]);
    }
  });

  it("charges a stored completion what its record holds to the key's storage budget: a 429 once spent, before the generation, while store: false goes through", async () => {
    const storing = new OpenAI({ apiKey: STORING_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    // OpenAI's most metadata (16 pairs, keys of 64 characters, values of 512): ~9 KB a record beside a short prompt.
    const metadata = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [String(i).padStart(64, 'k'), String(i).padStart(512, 'v')]));
    const metadataBytes = JSON.stringify(metadata).length;
    const made: OpenAI.ChatCompletion[] = [];
    let refused: unknown = null;
    // Not charged, none refused; charged the record written, ~95.
    while (refused === null && made.length < 200) {
      refused = await storing.chat.completions.create({ model, messages: MESSAGES, max_completion_tokens: 1, store: true, metadata }).then((completion) => (made.push(completion), null), (err: unknown) => err);
    }
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    const err = refused as InstanceType<typeof OpenAI.RateLimitError>;
    expect(err.code).toBe('storage_limit_exceeded');
    // A record holds the completion as retrieved (with its metadata) at least; that, its messages as listed and its
    // index entries' hashes, at most.
    const last = made.at(-1)!.id;
    const recordAtLeast = JSON.stringify(await storing.chat.completions.retrieve(last)).length;
    const recordAtMost = recordAtLeast + JSON.stringify((await storing.chat.completions.messages.list(last)).data).length + 2048;
    // Let in while the budget covers its messages and metadata, its record charged whole as written (charged the
    // messages and metadata alone, ~110 would go in, past the first bound).
    expect((made.length - 1) * recordAtLeast + metadataBytes).toBeLessThanOrEqual(1024 * 1024);
    expect(made.length * recordAtMost + recordAtMost).toBeGreaterThan(1024 * 1024);
    expect(made.length).toBeGreaterThan(50);
    // Back once the day's refill covers the shortfall: at most a record's worth.
    const retryAfter = Number(err.headers?.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(Math.ceil((recordAtMost / (1024 * 1024)) * 86_400));
    // store: false (the default) stores nothing, and is not limited so; nor is a read.
    expect((await storing.chat.completions.create({ model, messages: MESSAGES, max_completion_tokens: 1, metadata })).choices).toHaveLength(1);
    expect(await storing.chat.completions.retrieve(last)).toMatchObject({ id: last, metadata });
  });
});

// Half of a character (a lone surrogate, `"\ud800"` in the JSON) in what a request asks the model to read, driven by
// the official `openai` client, which sends it escaped: each API refuses it with a 400 naming the field, and stores
// nothing of the request (taken, the model read U+FFFD while stored chat completions, responses and conversations kept
// the half character as sent). On this file's stack, under a key of its own.
let loneClient: OpenAI;
beforeAll(() => {
  loneClient = new OpenAI({ apiKey: LONE_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
});

const HALF = 'Once upon a time \ud83d';

async function refusedParam(run: Promise<unknown>): Promise<string | null | undefined> {
  const err = await run.catch((e: unknown) => e);
  expect(err).toBeInstanceOf(OpenAI.BadRequestError);
  const bad = err as InstanceType<typeof OpenAI.BadRequestError>;
  expect(bad.code).toBe('invalid_value');
  expect(bad.message).toMatch(/lone surrogate \(U\+D83D, half of a character\)/);
  return bad.param;
}

async function storedChatCompletions(): Promise<OpenAI.ChatCompletion[]> {
  const all: OpenAI.ChatCompletion[] = [];
  for await (const completion of loneClient.chat.completions.list()) all.push(completion);
  return all;
}

describe('a lone surrogate in a request', () => {
  it('is refused by chat completions (stored or not) and completions, naming the field; nothing is stored', async () => {
    const messages = (content: OpenAI.ChatCompletionUserMessageParam['content']): OpenAI.ChatCompletionMessageParam[] => [{ role: 'system', content: 'A story.' }, { role: 'user', content }];
    expect(await refusedParam(loneClient.chat.completions.create({ model, messages: messages(HALF), max_tokens: 4, store: true }))).toBe('messages.1.content');
    expect(await refusedParam(loneClient.chat.completions.create({ model, messages: messages([{ type: 'text', text: 'A dog.' }, { type: 'text', text: HALF }]), max_tokens: 4, store: true, stream: true }))).toBe('messages.1.content.1.text');
    expect(await refusedParam(loneClient.completions.create({ model, prompt: HALF, max_tokens: 4 }))).toBe('prompt');
    expect(await storedChatCompletions()).toEqual([]);

    // A whole character (a pair) is text; `user` is a name, kept as sent (a user cache of its own): both taken, and stored as sent.
    const whole = 'Once upon a time \ud83d\ude00';
    const created = await loneClient.chat.completions.create({ model, messages: messages(whole), max_tokens: 4, temperature: 0, store: true, user: '\ud800' });
    const kept = await loneClient.chat.completions.messages.list(created.id);
    expect(kept.data.map((m) => m.content)).toEqual(['A story.', whole]);
    expect((await storedChatCompletions()).map((c) => c.id)).toEqual([created.id]);
  });

  it('is refused by the Responses API (foreground or background, its input or instructions), naming the field', async () => {
    expect(await refusedParam(loneClient.responses.create({ model, input: HALF, max_output_tokens: 16, store: true }))).toBe('input');
    expect(await refusedParam(loneClient.responses.create({ model, input: [{ role: 'user', content: [{ type: 'input_text', text: HALF }] }], max_output_tokens: 16, background: true }))).toBe('input.0.content.0.text');
    expect(await refusedParam(loneClient.responses.create({ model, input: 'A dog.', instructions: HALF, max_output_tokens: 16 }))).toBe('instructions');
  });

  it("is refused by the Conversations API, its items as they were; a response's input naming a conversation leaves it as it was", async () => {
    expect(await refusedParam(loneClient.conversations.create({ items: [{ type: 'message', role: 'user', content: HALF }] }))).toBe('items.0.content');
    const conversation = await loneClient.conversations.create({ items: [{ type: 'message', role: 'user', content: 'A dog.' }] });
    expect(await refusedParam(loneClient.conversations.items.create(conversation.id, { items: [{ type: 'message', role: 'assistant', content: HALF }] }))).toBe('items.0.content');
    expect(await refusedParam(loneClient.responses.create({ model, input: HALF, conversation: conversation.id, max_output_tokens: 16 }))).toBe('input');
    // A key of its metadata is named by the object: the error's own JSON quotes no half character.
    expect(await refusedParam(loneClient.conversations.update(conversation.id, { metadata: { '\ud83d': 'v' } }))).toBe('metadata');
    const items = await loneClient.conversations.items.list(conversation.id);
    expect(items.data.map((item) => (item.type === 'message' ? item.content.map((part) => ('text' in part ? part.text : '')).join('') : item.type))).toEqual(['A dog.']);
    expect(await loneClient.conversations.retrieve(conversation.id)).toMatchObject({ metadata: {} });
  });
});
