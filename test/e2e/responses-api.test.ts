// OpenAI's Responses API on the edge against the real stack (a pool process and
// `wrangler dev` with local KV), driven by the official `openai` client.
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, type ModelMessage } from 'ai';
import OpenAI from 'openai';
import { zodTextFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { END_STORED_WITHIN_MS } from '../../edge/background-response';
import { sha256Hex, startEdge } from '../../launcher/stack';
import { metricValue } from '../gpu-pool/server/pool-process';
import { finishedAfter, finishedCounts } from './finished-counts';
import { startTestStack, type TestStack } from './stack-fixture';

const OTHER_KEY = 'e2e-responses-other-key';
const ONE_SLOT_KEY = 'e2e-responses-one-slot-key';
/** A key that replaced OTHER_KEY (its record's dataOf): it shares OTHER_KEY's stored data. */
const ROTATED_KEY = 'e2e-responses-rotated-key';
/** A key that stores 1 MiB a day (storage-budget.ts): its stored responses spend it. */
const STORING_KEY = 'e2e-responses-storing-key';
/** A key that stores 1 MiB a day, whose generations' clients leave before they store anything. */
const LEAVING_KEY = 'e2e-responses-leaving-key';
const MIB = 1024 * 1024;

let stack: TestStack;
let client: OpenAI;
let model: string;

beforeAll(async () => {
  stack = await startTestStack({
    vars: {
      SSSD_API_KEYS: JSON.stringify({
        [sha256Hex(OTHER_KEY)]: { tenant: 'other' },
        [sha256Hex(ONE_SLOT_KEY)]: { tenant: 'one-slot', rpm: 6000, concurrency: 1 },
        [sha256Hex(ROTATED_KEY)]: { tenant: 'other', dataOf: sha256Hex(OTHER_KEY) },
        [sha256Hex(STORING_KEY)]: { tenant: 'storing', storageMbPerDay: 1 },
        [sha256Hex(LEAVING_KEY)]: { tenant: 'leaving', rpm: 6000, concurrency: 8, storageMbPerDay: 1 },
      }),
      SSSD_CONCURRENCY_LEASE_SECONDS: '3',
      // JSON goes to the pool as a grammar here (the other e2e stacks send the default regex form).
      SSSD_JSON_GRAMMAR: '1',
    },
  });
  client = new OpenAI({ apiKey: stack.devKey, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
  model = (await client.models.list()).data[0].id;
});

afterAll(async () => {
  await stack?.dispose();
});

const PROMPT = 'Once upon a time, there was a little dog named Max.';

async function chatText(messages: OpenAI.ChatCompletionMessageParam[], maxTokens: number): Promise<{ text: string; promptTokens: number }> {
  const chat = await client.chat.completions.create({ model, messages, max_completion_tokens: maxTokens, temperature: 0 });
  return { text: chat.choices[0].message.content ?? '', promptTokens: chat.usage?.prompt_tokens ?? 0 };
}

/** What a conversation continued with "Max ran." after PROMPT and `reply` must answer: the chat completion of the three. */
function continuedChat(reply: string): Promise<{ text: string; promptTokens: number }> {
  return chatText(
    [
      { role: 'user', content: PROMPT },
      { role: 'assistant', content: reply },
      { role: 'user', content: 'Max ran.' },
    ],
    16,
  );
}

describe('Responses API on the edge', () => {
  it('creates a response whose text is the chat completion of the same messages, and stores it: retrieve, input items, chain, delete', async () => {
    const response = await client.responses.create({ model, input: PROMPT, instructions: 'A story.', max_output_tokens: 24, temperature: 0 });
    const chat = await chatText([{ role: 'system', content: 'A story.' }, { role: 'user', content: PROMPT }], 24);
    expect(response.object).toBe('response');
    expect(response.id).toMatch(/^resp_[0-9a-f]+$/);
    expect(response.model).toBe(model);
    expect(response.output_text).toBe(chat.text);
    expect(response.output).toHaveLength(1);
    expect(response.output[0]).toMatchObject({ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: chat.text, annotations: [] }] });
    expect(response.usage).toMatchObject({ input_tokens: chat.promptTokens, output_tokens: expect.any(Number), output_tokens_details: { reasoning_tokens: 0 } });
    expect(response.usage!.total_tokens).toBe(response.usage!.input_tokens + response.usage!.output_tokens);
    expect(['completed', 'incomplete']).toContain(response.status);

    const retrieved = await client.responses.retrieve(response.id);
    expect(retrieved.output).toEqual(response.output);
    const items = await client.responses.inputItems.list(response.id);
    expect(items.data).toHaveLength(1);
    expect(items.data[0]).toMatchObject({ type: 'message', role: 'user', content: [{ type: 'input_text', text: PROMPT }] });

    // The chain continues the conversation (the instructions are not carried over, as OpenAI's).
    const next = await client.responses.create({ model, input: 'Max ran.', previous_response_id: response.id, max_output_tokens: 16, temperature: 0 });
    const whole = await continuedChat(response.output_text);
    expect(next.output_text).toBe(whole.text);
    expect(next.usage!.input_tokens).toBe(whole.promptTokens);
    expect(next.usage!.input_tokens).toBeGreaterThan(response.usage!.input_tokens);
    expect(next.previous_response_id).toBe(response.id);

    // Another key finds none of this key's responses.
    const other = new OpenAI({ apiKey: OTHER_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    await expect(other.responses.retrieve(response.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const chained = await other.responses.create({ model, input: 'x', previous_response_id: response.id }).catch((err: unknown) => err);
    expect(chained).toBeInstanceOf(OpenAI.NotFoundError);
    expect((chained as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('previous_response_not_found');
    expect((chained as InstanceType<typeof OpenAI.NotFoundError>).param).toBe('previous_response_id');
    // A key that replaced another (its record's dataOf) finds that key's responses and chains from them (review h143: a
    // rotation lost them all), and still none of a third key's.
    const kept = await other.responses.create({ model, input: PROMPT, max_output_tokens: 4, temperature: 0 });
    const rotated = new OpenAI({ apiKey: ROTATED_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    expect((await rotated.responses.retrieve(kept.id)).output).toEqual(kept.output);
    expect((await rotated.responses.create({ model, input: 'Max ran.', previous_response_id: kept.id, max_output_tokens: 4 })).previous_response_id).toBe(kept.id);
    await expect(rotated.responses.retrieve(response.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);

    expect(await client.responses.delete(response.id)).toEqual({ id: response.id, object: 'response', deleted: true });
    await expect(client.responses.retrieve(response.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("tells chat's system_fingerprint and the seed it ran with in headers, again when retrieved, and that seed gives the same text", async () => {
    const { data: response, response: raw } = await client.responses.create({ model, input: PROMPT, max_output_tokens: 12, temperature: 1 }).withResponse();
    const fingerprint = raw.headers.get('x-sssd-fingerprint');
    const seed = raw.headers.get('x-sssd-seed');
    expect(fingerprint).toMatch(/^fp_[0-9a-f]{10}$/);
    expect(seed).toMatch(/^\d+$/);
    const chat = await client.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_completion_tokens: 12, temperature: 1, seed: Number(seed) });
    expect(chat.system_fingerprint).toBe(fingerprint);
    expect(chat.choices[0].message.content).toBe(response.output_text);
    const { response: retrieved } = await client.responses.retrieve(response.id).withResponse();
    expect([retrieved.headers.get('x-sssd-fingerprint'), retrieved.headers.get('x-sssd-seed')]).toEqual([fingerprint, seed]);
  });

  it('streams events in order whose deltas join to the text, ending in response.completed with the stored response', async () => {
    const stream = await client.responses.create({ model, input: PROMPT, max_output_tokens: 24, temperature: 0, stream: true });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    const types = events.map((e) => e.type);
    expect(types.slice(0, 4)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    expect(types.slice(-4)).toEqual(['response.output_text.done', 'response.content_part.done', 'response.output_item.done', expect.stringMatching(/^response\.(completed|incomplete)$/)]);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    const deltas = events.filter((e): e is OpenAI.Responses.ResponseTextDeltaEvent => e.type === 'response.output_text.delta');
    const last = events[events.length - 1] as OpenAI.Responses.ResponseCompletedEvent;
    const item = last.response.output[0] as OpenAI.Responses.ResponseOutputMessage;
    expect(deltas.every((d) => d.item_id === item.id)).toBe(true);
    const text = deltas.map((d) => d.delta).join('');
    const whole = await client.responses.create({ model, input: PROMPT, max_output_tokens: 24, temperature: 0, store: false });
    expect(text).toBe(whole.output_text);
    expect((item.content[0] as OpenAI.Responses.ResponseOutputText).text).toBe(text);
    expect(Object.keys(last.response).sort()).toEqual(Object.keys(whole).filter((k) => k !== 'output_text').sort());
    // Stored before its last event: a chain at once finds it.
    expect((await client.responses.retrieve(last.response.id)).output).toEqual(last.response.output);
    await expect(client.responses.retrieve(whole.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);

    const helper = client.responses.stream({ model, input: PROMPT, max_output_tokens: 24, temperature: 0 });
    expect((await helper.finalResponse()).output_text).toBe(text);
  });

  it('follows text.format json_schema (responses.parse with zodTextFormat), makes a named function call, and streams text under tool_choice "auto"', async () => {
    const Pet = z.object({ name: z.string().max(8), age: z.number().int().min(0).max(20) });
    const grammarsBefore = await metricValue({ url: stack.poolUrl }, 'sssd_pool_grammar_compiles_total');
    const parsed = await client.responses.parse({ model, input: PROMPT, temperature: 0, max_output_tokens: 64, text: { format: zodTextFormat(Pet, 'pet') } });
    expect(Pet.parse(parsed.output_parsed)).toEqual(parsed.output_parsed);
    // SSSD_JSON_GRAMMAR=1: the schema went to the pool as a grammar.
    expect(await metricValue({ url: stack.poolUrl }, 'sssd_pool_grammar_compiles_total')).toBeGreaterThan(grammarsBefore);

    const tools: OpenAI.Responses.FunctionTool[] = [{ type: 'function', name: 'get_weather', strict: true, parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 } }, required: ['city'], additionalProperties: false } }];
    const called = await client.responses.create({ model, input: PROMPT, tools, tool_choice: { type: 'function', name: 'get_weather' }, max_output_tokens: 48, temperature: 0 });
    expect(called.output).toHaveLength(1);
    const call = called.output[0] as OpenAI.Responses.ResponseFunctionToolCall;
    expect(call).toMatchObject({ type: 'function_call', name: 'get_weather', status: 'completed' });
    expect(call.call_id).toMatch(/^call_/);
    expect(JSON.parse(call.arguments)).toHaveProperty('city');

    // tool_choice "auto" (the default where tools are sent): this model writes text, the text it writes without tools.
    const plain = await client.responses.create({ model, input: PROMPT, max_output_tokens: 24, temperature: 0 });
    const auto = await client.responses.create({ model, input: PROMPT, tools, max_output_tokens: 24, temperature: 0 });
    expect(auto.tool_choice).toBe('auto');
    expect(auto.output).toMatchObject([{ type: 'message', content: [{ type: 'output_text', text: plain.output_text }] }]);
    const events: string[] = [];
    let text = '';
    for await (const event of await client.responses.create({ model, input: PROMPT, tools, max_output_tokens: 24, temperature: 0, stream: true })) {
      events.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
    }
    expect(text).toBe(plain.output_text);
    expect(events.filter((type) => type.startsWith('response.function_call'))).toEqual([]);

    // OpenAI's allowed_tools, flat as the Responses API writes it: "required" over the listed function.
    const allowed = await client.responses.create({ model, input: PROMPT, tools, tool_choice: { type: 'allowed_tools', mode: 'required', tools: [{ type: 'function', name: 'get_weather' }] }, parallel_tool_calls: false, max_output_tokens: 120, temperature: 0 });
    expect(allowed.output).toMatchObject([{ type: 'function_call', name: 'get_weather', status: 'completed' }]);
    const notListed = await client.responses.create({ model, input: PROMPT, tools, tool_choice: { type: 'allowed_tools', mode: 'auto', tools: [{ type: 'function', name: 'nope' }] } }).catch((e: unknown) => e);
    expect((notListed as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('tool_choice.tools.0');

    // The call's output continues the chain.
    const answered = await client.responses.create({ model, previous_response_id: called.id, input: [{ type: 'function_call_output', call_id: call.call_id, output: 'Sunny.' }], max_output_tokens: 8, temperature: 0 });
    expect(answered.usage!.input_tokens).toBeGreaterThan(called.usage!.input_tokens);
  });

  it('ends incomplete at max_output_tokens, and refuses what it does not do by name', async () => {
    const cut = await client.responses.create({ model, input: PROMPT, max_output_tokens: 3, temperature: 0, speculation: 'off' } as OpenAI.Responses.ResponseCreateParamsNonStreaming);
    expect(cut.status).toBe('incomplete');
    expect(cut.incomplete_details).toEqual({ reason: 'max_output_tokens' });
    expect(cut.usage!.output_tokens).toBe(3);

    for (const [params, param] of [
      [{ reasoning: { effort: 'high' } }, 'reasoning'],
      [{ tools: [{ type: 'web_search' }] }, 'tools.0.type'],
      [{ input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'https://x/y.png' }] }] }, 'input.0.content.0.type'],
      [{ include: ['reasoning.encrypted_content'] }, 'include.0'],
      // Chat's fields, named as sent (not renamed to the Responses field they should have been).
      [{ response_format: { type: 'json_object' } }, 'response_format'],
      [{ max_completion_tokens: 5 }, 'max_completion_tokens'],
      [{ messages: [{ role: 'user', content: 'hi' }] }, 'messages'],
    ] as const) {
      const err = await client.responses.create({ model, input: PROMPT, ...params } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming).catch((e: unknown) => e);
      expect(err, param).toBeInstanceOf(OpenAI.BadRequestError);
      expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe(param);
      expect((err as InstanceType<typeof OpenAI.BadRequestError>).message, param).toContain(param);
    }
    // The chat path's checks name the Responses field.
    const tooMany = await client.responses.create({ model, input: PROMPT, max_output_tokens: 100_000 }).catch((e: unknown) => e);
    expect((tooMany as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('max_output_tokens');
    const cancel = await fetch(`${stack.edgeUrl}/v1/responses/${cut.id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${stack.devKey}` } });
    expect(cancel.status).toBe(400);
    // Nor streamed again: the SDK's responses.stream({response_id}) gets the reason, not a JSON body it reads as no events.
    const again = await Promise.resolve(client.responses.stream({ response_id: cut.id }).finalResponse()).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(OpenAI.BadRequestError);
    expect((again as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('stream');
    const streamOne = await fetch(`${stack.edgeUrl}/v1/responses/${cut.id}?stream=1`, { headers: { authorization: `Bearer ${stack.devKey}` } });
    expect(streamOne.status).toBe(400);
    const wrongMethod = await fetch(`${stack.edgeUrl}/v1/responses`, { method: 'GET', headers: { authorization: `Bearer ${stack.devKey}` } });
    expect(wrongMethod.status).toBe(405);
    // The path as asked, not the route's pattern.
    const wrongOnId = await fetch(`${stack.edgeUrl}/v1/responses/${cut.id}`, { method: 'PUT', headers: { authorization: `Bearer ${stack.devKey}` } });
    expect([wrongOnId.status, ((await wrongOnId.json()) as { error: { message: string } }).error.message]).toEqual([405, `/v1/responses/${cut.id} takes GET, DELETE, not PUT.`]);
  });

  it("takes vLLM's ignore_eos, min_tokens and stop_token_ids as chat does, and refuses chat's other extras by name (review h154)", async () => {
    type Params = OpenAI.Responses.ResponseCreateParamsNonStreaming;
    const ask = (extra: object): Promise<OpenAI.Responses.Response> => client.responses.create({ model, input: PROMPT, max_output_tokens: 400, temperature: 0, ...extra } as Params);
    // Greedy, the story ends itself (the end token) well before 400 tokens.
    const ended = await ask({});
    expect(ended.status).toBe('completed');
    const natural = ended.usage!.output_tokens;
    expect(natural).toBeLessThan(400);
    const forced = await ask({ ignore_eos: true });
    expect([forced.status, forced.usage!.output_tokens]).toEqual(['incomplete', 400]);
    expect(forced.output_text.startsWith(ended.output_text)).toBe(true);
    const longer = await ask({ min_tokens: natural + 5 });
    expect(longer.usage!.output_tokens).toBeGreaterThanOrEqual(natural + 5);
    // A token of the reply's own ends it there, as the end token would.
    const tokens = (await (await fetch(`${stack.edgeUrl}/tokenize`, { method: 'POST', headers: { authorization: `Bearer ${stack.devKey}`, 'content-type': 'application/json' }, body: JSON.stringify({ prompt: ended.output_text, add_special_tokens: false }) })).json()) as { tokens: number[] };
    const stopAt = tokens.tokens[3];
    const stopped = await ask({ stop_token_ids: [stopAt] });
    expect(stopped.status).toBe('completed');
    expect(stopped.usage!.output_tokens).toBeLessThanOrEqual(4);
    expect(ended.output_text.startsWith(stopped.output_text)).toBe(true);
    const err = await ask({ truncate_prompt_tokens: 8 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('truncate_prompt_tokens');
  });

  it("with truncation 'auto', drops a chain's oldest turns to fit the context (and refuses it without)", async () => {
    const contextLength = ((await (await fetch(`${stack.edgeUrl}/tokenize`, { method: 'POST', headers: { authorization: `Bearer ${stack.devKey}` }, body: JSON.stringify({ prompt: 'x' }) })).json()) as { max_model_len: number }).max_model_len;
    const count = async (messages: object[]): Promise<number> => {
      const res = await fetch(`${stack.edgeUrl}/tokenize`, { method: 'POST', headers: { authorization: `Bearer ${stack.devKey}` }, body: JSON.stringify({ model, messages }) });
      return ((await res.json()) as { count: number }).count;
    };
    // A last input that fits alone with 16 tokens of reply, but not after the first turn (the first turn too is long).
    let last = 'The end.';
    while ((await count([{ role: 'user', content: `${last} ${PROMPT}` }])) <= contextLength - 40) last = `${last} ${PROMPT}`;
    const first = await client.responses.create({ model, input: last.slice(0, 400), max_output_tokens: 16, temperature: 0 });
    const params = { model, input: last, previous_response_id: first.id, max_output_tokens: 16, temperature: 0 };

    const refused = await client.responses.create(params).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
    expect((refused as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('context_length_exceeded');

    const truncated = await client.responses.create({ ...params, truncation: 'auto' });
    expect(truncated.truncation).toBe('auto');
    // The first turn's user message is dropped, and its answer too where the rest does not fit beside it.
    const withAnswer: OpenAI.ChatCompletionMessageParam[] = [{ role: 'assistant', content: first.output_text }, { role: 'user', content: last }];
    const kept = (await count(withAnswer)) + 16 <= contextLength ? withAnswer : withAnswer.slice(1);
    const expected = await chatText(kept, 16);
    expect(truncated.output_text).toBe(expected.text);
    expect(truncated.usage!.input_tokens).toBe(expected.promptTokens);
    expect(truncated.usage!.input_tokens + 16).toBeLessThanOrEqual(contextLength);
    // What is never dropped too long alone: said so, naming the input.
    const undroppable = await client.responses.create({ ...params, truncation: 'auto', instructions: `${last} ${last}` }).catch((e: unknown) => e);
    expect(undroppable).toBeInstanceOf(OpenAI.BadRequestError);
    expect(undroppable).toMatchObject({ code: 'context_length_exceeded', param: 'input', message: expect.stringContaining('never dropped') });
    // A reply asking the whole context: refused naming it, not the prompt with every turn dropped (review h119).
    const tooLong = await client.responses.create({ ...params, truncation: 'auto', max_output_tokens: contextLength }).catch((e: unknown) => e);
    expect(tooLong).toMatchObject({ code: 'context_length_exceeded', param: 'max_output_tokens', message: expect.stringContaining(`${contextLength} are asked for the reply, which leaves no room for a prompt`) });
    // The chain stores the whole conversation: what is dropped is this request's prompt, not its history.
    const items = await client.responses.inputItems.list(truncated.id);
    expect(items.data).toHaveLength(1);
  });

  it("continues a conversation the AI SDK sends with item_references to its earlier replies (its default while store is on)", async () => {
    const sent: string[] = [];
    const provider = createOpenAI({
      apiKey: stack.devKey,
      baseURL: `${stack.edgeUrl}/v1`,
      fetch: (url, init) => {
        sent.push(String(init?.body ?? ''));
        return fetch(url, init);
      },
    });
    const messages: ModelMessage[] = [{ role: 'user', content: PROMPT }];
    const first = await generateText({ model: provider.responses(model), messages, maxOutputTokens: 16, temperature: 0, maxRetries: 0 });
    messages.push(...first.response.messages, { role: 'user', content: 'Max ran.' });
    const second = await generateText({ model: provider.responses(model), messages, maxOutputTokens: 16, temperature: 0, maxRetries: 0 });
    // The SDK named its earlier reply by id, not by its text: the edge found it in this key's stored responses.
    const input = (JSON.parse(sent[1]) as { input: Array<{ type?: string }> }).input;
    expect(input.map((item) => item.type ?? 'message')).toEqual(['message', 'item_reference', 'message']);
    const whole = await continuedChat(first.text);
    expect(second.text).toBe(whole.text);
    expect(second.usage.inputTokens).toBe(whole.promptTokens);
    // A reference to nothing this key stored is OpenAI's 400, naming the item.
    const missing = await client.responses.create({ model, input: [{ type: 'item_reference', id: 'msg_nothing' }, { role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.BadRequestError);
    expect((missing as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('input.0.id');
  });

  it('cancels the generation at the pool when a client aborts a stream, and frees its slot: a one-slot key runs its next request', async () => {
    const oneSlot = new OpenAI({ apiKey: ONE_SLOT_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    // The tiny model can finish before the abort reaches the pool; such an attempt proves nothing and is repeated.
    let cancelled = false;
    for (let attempt = 0; attempt < 5 && !cancelled; attempt++) {
      const before = await finishedCounts(stack.poolUrl);
      const controller = new AbortController();
      const params = { model, input: 'Once', max_output_tokens: 500, temperature: 1, seed: 7 + attempt, stream: true, speculation: 'off', store: false };
      const stream = await oneSlot.responses.create(params as OpenAI.Responses.ResponseCreateParamsStreaming, { signal: controller.signal, headers: { 'x-sssd-smooth': '1' } });
      // The SDK ends the iteration quietly on its own abort.
      for await (const event of stream) if (event.type === 'response.output_text.delta') controller.abort();
      const after = await finishedAfter(stack.poolUrl, before, 1);
      expect(after.total).toBe(before.total + 1);
      cancelled = after.cancelled === before.cancelled + 1;
    }
    expect(cancelled).toBe(true);
    // The slot comes back: at once where the edge's code saw the client leave (a failed write), else with the lease (3 s
    // here) where the runtime cancelled the request outright (its code never runs again; the pool saw its connection go).
    let next: OpenAI.Responses.Response | null = null;
    for (let i = 0; i < 25 && next === null; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 200));
      next = await oneSlot.responses.create({ model, input: PROMPT, max_output_tokens: 4, store: false }).catch((err: unknown) => {
        if (err instanceof OpenAI.RateLimitError) return null;
        throw err;
      });
    }
    expect(next?.output_text).toEqual(expect.any(String));
  });

  it("charges a stored response what its record holds to the key's storage budget: a 429 once spent, before the generation, while store: false goes through", async () => {
    const storing = new OpenAI({ apiKey: STORING_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    // ~48 KB of input, each item within the context bound; truncation 'auto' answers from the last, which fits.
    const input = [...Array.from({ length: 4 }, (_, i) => ({ role: 'user' as const, content: 'abcd'[i].repeat(12_000) })), { role: 'user' as const, content: PROMPT }];
    const textBytes = input.reduce((sum, item) => sum + item.content.length, 0);
    const params = { model, input, max_output_tokens: 1, truncation: 'auto' as const };
    const made: OpenAI.Responses.Response[] = [];
    let refused: unknown = null;
    // Not charged, ~40 would go in with no end; charged the input alone, ~21; charged the record (its input twice: as
    // items and as the conversation a chain continues), ~10.
    while (refused === null && made.length < 40) refused = await storing.responses.create(params).then((response) => (made.push(response), null), (err: unknown) => err);
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    const err = refused as InstanceType<typeof OpenAI.RateLimitError>;
    expect(err.code).toBe('storage_limit_exceeded');
    expect(err.message).toContain('1 MiB a day');
    // A record as listed is more than as stored (each item's status; the response's usage): an upper bound on it.
    const last = made.at(-1)!;
    const listed = (await storing.responses.inputItems.list(last.id, { limit: 100 })).data;
    const recordAtMost = JSON.stringify(await storing.responses.retrieve(last.id)).length + 2 * JSON.stringify(listed).length + 1024;
    // A request is let in while the budget covers its input, and its record charged whole as written: the last one let
    // in took the budget past zero, and is kept whole all the same.
    expect((made.length - 1) * 2 * textBytes + textBytes).toBeLessThanOrEqual(MIB);
    expect(made.length * recordAtMost + recordAtMost / 2).toBeGreaterThan(MIB);
    expect(listed).toHaveLength(input.length);
    // Back once the day's refill covers the shortfall: at most a record's worth.
    const retryAfter = Number(err.headers?.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(Math.ceil((recordAtMost / MIB) * 86_400));
    // A background response stores too: refused before it runs.
    await expect(storing.responses.create({ ...params, background: true })).rejects.toMatchObject({ status: 429, code: 'storage_limit_exceeded' });
    // store: false stores nothing, and is not limited so.
    const unstored = await storing.responses.create({ ...params, store: false });
    expect(unstored.status).toMatch(/completed|incomplete/);
    await expect(storing.responses.retrieve(unstored.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("gives back what a generation reserved and did not store: streams left by their client (a store: false turn in a conversation, a stored chat completion) leave the key's storage budget as it was (review h227, finding 1)", async () => {
    const leaving = new OpenAI({ apiKey: LEAVING_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    // What the key stores: this conversation, empty (1 KiB, the floor), and nothing more.
    const conversation = await leaving.conversations.create();
    // ~200 KB of input a turn, reserved as the turn it would append (store: false or not): three are 600 KB of the day's
    // 1 MiB. Each stream is left at its first event, its end far off (EOS ignored): cancelled, its turn is not appended.
    const input = [...Array.from({ length: 16 }, (_, i) => ({ role: 'user' as const, content: 'abcdefghijklmnop'[i].repeat(12_000) })), { role: 'user' as const, content: PROMPT }];
    for (let i = 0; i < 3; i++) {
      const turn = { model, conversation: conversation.id, input, max_output_tokens: 256, truncation: 'auto', store: false, stream: true, ignore_eos: true };
      const stream = await leaving.responses.create(turn as OpenAI.Responses.ResponseCreateParamsStreaming);
      for await (const event of stream) {
        expect(event.type).toBe('response.created');
        break;
      }
    }
    // Stored chat completions, their messages and ~9 KB of metadata reserved each (OpenAI's most), left at their first chunk.
    const metadata = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [String(i).padStart(64, 'k'), String(i).padStart(512, 'v')]));
    for (let i = 0; i < 3; i++) {
      const chat = { model, messages: [{ role: 'user' as const, content: PROMPT }], max_completion_tokens: 448, store: true, metadata, stream: true, ignore_eos: true };
      const stream = await leaving.chat.completions.create(chat as OpenAI.ChatCompletionCreateParamsStreaming);
      for await (const chunk of stream) {
        expect(chunk.object).toBe('chat.completion.chunk');
        break;
      }
    }
    // Left before their end, they stored nothing.
    expect((await leaving.conversations.items.list(conversation.id)).data).toEqual([]);
    // A request reserving a whole day (store: true in the conversation: ~540 KB of input, as its record's items and as
    // its turn) is refused for what the day lacks: the conversation's 1 KiB, back within 85 s, once each stream's work
    // ended (a moment after its client left) or, where the runtime cancelled a request outright (its code never runs
    // again), once its lease lapsed (3 s here); what the streams reserved kept, ~630 KB, it would be ~52,000 s.
    const wholeDay = { model, conversation: conversation.id, input: Array.from({ length: 45 }, (_, i) => ({ role: 'user' as const, content: String(i % 10).repeat(12_000) })), max_output_tokens: 1, truncation: 'auto' as const, store: true };
    const floorBackS = Math.ceil((1024 * 86_400) / MIB);
    let retryAfter = Infinity;
    for (let tries = 0; tries < 25 && retryAfter > floorBackS; tries++) {
      if (tries > 0) await new Promise((resolve) => setTimeout(resolve, 200));
      const refused = await leaving.responses.create(wholeDay).then(
        () => null,
        (err: unknown) => err,
      );
      expect(refused).toMatchObject({ status: 429, code: 'storage_limit_exceeded' });
      retryAfter = Number((refused as InstanceType<typeof OpenAI.RateLimitError>).headers?.get('retry-after'));
    }
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(floorBackS);
    expect((await leaving.chat.completions.list()).data).toEqual([]);
  });
});

// Last in the file: it stops the file's stack. Stopped at once after its pool's drain, the edge lost the background
// responses whose generation ended within KV's second before it: an edge started again on the same KV read them
// `queued`, then `failed` "the edge that ran it went away" (review h223).
describe('stopping the stack', () => {
  it('stops the edge once its background responses, ended just before, have stored their ends: read again, none is lost', async () => {
    const params = { model, input: PROMPT, max_output_tokens: 24, temperature: 0, background: true } as const;
    // Two followed to their last text (their end is told only once stored), two answered queued: generated meanwhile.
    const streamed = async (): Promise<string> => {
      let id = '';
      for await (const event of await client.responses.create({ ...params, stream: true })) {
        if (event.type === 'response.created') id = event.response.id;
        if (event.type === 'response.output_text.done') break;
      }
      return id;
    };
    const ids = await Promise.all([streamed(), streamed(), client.responses.create(params).then((r) => r.id), client.responses.create(params).then((r) => r.id)]);
    // Their generations (24 tokens) ended within KV's second of their queued records: their ends still wait for it.
    const stopAt = Date.now();
    await stack.stop();
    const stoppedIn = Date.now() - stopAt;
    const edge = await startEdge({ poolUrls: [stack.poolUrl], poolToken: stack.poolToken, devKey: stack.devKey, persistTo: stack.persistTo });
    try {
      const again = new OpenAI({ apiKey: stack.devKey, baseURL: `${edge.url}/v1`, maxRetries: 0 });
      for (const id of ids) {
        const stored = await again.responses.retrieve(id);
        expect(stored.status, id).toMatch(/^(completed|incomplete)$/);
        expect(stored.output_text.length, id).toBeGreaterThan(0);
      }
    } finally {
      await edge.stop();
    }
    // Waited for its runs' ends (the bound: END_STORED_WITHIN_MS and a second), not their deadline; the pool's stop besides.
    expect(stoppedIn).toBeLessThan(END_STORED_WITHIN_MS + 1_000 + 10_000);
  }, 120_000);
});
