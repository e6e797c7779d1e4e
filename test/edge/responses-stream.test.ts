import { describe, expect, it } from 'vitest';
import { ApiError } from '../../edge/api-error';
import type { CompletionSummary, CompletionUsage } from '../../edge/completion-run';
import { LogprobsFormatter, type ResponseMeta } from '../../edge/openai-format';
import { finishedResponse, outputItems, startedResponse, type ResponseObject } from '../../edge/responses-format';
import { parseResponsesBody } from '../../edge/responses-request';
import { ResponsesStreamFormat, streamedOutput } from '../../edge/responses-stream';
import type { SourcedText, TokenLogprob } from '../../edge/token-text';

const usage: CompletionUsage = {
  prompt_tokens: 5,
  completion_tokens: 3,
  total_tokens: 8,
  prompt_tokens_details: { cached_tokens: 2 },
  speculation: { method: 'sssd', drafts: 1, draft_tokens: 2, accepted_tokens: 1, steps: 2, mean_acceptance_length: 1.5, edge_accepted_tokens: 0, edge_trie_bytes: 0 },
};
const meta: ResponseMeta = { id: 'chatcmpl-x', created: 1, model: 'm', fingerprint: 'fp_0123456789', kind: 'chat' };
const RESPONSE_ID = 'resp_0123456789abcdef01234567';
const started = (): ResponseObject => {
  const { body, tools } = parseResponsesBody({ model: 'm', input: 'x', max_output_tokens: 3 });
  return startedResponse(RESPONSE_ID, 'm', body, tools, 100);
};
const piece = (text: string): SourcedText[] => [{ text, source: 'model' } as SourcedText];
const summary = (finishReason: 'stop' | 'length'): CompletionSummary => ({ finishReason, stopReason: null, usage, promptLogprobs: null });

type Event = { type: string; sequence_number: number } & Record<string, unknown>;

/** Runs a format over the pieces, as sseStream would; its frames parsed. */
async function streamed(format: ResponsesStreamFormat, pieces: string[], finish: CompletionSummary): Promise<Event[]> {
  const frames: string[] = [];
  const send = (frame: string): void => void frames.push(frame);
  format.begin(send);
  for (const p of pieces) format.piece(0, piece(p), send);
  format.finished(0, finish, send);
  await format.ended([finish.usage], send);
  format.close();
  return frames.map((frame) => {
    const [event, data] = frame.split('\n');
    expect(frame.endsWith('\n\n')).toBe(true);
    const parsed = JSON.parse(data.slice('data: '.length)) as Event;
    expect(event).toBe(`event: ${parsed.type}`);
    return parsed;
  });
}

/** The events of a streamed message whose text came in two pieces, in OpenAI's order. */
const TWO_DELTA_MESSAGE = [
  'response.created',
  'response.in_progress',
  'response.output_item.added',
  'response.content_part.added',
  'response.output_text.delta',
  'response.output_text.delta',
  'response.output_text.done',
  'response.content_part.done',
  'response.output_item.done',
  'response.completed',
];

/** Ids differ between two replies; shapes must not. */
const withoutIds = (r: ResponseObject): unknown => JSON.parse(JSON.stringify(r).replace(/"(msg|fc|call)_[0-9a-f]+"/g, '"ID"'));

describe('a started response', () => {
  it("echoes the request's user, safety_identifier and prompt_cache_key (review h127: prompt_cache_key came back null)", () => {
    const { body, tools } = parseResponsesBody({ model: 'm', input: 'x', user: 'u', safety_identifier: 's', prompt_cache_key: 'chat-42' });
    expect(startedResponse(RESPONSE_ID, 'm', body, tools, 100)).toMatchObject({ user: 'u', safety_identifier: 's', prompt_cache_key: 'chat-42' });
    expect(started()).toMatchObject({ prompt_cache_key: null });
  });
});

describe('Responses API events', () => {
  it("streams a message in OpenAI's order, numbered, one item id throughout, ending with the response a whole reply is (stored first)", async () => {
    const saved: ResponseObject[] = [];
    const events = await streamed(new ResponsesStreamFormat(started(), meta, async (r) => void saved.push(r)), ['Once', ' upon', ''], summary('stop'));
    expect(events.map((e) => e.type)).toEqual(TWO_DELTA_MESSAGE);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    expect(events[0].response).toMatchObject({ id: RESPONSE_ID, status: 'in_progress', output: [] });
    const itemId = (events[2].item as { id: string }).id;
    // The item's id carries its response's hex: an item_reference to it finds the response it is in.
    expect(itemId).toMatch(/^msg_0123456789abcdef01234567[0-9a-f]{24}$/);
    for (const e of events.slice(3, 9)) expect(e.item_id ?? (e.item as { id: string }).id).toBe(itemId);
    expect(events[6].text).toBe('Once upon');
    const final = events[9].response as ResponseObject;
    expect(final.output[0].id).toBe(itemId);
    expect(saved).toEqual([final]);
    const whole = finishedResponse(started(), outputItems(RESPONSE_ID, null, 'Once upon', 'stop', []), 'stop', usage);
    expect(withoutIds(final)).toEqual(withoutIds(whole));
    expect(final.usage).toEqual({ input_tokens: 5, input_tokens_details: { cached_tokens: 2 }, output_tokens: 3, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 8, speculation: usage.speculation });
  });

  it('ends a reply cut by the token limit incomplete', async () => {
    const events = await streamed(new ResponsesStreamFormat(started(), meta, async () => undefined), ['Once'], summary('length'));
    const last = events[events.length - 1];
    expect(last.type).toBe('response.incomplete');
    expect(last.response).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' }, output: [{ status: 'incomplete' }] });
  });

  it("streams a named function's arguments as they come, as one function_call item", async () => {
    const events = await streamed(new ResponsesStreamFormat(started(), { ...meta, toolCalls: { kind: 'named', name: 'f' } }, async () => undefined), ['{"a":', ' 1}'], summary('stop'));
    expect(events.map((e) => e.type)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(events[5]).toMatchObject({ name: 'f', arguments: '{"a": 1}' });
    const item = (events[7].response as ResponseObject).output[0];
    expect(item).toMatchObject({ type: 'function_call', name: 'f', arguments: '{"a": 1}', status: 'completed', id: (events[2].item as { id: string }).id });
  });

  it('sends "required"\'s calls once their array is whole, one item each', async () => {
    const events = await streamed(new ResponsesStreamFormat(started(), { ...meta, toolCalls: { kind: 'required' } }, async () => undefined), ['[{"name": "f", "parameters": {"a": 1}},', ' {"name": "g", "parameters": {}}]'], summary('stop'));
    const final = events[events.length - 1].response as ResponseObject;
    expect(final.output.map((o) => o.type === 'function_call' && [o.name, o.arguments])).toEqual([
      ['f', '{"a": 1}'],
      ['g', '{}'],
    ]);
    expect(events.filter((e) => e.type === 'response.output_item.added').map((e) => e.output_index)).toEqual([0, 1]);
  });

  it('completes "required"\'s whole calls where the token limit fell on the end token after them; a cut array stays incomplete text', async () => {
    const format = (): ResponsesStreamFormat => new ResponsesStreamFormat(started(), { ...meta, toolCalls: { kind: 'required' } }, async () => undefined);
    const whole = await streamed(format(), ['[{"name": "f", "parameters": {"a": 1}}]'], summary('length'));
    expect(whole[whole.length - 1]).toMatchObject({ type: 'response.completed', response: { status: 'completed', incomplete_details: null, output: [{ type: 'function_call', name: 'f', status: 'completed' }] } });
    const cut = await streamed(format(), ['[{"name": "f", "parameters": {"a"'], summary('length'));
    expect(cut[cut.length - 1]).toMatchObject({ type: 'response.incomplete', response: { status: 'incomplete', output: [{ type: 'message', status: 'incomplete' }] } });
  });

  it('streams an "auto" reply as a message once it starts with text (the whitespace before it in its first delta), or its calls once their array is whole', async () => {
    const format = (): ResponsesStreamFormat => new ResponsesStreamFormat(started(), { ...meta, toolCalls: { kind: 'auto' } }, async () => undefined);
    const text = await streamed(format(), [' ', '\n', 'Once', ' upon'], summary('stop'));
    expect(text.map((e) => e.type)).toEqual(TWO_DELTA_MESSAGE);
    expect(text.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta)).toEqual([' \nOnce', ' upon']);
    expect(text[text.length - 1]).toMatchObject({ response: { status: 'completed', output: [{ type: 'message', content: [{ text: ' \nOnce upon' }] }] } });
    const calls = await streamed(format(), [' [{"name": "f",', ' "parameters": {}}]'], summary('stop'));
    expect(calls.filter((e) => e.type === 'response.output_text.delta')).toEqual([]);
    expect(calls[calls.length - 1]).toMatchObject({ type: 'response.completed', response: { output: [{ type: 'function_call', name: 'f', arguments: '{}', status: 'completed' }] } });
    // Only whitespace, or nothing: a message of it.
    const blank = await streamed(format(), [' '], summary('stop'));
    expect(blank[blank.length - 1]).toMatchObject({ response: { output: [{ type: 'message', content: [{ text: ' ' }] }] } });
  });

  it("carries each token's log-probabilities once, in its delta, and all of them, in order, in the done events and the response", async () => {
    // A tokenizer whose id i prints the letter of i, none special: enough for the formatter's names and bytes.
    const letters = { tokenBytes: (id: number) => new TextEncoder().encode(String.fromCharCode(96 + id)), specialName: () => null };
    const withLogprobs: ResponseMeta = { ...meta, logprobs: new LogprobsFormatter('chat', letters, true) };
    const token = (id: number, logprob: number): TokenLogprob => ({ id, logprob, top: [[id, logprob], [id + 1, logprob - 1]], text: String.fromCharCode(96 + id) });
    const pieces: SourcedText[][] = [
      [{ text: 'ab', source: 'model', tokens: [token(1, -0.5), token(2, -0.25)] } as SourcedText],
      [{ text: 'c', source: 'model', tokens: [token(3, -1)] } as SourcedText],
    ];
    const frames: string[] = [];
    const send = (frame: string): void => void frames.push(frame);
    const format = new ResponsesStreamFormat(started(), withLogprobs, async () => undefined);
    format.begin(send);
    for (const p of pieces) format.piece(0, p, send);
    format.finished(0, summary('stop'), send);
    await format.ended([usage], send);
    const events = frames.map((f) => JSON.parse(f.split('\n')[1].slice(6)) as Event);
    const deltas = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.logprobs as Array<{ token: string; logprob: number; top_logprobs: unknown[] }>);
    expect(deltas.map((d) => d.map((l) => [l.token, l.logprob]))).toEqual([[['a', -0.5], ['b', -0.25]], [['c', -1]]]);
    expect(deltas[0][0].top_logprobs).toHaveLength(2);
    const done = events.find((e) => e.type === 'response.output_text.done')!;
    expect(done.logprobs).toEqual(deltas.flat());
    const final = events.at(-1)!.response as ResponseObject;
    expect((final.output[0] as { content: Array<{ logprobs: unknown }> }).content[0].logprobs).toEqual(deltas.flat());
  });

  it('ends a failed reply with an error event, then response.failed, the failed response stored first', async () => {
    const frames: string[] = [];
    const stored: Array<[ResponseObject, number]> = [];
    const format = new ResponsesStreamFormat(started(), meta, async (response) => void stored.push([response, frames.length]));
    format.begin((f) => frames.push(f));
    const framesBefore = frames.length;
    await format.failed(new ApiError(503, 'every pool is gone', 'service_unavailable', 'pool_unavailable'), (f) => frames.push(f));
    const events = frames.map((f) => JSON.parse(f.split('\n')[1].slice(6)) as Event);
    expect(stored).toEqual([[events.at(-1)!.response, framesBefore]]);
    expect(events.slice(-2)).toMatchObject([
      { type: 'error', code: 'pool_unavailable', message: 'every pool is gone', param: null },
      { type: 'response.failed', response: { status: 'failed', error: { code: 'pool_unavailable', message: 'every pool is gone' } } },
    ]);
  });

  it('keeps what was streamed before a failure in response.failed: the item opened, incomplete, with its text so far', async () => {
    const frames: string[] = [];
    const send = (f: string): void => void frames.push(f);
    const format = new ResponsesStreamFormat(started(), meta, async () => undefined);
    format.begin(send);
    format.piece(0, piece('Once upon'), send);
    format.piece(0, piece(' a time'), send);
    await format.failed(new ApiError(503, 'cut off after 2 tokens', 'service_unavailable', 'pool_unavailable'), send);
    const events = frames.map((f) => JSON.parse(f.split('\n')[1].slice(6)) as Event);
    const itemId = (events.find((e) => e.type === 'response.output_item.added')!.item as { id: string }).id;
    expect(events.at(-1)).toMatchObject({
      type: 'response.failed',
      response: { status: 'failed', output: [{ type: 'message', id: itemId, status: 'incomplete', content: [{ type: 'output_text', text: 'Once upon a time' }] }] },
    });
  });
});

describe("a stream's output rebuilt from its frames (a background run lost, its kept events: review h177)", () => {
  /** The frames a background format sends (its end is the run's to tell) for `pieces`, and, where `finish` is given, its end. */
  function frames(format: ResponsesStreamFormat, pieces: SourcedText[][], finish?: CompletionSummary): string[] {
    const sent: string[] = [];
    const send = (frame: string): void => void sent.push(frame);
    format.begin(send);
    for (const p of pieces) format.piece(0, p, send);
    if (finish) format.finished(0, finish, send);
    return sent;
  }

  it('is the item opened with the text its deltas sent, where the stream stopped mid-way, and the stream\'s own output where it got to its done', async () => {
    const cut = new ResponsesStreamFormat(started(), meta, null);
    const sent = frames(cut, [piece('Once upon'), piece(' a time')]);
    // What the stream would have stored, failing there, is what its frames rebuild.
    await cut.failed(new ApiError(503, 'gone', 'service_unavailable', 'pool_unavailable'), () => undefined);
    expect(streamedOutput(sent)).toEqual(cut.result?.output.map((item) => ({ ...item, status: 'in_progress' })));
    expect(streamedOutput(sent)).toMatchObject([{ type: 'message', content: [{ type: 'output_text', text: 'Once upon a time', logprobs: [] }] }]);
    // A comment among them, or a frame cut short, is passed over; none at all is no output.
    expect(streamedOutput([...sent.slice(0, 4), ': the response is running\n\n', 'event: response.output_text.delta\ndata: {"type":', ...sent.slice(4)])).toEqual(streamedOutput(sent));
    expect(streamedOutput([])).toEqual([]);

    const whole = new ResponsesStreamFormat(started(), meta, null);
    const all = frames(whole, [piece('Once'), piece(' upon')], summary('length'));
    await whole.ended([usage], () => undefined);
    expect(streamedOutput(all)).toEqual(whole.result?.output);
  });

  it("keeps each token's log-probabilities once, and a named call's arguments as sent", () => {
    const letters = { tokenBytes: (id: number) => new TextEncoder().encode(String.fromCharCode(96 + id)), specialName: () => null };
    const token = (id: number): TokenLogprob => ({ id, logprob: -id, top: [[id, -id]], text: String.fromCharCode(96 + id) });
    const withLogprobs = new ResponsesStreamFormat(started(), { ...meta, logprobs: new LogprobsFormatter('chat', letters, true) }, null);
    const sent = frames(withLogprobs, [[{ text: 'ab', source: 'model', tokens: [token(1), token(2)] } as SourcedText], [{ text: 'c', source: 'model', tokens: [token(3)] } as SourcedText]]);
    const [message] = streamedOutput(sent);
    expect(message.type === 'message' && message.content[0].logprobs.map((l) => [l.token, l.logprob])).toEqual([['a', -1], ['b', -2], ['c', -3]]);

    const call = new ResponsesStreamFormat(started(), { ...meta, toolCalls: { kind: 'named', name: 'f' } }, null);
    expect(streamedOutput(frames(call, [piece('{"a":'), piece(' 1')]))).toMatchObject([{ type: 'function_call', name: 'f', arguments: '{"a": 1', status: 'in_progress' }]);
  });
});
