/**
 * The edge soak's checks of a Responses API reply
 * (gpu-pool/bench/soak-responses-checks.ts): each passes the reply the
 * edge promises and names one that breaks it.
 */
import { describe, expect, it } from 'vitest';
import { responseChoice, responseProblem, responseSaid, responseStreamProblem, type ReadResponse } from '../../../gpu-pool/bench/soak-responses-checks';

const HEX = '0123456789abcdef0123456789abcdef';
const asked = { model: 'm', store: true, previousResponseId: null, maxOutputTokens: 20 };
const message = (text: string, status = 'completed') => ({ type: 'message', id: `msg_${HEX}`, status, role: 'assistant', content: [{ type: 'output_text', text, annotations: [], logprobs: [] }] });
const call = (name: string, args: string) => ({ type: 'function_call', id: `fc_${HEX}`, call_id: 'call_0123456789ab', name, arguments: args, status: 'completed' });
const response = (fields: object = {}): ReadResponse =>
  ({
    id: `resp_${HEX}`,
    object: 'response',
    status: 'completed',
    incomplete_details: null,
    output: [message('Lily.')],
    usage: { input_tokens: 7, input_tokens_details: { cached_tokens: 0 }, output_tokens: 3, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 10 },
    model: 'm',
    store: true,
    previous_response_id: null,
    max_output_tokens: 20,
    ...fields,
  }) as ReadResponse;

describe('a whole Response', () => {
  it('passes a completed message, a reply cut by max_output_tokens, and function calls', () => {
    expect(responseProblem(response(), asked)).toBeNull();
    expect(responseProblem(response({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' }, output: [message('Lily', 'incomplete')] }), asked)).toBeNull();
    expect(responseProblem(response({ output: [call('ping', '{}'), call('get_weather', '{"city": "Rome", "days": 1}')] }), asked)).toBeNull();
  });
  it('names what is not a Response, a status without its reason, items malformed or mixed, usage that does not add up, and fields not echoed', () => {
    expect(responseProblem({ choices: [] }, asked)).toMatch(/no Response object/);
    expect(responseProblem(response({ id: 'chatcmpl-1' }), asked)).toMatch(/no resp_ id/);
    expect(responseProblem(response({ status: 'failed' }), asked)).toMatch(/status "failed"/);
    expect(responseProblem(response({ status: 'incomplete', output: [message('L', 'incomplete')] }), asked)).toMatch(/status incomplete with incomplete_details null/);
    expect(responseProblem(response({ output: [message('L', 'incomplete')] }), asked)).toMatch(/output.0.status "incomplete" in a response completed/);
    expect(responseProblem(response({ output: [] }), asked)).toMatch(/no output items/);
    expect(responseProblem(response({ output: [{ ...message('x'), content: [] }] }), asked)).toMatch(/holds 0 parts/);
    expect(responseProblem(response({ output: [{ ...call('ping', '{}'), call_id: 'x' }] }), asked)).toMatch(/no call_ id/);
    expect(responseProblem(response({ output: [message('x'), call('ping', '{}')] }), asked)).toMatch(/mixing a message and calls/);
    expect(responseProblem(response({ output: [{ type: 'reasoning', status: 'completed' }] }), asked)).toMatch(/neither a message nor a function_call/);
    expect(responseProblem(response({ usage: { input_tokens: 7, output_tokens: 3, total_tokens: 11 } }), asked)).toMatch(/total_tokens 11, not input 7 \+ output 3/);
    expect(responseProblem(response({ usage: null }), asked)).toMatch(/usage null/);
    expect(responseProblem(response({ usage: { input_tokens: 7, output_tokens: 30, total_tokens: 37 } }), asked)).toMatch(/output_tokens 30 past max_output_tokens 20/);
    expect(responseProblem(response(), { ...asked, store: false })).toMatch(/store true, the request's false/);
    expect(responseProblem(response(), { ...asked, previousResponseId: `resp_${HEX}` })).toMatch(/previous_response_id null/);
    expect(responseProblem(response(), { ...asked, model: 'other' })).toMatch(/model "m"/);
  });
  it('reads as a chat choice: its text or its calls, length where incomplete', () => {
    expect(responseChoice(response())).toEqual({ text: 'Lily.', finishReason: 'stop' });
    expect(responseChoice(response({ status: 'incomplete', output: [message('Li', 'incomplete')] }))).toEqual({ text: 'Li', finishReason: 'length' });
    expect(responseChoice(response({ output: [call('ping', '{}')] }), 'tool_calls')).toEqual({ text: '', finishReason: 'tool_calls', toolCalls: [{ name: 'ping', arguments: '{}' }] });
    // Ids are drawn anew: the same calls say the same.
    expect(responseSaid(response({ output: [call('ping', '{}')] }))).toBe(responseSaid(response({ output: [{ ...call('ping', '{}'), id: 'fc_1', call_id: 'call_2' }] })));
    expect(responseSaid(response())).not.toBe(responseSaid(response({ output: [message('Tom.')] })));
  });
});

describe('a Responses stream', () => {
  const event = (type: string, seq: number, fields: object): string => `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq, ...fields })}\n\n`;
  const final = response({ output: [message('Lily.')] });
  const started = response({ status: 'in_progress', output: [], usage: null });
  const stream = (parts: string[] = ['Li', 'ly.'], done = 'Lily.', end = 'response.completed', last = final): string => {
    const events: Array<[string, object]> = [
      ['response.created', { response: started }],
      ['response.in_progress', { response: started }],
      ['response.output_item.added', { output_index: 0, item: message('', 'in_progress') }],
      ...parts.map((delta): [string, object] => ['response.output_text.delta', { item_id: `msg_${HEX}`, output_index: 0, content_index: 0, delta }]),
      ['response.output_text.done', { item_id: `msg_${HEX}`, text: done }],
      ['response.output_item.done', { output_index: 0, item: final.output[0] }],
      [end, { response: last }],
    ];
    return events.map(([type, fields], i) => event(type, i, fields)).join(': quiet\n\n');
  };
  it("passes OpenAI's events in order, heartbeats between them, and gives the final response", () => {
    const read = responseStreamProblem(stream());
    expect(read.problem).toBeNull();
    expect(read.response?.output).toEqual(final.output);
    const cut = response({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' }, output: [message('Lily.', 'incomplete')] });
    expect(responseStreamProblem(stream(undefined, undefined, 'response.incomplete', cut)).problem).toBeNull();
  });
  it('names deltas that do not make the text, a gap in sequence numbers, a type unlike its event line, an error, [DONE], and a stream that never ends', () => {
    expect(responseStreamProblem(stream(['Li', 'ly'], 'Lily')).problem).toMatch(/the final message msg_\w+ says "Lily.", its deltas "Lily"/);
    expect(responseStreamProblem(stream(['Li'])).problem).toMatch(/output_text.done says "Lily.", its deltas "Li"/);
    expect(responseStreamProblem(stream().replace('"sequence_number":3', '"sequence_number":4')).problem).toMatch(/event 3 \(response.output_text.delta\) has sequence_number 4/);
    expect(responseStreamProblem(stream().replace('event: response.in_progress', 'event: response.progress')).problem).toMatch(/event: response.progress carries type "response.in_progress"/);
    const failed = stream().replace(/event: response.completed[^]*$/, `${event('error', 7, { code: 'x', message: 'boom' })}`);
    expect(responseStreamProblem(failed).problem).toMatch(/an error event/);
    expect(responseStreamProblem(`${stream()}data: [DONE]\n\n`).problem).toMatch(/data: \[DONE\]/);
    expect(responseStreamProblem(stream().replace(/event: response.completed[^]*$/, '')).problem).toMatch(/ends with response.output_item.done/);
    expect(responseStreamProblem(stream(undefined, undefined, 'response.incomplete')).problem).toMatch(/response.incomplete carries a response "completed"/);
  });
});
