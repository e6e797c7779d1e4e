// Half of a character (a lone surrogate, `"\ud800"` in the JSON) in what a request asks the model to read, against
// the real stack (a pool process and `wrangler dev` with local KV), driven by the official `openai` client, which
// sends it escaped: each API refuses it with a 400 naming the field, and stores nothing of the request (taken, the
// model read U+FFFD while stored chat completions, responses and conversations kept the half character as sent).
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from './stack-fixture';

let stack: TestStack;
let client: OpenAI;
let model: string;

beforeAll(async () => {
  stack = await startTestStack();
  client = new OpenAI({ apiKey: stack.devKey, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
  model = (await client.models.list()).data[0].id;
});

afterAll(async () => {
  await stack?.dispose();
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
  for await (const completion of client.chat.completions.list()) all.push(completion);
  return all;
}

describe('a lone surrogate in a request', () => {
  it('is refused by chat completions (stored or not) and completions, naming the field; nothing is stored', async () => {
    const messages = (content: OpenAI.ChatCompletionUserMessageParam['content']): OpenAI.ChatCompletionMessageParam[] => [{ role: 'system', content: 'A story.' }, { role: 'user', content }];
    expect(await refusedParam(client.chat.completions.create({ model, messages: messages(HALF), max_tokens: 4, store: true }))).toBe('messages.1.content');
    expect(await refusedParam(client.chat.completions.create({ model, messages: messages([{ type: 'text', text: 'A dog.' }, { type: 'text', text: HALF }]), max_tokens: 4, store: true, stream: true }))).toBe('messages.1.content.1.text');
    expect(await refusedParam(client.completions.create({ model, prompt: HALF, max_tokens: 4 }))).toBe('prompt');
    expect(await storedChatCompletions()).toEqual([]);

    // A whole character (a pair) is text; `user` is a name, kept as sent (a user cache of its own): both taken, and stored as sent.
    const whole = 'Once upon a time \ud83d\ude00';
    const created = await client.chat.completions.create({ model, messages: messages(whole), max_tokens: 4, temperature: 0, store: true, user: '\ud800' });
    const kept = await client.chat.completions.messages.list(created.id);
    expect(kept.data.map((m) => m.content)).toEqual(['A story.', whole]);
    expect((await storedChatCompletions()).map((c) => c.id)).toEqual([created.id]);
  });

  it('is refused by the Responses API (foreground or background, its input or instructions), naming the field', async () => {
    expect(await refusedParam(client.responses.create({ model, input: HALF, max_output_tokens: 16, store: true }))).toBe('input');
    expect(await refusedParam(client.responses.create({ model, input: [{ role: 'user', content: [{ type: 'input_text', text: HALF }] }], max_output_tokens: 16, background: true }))).toBe('input.0.content.0.text');
    expect(await refusedParam(client.responses.create({ model, input: 'A dog.', instructions: HALF, max_output_tokens: 16 }))).toBe('instructions');
  });

  it("is refused by the Conversations API, its items as they were; a response's input naming a conversation leaves it as it was", async () => {
    expect(await refusedParam(client.conversations.create({ items: [{ type: 'message', role: 'user', content: HALF }] }))).toBe('items.0.content');
    const conversation = await client.conversations.create({ items: [{ type: 'message', role: 'user', content: 'A dog.' }] });
    expect(await refusedParam(client.conversations.items.create(conversation.id, { items: [{ type: 'message', role: 'assistant', content: HALF }] }))).toBe('items.0.content');
    expect(await refusedParam(client.responses.create({ model, input: HALF, conversation: conversation.id, max_output_tokens: 16 }))).toBe('input');
    // A key of its metadata is named by the object: the error's own JSON quotes no half character.
    expect(await refusedParam(client.conversations.update(conversation.id, { metadata: { '\ud83d': 'v' } }))).toBe('metadata');
    const items = await client.conversations.items.list(conversation.id);
    expect(items.data.map((item) => (item.type === 'message' ? item.content.map((part) => ('text' in part ? part.text : '')).join('') : item.type))).toEqual(['A dog.']);
    expect(await client.conversations.retrieve(conversation.id)).toMatchObject({ metadata: {} });
  });
});
