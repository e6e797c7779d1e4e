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
/** Small enough that 20 items of 4,000 characters pass it. */
const MAX_BYTES = 64 * 1024;

let stack: TestStack;
let client: OpenAI;
let model: string;

beforeAll(async () => {
  // The other key stores 1 MiB a day through the routes that store with no generation (storage-budget.ts).
  stack = await startTestStack({ vars: { SSSD_API_KEYS: JSON.stringify({ [sha256Hex(OTHER_KEY)]: { tenant: 'other', storageMbPerDay: 1 } }), SSSD_RESPONSE_MAX_BYTES: String(MAX_BYTES) } });
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
    expect((made + 1) * bodyBytes).toBeGreaterThan(1024 * 1024);
    // What the day's refill takes to give a body back: ~an hour and a half, past what a retry should wait.
    const retryAfter = Number(err.headers?.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(60);
    expect(retryAfter).toBeLessThanOrEqual(Math.ceil((bodyBytes / (1024 * 1024)) * 86_400));
    expect(err.headers?.get('x-should-retry')).toBe('false');
    // Items added take from it too (the same body as items: refused as the create was), and metadata replaced, 1 KiB
    // at least a request (what is left of the MiB, less than a body, goes in so many); reads and deletes do not.
    await expect(other.conversations.items.create(first.id, body)).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    const left = 1024 * 1024 - made * bodyBytes;
    let updates = 0;
    // Each of another conversation, oldest first (one conversation takes a write a second).
    const updated = () => other.conversations.update(ids[updates % made], { metadata: { a: 'b' } }).then(() => true, (e: unknown) => (e instanceof OpenAI.RateLimitError ? false : Promise.reject(e)));
    while (updates <= left / 1024 + 2 && (await updated())) updates++;
    // The day's refill over the test's seconds (~12 bytes a second) adds one at most.
    expect(updates).toBeGreaterThanOrEqual(Math.floor(left / 1024));
    expect(updates).toBeLessThanOrEqual(Math.floor(left / 1024) + 1);
    await expect(other.chat.completions.update(completion.id, { metadata: { a: 'b' } })).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    expect(await other.chat.completions.retrieve(completion.id)).toMatchObject({ metadata: {} });
    expect((await other.conversations.items.list(first.id)).data).toHaveLength(15);
    expect(await other.conversations.delete(first.id)).toMatchObject({ deleted: true });
    // Another key's budget is its own.
    expect(await client.conversations.create(body)).toMatchObject({ object: 'conversation' });
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
