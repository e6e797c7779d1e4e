// OpenAI's Conversations API on the edge against the real stack (a pool process and `wrangler dev` with local KV),
// driven by the official `openai` client as a user calls it: conversations and their items, and responses that take
// a conversation as their context and append their turn to it (foreground, streamed and background).
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../launcher/stack';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import { models } from '../support/shared-data';
import { startTestStack, type TestStack } from './stack-fixture';

const OTHER_KEY = 'e2e-conversations-other-key';
/** Keys of 1 MiB a day as OTHER_KEY, one a test: item references charged as resolved, metadata changes as rewritten. */
const REFS_KEY = 'e2e-conversations-refs-key';
const METADATA_KEY = 'e2e-conversations-metadata-key';
/** REFS_KEY's data (its record's dataOf) on a budget of its own: the stored responses REFS_KEY names are not its charge. */
const REFS_MAKER_KEY = 'e2e-conversations-refs-maker-key';
/** A key of 1 MiB a day whose responses' turns in its conversations spend it. */
const TURNS_KEY = 'e2e-conversations-turns-key';
/** Small enough that 20 items of 4,000 characters pass it. */
const MAX_BYTES = 64 * 1024;

let stack: TestStack;
let client: OpenAI;
let model: string;

beforeAll(async () => {
  // The other key stores 1 MiB a day (storage-budget.ts).
  stack = await startTestStack({ vars: { SSSD_API_KEYS: JSON.stringify({
        [sha256Hex(OTHER_KEY)]: { tenant: 'other', storageMbPerDay: 1 },
        [sha256Hex(REFS_KEY)]: { tenant: 'refs', storageMbPerDay: 1 },
        [sha256Hex(METADATA_KEY)]: { tenant: 'metadata', storageMbPerDay: 1 },
        [sha256Hex(REFS_MAKER_KEY)]: { tenant: 'refs', dataOf: sha256Hex(REFS_KEY) },
        [sha256Hex(TURNS_KEY)]: { tenant: 'turns', storageMbPerDay: 1 },
      }), SSSD_RESPONSE_MAX_BYTES: String(MAX_BYTES) } });
  client = new OpenAI({ apiKey: stack.devKey, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
  model = (await client.models.list()).data[0].id;
});

afterAll(async () => {
  await stack?.dispose();
});

const PROMPT = 'Once upon a time, there was a little dog named Max.';

/** Every item of a conversation, oldest first, following its pages as the SDK does. */
async function allItems(id: string): Promise<OpenAI.Conversations.ConversationItem[]> {
  const items: OpenAI.Conversations.ConversationItem[] = [];
  for await (const item of client.conversations.items.list(id, { order: 'asc', limit: 2 })) items.push(item);
  return items;
}

/** A message item's role and text. */
function said(item: OpenAI.Conversations.ConversationItem): [string, string] {
  if (item.type !== 'message') return [item.type, ''];
  return [item.role, item.content.map((part) => ('text' in part ? part.text : '')).join('')];
}

async function badRequest(run: Promise<unknown>): Promise<InstanceType<typeof OpenAI.BadRequestError>> {
  const err = await run.catch((e: unknown) => e);
  expect(err).toBeInstanceOf(OpenAI.BadRequestError);
  return err as InstanceType<typeof OpenAI.BadRequestError>;
}

/** Runs `attempt` (given how many went through) until it is refused or `most` went through: that count, and the refusal (null: none). */
async function untilRefused(attempt: (n: number) => Promise<unknown>, most: number): Promise<{ done: number; refused: unknown }> {
  let done = 0;
  while (done < most) {
    const refused = await attempt(done).then(
      () => null,
      (err: unknown) => err,
    );
    if (refused !== null) return { done, refused };
    done++;
  }
  return { done, refused: null };
}
describe('conversations', () => {
  it('creates, retrieves, updates and deletes a conversation and its items, for its key alone', async () => {
    const created = await client.conversations.create({ items: [{ role: 'user', content: PROMPT }], metadata: { suite: 'crud' } });
    expect(created).toMatchObject({ object: 'conversation', metadata: { suite: 'crud' } });
    expect(created.id).toMatch(/^conv_[0-9a-f]{48}$/);
    expect(await client.conversations.retrieve(created.id)).toEqual(created);
    expect(await client.conversations.create()).toMatchObject({ object: 'conversation', metadata: {} });

    const added = await client.conversations.items.create(created.id, {
      items: [
        { type: 'message', role: 'assistant', content: 'Max ran.' },
        { type: 'message', role: 'user', content: 'And then?' },
      ],
    });
    expect(added).toMatchObject({ object: 'list', has_more: false });
    expect(added.data.map(said)).toEqual([
      ['assistant', 'Max ran.'],
      ['user', 'And then?'],
    ]);
    // Newest first by default, as OpenAI's.
    const newest = await client.conversations.items.list(created.id);
    expect(newest.data.map(said)).toEqual([
      ['user', 'And then?'],
      ['assistant', 'Max ran.'],
      ['user', PROMPT],
    ]);
    expect((await allItems(created.id)).map((item) => item.id)).toEqual([...newest.data].reverse().map((item) => item.id));
    const second = newest.data[1]!;
    const secondId = second.id!;
    expect(await client.conversations.items.retrieve(secondId, { conversation_id: created.id })).toEqual(second);

    const updated = await client.conversations.update(created.id, { metadata: { suite: 'crud', step: '2' } });
    expect(updated).toEqual({ ...created, metadata: { suite: 'crud', step: '2' } });
    expect((await badRequest(client.conversations.update(created.id, { metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }))).param).toBe('metadata');

    // An item's delete answers the conversation; the item is gone.
    expect(await client.conversations.items.delete(secondId, { conversation_id: created.id })).toEqual(updated);
    expect((await allItems(created.id)).map(said)).toEqual([
      ['user', PROMPT],
      ['user', 'And then?'],
    ]);
    await expect(client.conversations.items.retrieve(secondId, { conversation_id: created.id })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.conversations.items.delete(secondId, { conversation_id: created.id })).rejects.toBeInstanceOf(OpenAI.NotFoundError);

    // Bad items and queries are 400s naming the param.
    expect((await badRequest(client.conversations.items.create(created.id, { items: [{ role: 'user', content: [{ type: 'input_image', image_url: 'https://x/y.png', detail: 'auto' }] }] }))).param).toBe('items.0.content.0.type');
    expect((await badRequest(client.conversations.create({ items: Array.from({ length: 21 }, () => ({ role: 'user' as const, content: 'x' })) }))).param).toBe('items');
    expect((await badRequest(client.conversations.items.list(created.id, { limit: 0 }))).param).toBe('limit');
    // Over SSSD_RESPONSE_MAX_BYTES: a 400 that says so.
    const big = await badRequest(client.conversations.create({ items: Array.from({ length: 20 }, () => ({ role: 'user' as const, content: 'x'.repeat(4000) })) }));
    expect(big.param).toBe('items');
    expect(big.message).toContain('SSSD_RESPONSE_MAX_BYTES');

    // Another key finds none of it.
    const other = new OpenAI({ apiKey: OTHER_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    await expect(other.conversations.retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(other.conversations.update(created.id, { metadata: {} })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(other.conversations.items.list(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(other.conversations.items.create(created.id, { items: [{ role: 'user', content: 'x' }] })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(other.conversations.delete(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(other.responses.create({ model, conversation: created.id, input: 'x', max_output_tokens: 2 })).rejects.toBeInstanceOf(OpenAI.NotFoundError);

    expect(await client.conversations.delete(created.id)).toEqual({ id: created.id, object: 'conversation.deleted', deleted: true });
    await expect(client.conversations.retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.conversations.delete(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("answers a response with the conversation's items as its context, and appends its input and output to it", async () => {
    const conversation = await client.conversations.create({ items: [{ role: 'system', content: 'A story.' }] });
    const first = await client.responses.create({ model, conversation: conversation.id, input: PROMPT, max_output_tokens: 12, temperature: 0 });
    expect(first.conversation).toEqual({ id: conversation.id });
    // The context is the conversation's items then the input: as the chat completion of the same messages.
    const chat = await client.chat.completions.create({
      model,
      messages: [
        { role: 'system', content: 'A story.' },
        { role: 'user', content: PROMPT },
      ],
      max_completion_tokens: 12,
      temperature: 0,
    });
    expect(first.output_text).toBe(chat.choices[0].message.content);
    expect(first.usage?.input_tokens).toBe(chat.usage?.prompt_tokens);
    expect((await allItems(conversation.id)).map(said)).toEqual([
      ['system', 'A story.'],
      ['user', PROMPT],
      ['assistant', first.output_text],
    ]);

    // The next turn reads the first's, named as {id} this time.
    const second = await client.responses.create({ model, conversation: { id: conversation.id }, input: 'Max ran.', max_output_tokens: 8, temperature: 0 });
    expect(second.usage!.input_tokens).toBeGreaterThan(first.usage!.input_tokens + first.usage!.output_tokens);
    const items = await allItems(conversation.id);
    expect(items.map(said).slice(3)).toEqual([
      ['user', 'Max ran.'],
      ['assistant', second.output_text],
    ]);
    // The output item keeps the response's id for it.
    expect(items.at(-1)?.id).toBe(second.output[0].id);

    // A chain beside it is OpenAI's 400; a conversation not there is a 404 naming it; neither appends anything.
    expect((await badRequest(client.responses.create({ model, conversation: conversation.id, previous_response_id: first.id, input: 'x', max_output_tokens: 2 }))).param).toBe('conversation');
    const missing = await client.responses.create({ model, conversation: 'conv_nowhere', input: 'x', max_output_tokens: 2 }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect((missing as InstanceType<typeof OpenAI.NotFoundError>).param).toBe('conversation');
    expect(await allItems(conversation.id)).toHaveLength(5);
  });

  it("refuses items that can never fit the model's context, and keeps a conversation longer than it as a whole", async () => {
    // The edge's bound by length (edge/context-bound.ts): the served context times the tokenizer's longest piece, times 4.
    const tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)), 'llama2c');
    let longest = 1;
    for (let id = 0; id < tokenizer.vocabSize; id++) longest = Math.max(longest, tokenizer.tokenBytes(id).length);
    const listed = (await (await fetch(`${stack.edgeUrl}/v1/models`, { headers: { authorization: `Bearer ${stack.devKey}` } })).json()) as { data: { max_model_len: number }[] };
    const contextLength = listed.data[0].max_model_len;
    const bound = contextLength * longest * 4;
    // Under SSSD_RESPONSE_MAX_BYTES, so only the new check refuses it (before, it was stored, and no response could read it).
    expect(bound + 1000).toBeLessThan(MAX_BYTES);

    const tooLong = await badRequest(client.conversations.create({ items: [{ role: 'user', content: 'hi' }, { role: 'user', content: 'A'.repeat(bound + 1) }] }));
    expect(tooLong.param).toBe('items.1');
    expect(tooLong.code).toBe('context_length_exceeded');
    expect(tooLong.message).toContain(`${bound + 1} characters`);
    expect(tooLong.message).toContain(`${contextLength} tokens; an item of more than ${bound} characters cannot`);

    const conversation = await client.conversations.create({ items: [{ role: 'system', content: 's'.repeat(Math.floor(bound / 2)) }] });
    const call = { type: 'function_call' as const, call_id: 'c', name: 'f', arguments: '{}' };
    expect((await badRequest(client.conversations.items.create(conversation.id, { items: [call, { type: 'function_call_output', call_id: 'c', output: 'o'.repeat(bound + 1) }] }))).param).toBe('items.1');
    // System and developer messages are never dropped by truncation: together past the bound, no response could run.
    const instructions = await badRequest(client.conversations.items.create(conversation.id, { items: [{ role: 'developer', content: 'd'.repeat(Math.floor(bound / 2) + 2) }] }));
    expect(instructions.param).toBe('items');
    expect(instructions.message).toContain('truncation never drops them');
    expect(await allItems(conversation.id)).toHaveLength(1);

    // Users' turns past the bound as a whole are kept: truncation "auto" answers from the last of them.
    const turns = Array.from({ length: 5 }, (_, i) => ({ role: 'user' as const, content: `${i} ${'w '.repeat(Math.floor(bound / 8))}` }));
    const long = await client.conversations.create({ items: [turns[0]] });
    await client.conversations.items.create(long.id, { items: turns.slice(1) });
    const refused = await badRequest(client.responses.create({ model, conversation: long.id, input: PROMPT, max_output_tokens: 2 }));
    expect(refused.code).toBe('context_length_exceeded');
    const truncated = await client.responses.create({ model, conversation: long.id, input: PROMPT, max_output_tokens: 2, truncation: 'auto' });
    expect(truncated.usage!.input_tokens).toBeLessThan(contextLength);
    expect(truncated.usage!.output_tokens).toBeGreaterThan(0);
  });

  it('stores at most the key\'s storageMbPerDay a day through conversations: a 429 past it, for that key alone (review h213)', async () => {
    const other = new OpenAI({ apiKey: OTHER_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    const body = { items: Array.from({ length: 15 }, (_, i) => ({ role: 'user' as const, content: 'abcdefghijklmno'[i].repeat(4000) })) };
    const bodyBytes = JSON.stringify(body).length;
    // A stored chat completion's metadata is replaced from the same budget (its generation is not counted).
    const completion = await other.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_completion_tokens: 1, store: true });
    const ids = [(await other.conversations.create(body)).id];
    // A create takes what it writes: the items as stored, with their ids (more than the body, less than as listed).
    const listedBytes = JSON.stringify({ items: (await other.conversations.items.list(ids[0], { limit: 100 })).data, metadata: {} }).length;
    let refused: unknown = null;
    // 1 MiB a day is ~17 bodies of ~60 KB; a few more tries show it stops there.
    while (refused === null && ids.length < 40) {
      refused = await other.conversations.create(body).then(
        (made) => {
          ids.push(made.id);
          return null;
        },
        (err: unknown) => err,
      );
    }
    const made = ids.length;
    const first = { id: ids[0] };
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    const err = refused as InstanceType<typeof OpenAI.RateLimitError>;
    expect(err.code).toBe('storage_limit_exceeded');
    expect(err.message).toContain('1 MiB a day');
    expect(made * bodyBytes).toBeLessThanOrEqual(1024 * 1024);
    expect((made + 1) * listedBytes).toBeGreaterThan(1024 * 1024);
    // What the day's refill takes to give a body back: ~an hour and a half, past what a retry should wait.
    const retryAfter = Number(err.headers?.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(60);
    expect(retryAfter).toBeLessThanOrEqual(Math.ceil((bodyBytes / (1024 * 1024)) * 86_400));
    expect(err.headers?.get('x-should-retry')).toBe('false');
    // Items added take from it too (the same body as items: refused as the create was), and metadata replaced (what
    // is left of the MiB is less than a record, which a change writes again); reads and deletes do not.
    await expect(other.conversations.items.create(first.id, body)).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    await expect(other.conversations.update(first.id, { metadata: { a: 'b' } })).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    // What is left goes in empty creates, 1 KiB each (a stored completion's record is more than that).
    let empty = 0;
    const createdEmpty = () => other.conversations.create().then(() => true, (e: unknown) => (e instanceof OpenAI.RateLimitError ? false : Promise.reject(e)));
    while (empty <= listedBytes / 1024 + 2 && (await createdEmpty())) empty++;
    expect(empty).toBeLessThanOrEqual(listedBytes / 1024 + 1);
    await expect(other.chat.completions.update(completion.id, { metadata: { a: 'b' } })).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    expect(await other.chat.completions.retrieve(completion.id)).toMatchObject({ metadata: {} });
    expect((await other.conversations.items.list(first.id)).data).toHaveLength(15);
    expect(await other.conversations.delete(first.id)).toMatchObject({ deleted: true });
    // Another key's budget is its own.
    expect(await client.conversations.create(body)).toMatchObject({ object: 'conversation' });
  });

  it("charges item references at the size of the items they bring in, not the body's (review h217, finding 1)", async () => {
    const refs = new OpenAI({ apiKey: REFS_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    // Stored responses' input items to name: ~840 characters each, within the model's context; stored by a key of
    // the same data and a budget of its own (a stored response is charged to the key that makes it).
    const maker = new OpenAI({ apiKey: REFS_MAKER_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    const itemIds: string[] = [];
    for (let i = 0; i < 10; i++) {
      const response = await maker.responses.create({ model, input: `${i} ${'Max ran to the park. '.repeat(40)}`, max_output_tokens: 1, store: true });
      itemIds.push(...(await refs.responses.inputItems.list(response.id)).data.map((item) => item.id));
    }
    expect(itemIds).toHaveLength(10);
    const body = { items: itemIds.map((id) => ({ type: 'item_reference' as const, id })) };
    const bodyBytes = JSON.stringify(body).length;
    // One to add them to afterwards (a conversation holds an item id once).
    const target = await refs.conversations.create();
    const first = await refs.conversations.create(body);
    const listedBytes = JSON.stringify({ items: (await refs.conversations.items.list(first.id, { limit: 100 })).data, metadata: {} }).length;
    // The body is under the 1 KiB each request takes at least; what it stores is over eight times that.
    expect(bodyBytes).toBeLessThan(1024);
    const textBytes = 10 * 'Max ran to the park. '.length * 40;
    expect(textBytes).toBeGreaterThan(8 * 1024);
    // Charged the body (the 1 KiB floor), 1,024 of them went in; charged what they store, under 130.
    const { done, refused } = await untilRefused(() => refs.conversations.create(body), 299);
    const made = 1 + done;
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    expect((refused as InstanceType<typeof OpenAI.RateLimitError>).code).toBe('storage_limit_exceeded');
    expect(made * textBytes).toBeLessThanOrEqual(1024 * 1024);
    expect((made + 1) * listedBytes).toBeGreaterThan(1024 * 1024);
    // Items added by reference are charged so too. (An empty create first, 1 KiB where there is room for it: what is left
    // is then surely under the items' charge, which is ~25 bytes under the refused create's.)
    await refs.conversations.create().catch((err: unknown) => (err instanceof OpenAI.RateLimitError ? undefined : Promise.reject(err)));
    await expect(refs.conversations.items.create(target.id, body)).rejects.toBeInstanceOf(OpenAI.RateLimitError);
  });

  it('charges a metadata change the size of the record it writes again with a fresh TTL, not its body (review h217, finding 3)', async () => {
    const keeper = new OpenAI({ apiKey: METADATA_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    // Four conversations of ~48 KB (each under SSSD_RESPONSE_MAX_BYTES and each item under the context bound).
    const body = { items: Array.from({ length: 4 }, (_, i) => ({ role: 'user' as const, content: 'wxyz'[i].repeat(12_000) })) };
    const recordBytes = JSON.stringify(body).length;
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await keeper.conversations.create(body)).id);
    // Each of another conversation in turn (one conversation takes a write a second). Charged its 1 KiB body, ~830
    // went in; charged its record, ~17.
    const { done: updates, refused } = await untilRefused((n) => keeper.conversations.update(ids[n % 4], { metadata: { n: String(n) } }), 40);
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    expect((refused as InstanceType<typeof OpenAI.RateLimitError>).code).toBe('storage_limit_exceeded');
    expect((4 + updates) * recordBytes).toBeLessThanOrEqual(1024 * 1024);
    // A record as listed is more than as stored: an upper bound on each charge.
    const listedBytes = JSON.stringify({ items: (await keeper.conversations.items.list(ids[0], { limit: 100 })).data, metadata: { n: '00' } }).length + 200;
    expect((4 + updates + 1) * listedBytes).toBeGreaterThan(1024 * 1024);
  });

  it("charges a response's turn in its conversation the items it appends, store: false or not; a response naming no conversation with store: false is not charged", async () => {
    const turns = new OpenAI({ apiKey: TURNS_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    // ~48 KB of input, each item within the context bound; truncation 'auto' answers from the last, which fits. One turn
    // a conversation (SSSD_RESPONSE_MAX_BYTES is 64 KiB here).
    const input = [...Array.from({ length: 4 }, (_, i) => ({ role: 'user' as const, content: 'efgh'[i].repeat(12_000) })), { role: 'user' as const, content: PROMPT }];
    const textBytes = input.reduce((sum, item) => sum + item.content.length, 0);
    const conversations: string[] = [];
    // Each a conversation made (1 KiB) and a turn in it. Turns not charged, 40 would go in; charged, ~21.
    const { done: turned, refused } = await untilRefused(async () => {
      const conversation = await turns.conversations.create();
      conversations.push(conversation.id);
      await turns.responses.create({ model, conversation: conversation.id, input, max_output_tokens: 1, truncation: 'auto', store: false });
    }, 40);
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    expect((refused as InstanceType<typeof OpenAI.RateLimitError>).code).toBe('storage_limit_exceeded');
    // A turn as listed is more than as stored (each item's status): an upper bound on its charge. Each was let in while
    // the budget covered its input, and charged its items as appended.
    const turnAtMost = JSON.stringify((await turns.conversations.items.list(conversations[0], { limit: 100 })).data).length;
    expect(turned * (textBytes + 1024)).toBeLessThanOrEqual(1024 * 1024);
    expect((turned + 1) * (turnAtMost + 1024) + 1024).toBeGreaterThan(1024 * 1024);
    // Less than a KiB left (empty creates take what is): a turn, however small, is refused before it runs, and its
    // conversation left as it was; a response that stores nothing goes through.
    while (await turns.conversations.create().then(() => true, (e: unknown) => (e instanceof OpenAI.RateLimitError ? false : Promise.reject(e))));
    const last = conversations.at(-1)!;
    const itemsOfLast = async () => (await turns.conversations.items.list(last, { limit: 100 })).data;
    const before = await itemsOfLast();
    // Its 429 does not send it to the store: false it sent (review h227, finding 4).
    const refusedTurn = await turns.responses.create({ model, conversation: last, input: PROMPT, max_output_tokens: 1, store: false }).catch((e: unknown) => e);
    expect(refusedTurn).toMatchObject({ status: 429, code: 'storage_limit_exceeded' });
    expect((refusedTurn as Error).message).toContain('Requests with store: false that name no conversation store nothing');
    expect(await itemsOfLast()).toEqual(before);
    expect((await turns.responses.create({ model, input: PROMPT, max_output_tokens: 1, store: false })).status).toMatch(/completed|incomplete/);
  });

  it('appends a streamed response once it completes, and a background one once its run ends', async () => {
    const conversation = await client.conversations.create({ items: [{ role: 'user', content: PROMPT }] });
    const stream = client.responses.stream({ model, conversation: conversation.id, input: 'Max ran.', max_output_tokens: 8, temperature: 0 });
    const streamed = await stream.finalResponse();
    expect(streamed.conversation).toEqual({ id: conversation.id });
    // Appended before the stream's last event: the client reads it at once.
    expect((await allItems(conversation.id)).map(said)).toEqual([
      ['user', PROMPT],
      ['user', 'Max ran.'],
      ['assistant', streamed.output_text],
    ]);

    const queued = await client.responses.create({ model, conversation: conversation.id, input: 'The end.', max_output_tokens: 8, temperature: 0, background: true });
    expect(queued).toMatchObject({ status: 'queued', conversation: { id: conversation.id } });
    let done = queued;
    for (const until = Date.now() + 30_000; (done.status === 'queued' || done.status === 'in_progress') && Date.now() < until; ) {
      await new Promise((r) => setTimeout(r, 200));
      done = await client.responses.retrieve(queued.id);
    }
    expect(['completed', 'incomplete']).toContain(done.status);
    // Its turn is appended before its end is stored: the poll that finds it ended finds the turn too (review h170).
    const items = await allItems(conversation.id);
    expect(items.map(said).slice(3)).toEqual([
      ['user', 'The end.'],
      ['assistant', done.output_text],
    ]);
  });
});
