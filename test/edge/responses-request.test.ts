import { describe, expect, it } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { inResponsesTerms, parseResponsesBody, translateResponsesRequest } from '../../edge/responses-request';
import { startedResponse } from '../../edge/responses-format';
import { refusalOf, refusalOrNull } from '../support/refusal';

const translate = (body: object, previous: Parameters<typeof translateResponsesRequest>[1] = []) => translateResponsesRequest(parseResponsesBody({ model: 'default', ...body }), previous);

function refusal(body: object): { param: string | null; code: string | null; message: string } {
  const err = refusalOf(() => translate(body));
  if (err.status !== 400) throw err;
  return { param: err.param, code: err.code, message: err.message };
}

describe('Responses request → chat request', () => {
  it('takes input as text or as items: messages (text or parts), function calls and their outputs', () => {
    expect(translate({ input: 'Hi.' }).chat.messages).toEqual([{ role: 'user', content: 'Hi.' }]);
    const { chat } = translate({
      input: [
        { role: 'developer', content: 'Be brief.' },
        { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'A' }, { type: 'input_text', text: 'B' }] },
        { role: 'assistant', content: [{ type: 'output_text', text: 'C', annotations: [] }] },
        { type: 'function_call', call_id: 'call_1', name: 'f', arguments: '{}' },
        { type: 'function_call_output', call_id: 'call_1', output: 'sunny' },
      ],
    });
    expect(chat.messages).toEqual([
      { role: 'developer', content: 'Be brief.' },
      { role: 'user', content: 'AB' },
      { role: 'assistant', content: 'C' },
      // As chat renders an assistant message of tool calls: no text.
      { role: 'assistant', content: null },
      { role: 'tool', content: 'sunny' },
    ]);
  });

  it('puts instructions first as a system message, then the previous conversation, and keeps instructions out of what is carried on', () => {
    const previous = [{ role: 'user' as const, content: 'Once' }, { role: 'assistant' as const, content: ' upon' }];
    const t = translate({ input: 'a time', instructions: 'Tell a story.', previous_response_id: 'resp_1' }, previous);
    expect(t.chat.messages).toEqual([{ role: 'system', content: 'Tell a story.' }, ...previous, { role: 'user', content: 'a time' }]);
    expect(t.conversation).toEqual([...previous, { role: 'user', content: 'a time' }]);
  });

  it('maps sampling, limits, user, logprobs, text.format and flat tools onto chat fields', () => {
    const schema = { type: 'object', properties: { a: { type: 'integer' } }, required: ['a'] };
    const { chat } = translate({
      input: 'x',
      max_output_tokens: 12,
      temperature: 0,
      top_p: 0.5,
      top_k: 3,
      seed: 9,
      stream: true,
      safety_identifier: 'u1',
      include: ['message.output_text.logprobs'],
      top_logprobs: 2,
      text: { format: { type: 'json_schema', name: 'thing', schema, strict: true } },
      tools: [{ type: 'function', name: 'f', parameters: schema }],
      tool_choice: { type: 'function', name: 'f' },
      parallel_tool_calls: false,
    });
    expect(chat).toMatchObject({
      max_completion_tokens: 12,
      temperature: 0,
      top_p: 0.5,
      top_k: 3,
      seed: 9,
      stream: true,
      user: 'u1',
      logprobs: true,
      top_logprobs: 2,
      response_format: { type: 'json_schema', json_schema: { name: 'thing', schema, strict: true } },
      tools: [{ type: 'function', function: { name: 'f', parameters: schema } }],
      tool_choice: { type: 'function', function: { name: 'f' } },
      parallel_tool_calls: false,
    });
    // OpenAI's allowed_tools, flat as the Responses API writes it, in chat's shape; an entry that is no function passed on as sent (chat's check names it).
    const allowed = translate({ input: 'x', tools: [{ type: 'function', name: 'f' }], tool_choice: { type: 'allowed_tools', mode: 'required', tools: [{ type: 'function', name: 'f' }, { type: 'mcp', server_label: 's' }] } }).chat.tool_choice;
    expect(allowed).toEqual({ type: 'allowed_tools', allowed_tools: { mode: 'required', tools: [{ type: 'function', function: { name: 'f' } }, { type: 'mcp' }] } });
    // Chat's nested entry is no entry of this API's: passed on with no name, for chat's check to refuse (review h106).
    const nested = translate({ input: 'x', tools: [{ type: 'function', name: 'f' }], tool_choice: { type: 'allowed_tools', mode: 'auto', tools: [{ type: 'function', function: { name: 'f' } }] } }).chat.tool_choice;
    expect(nested).toEqual({ type: 'allowed_tools', allowed_tools: { mode: 'auto', tools: [{ type: 'function' }] } });
    expect(refusal({ input: 'x', tools: [{ type: 'function', name: 'f' }], tool_choice: { type: 'allowed_tools', mode: 'never', tools: [] } })).toMatchObject({ param: 'tool_choice', message: expect.stringContaining('"type": "allowed_tools"') });
    expect(translate({ input: 'x', text: { format: { type: 'json_object' } } }).chat.response_format).toEqual({ type: 'json_object' });
    // vLLM's end controls, as chat takes them (review h154: ignore_eos was dropped unseen).
    expect(translate({ input: 'x', min_tokens: 5, ignore_eos: true, stop_token_ids: [13] }).chat).toMatchObject({ min_tokens: 5, ignore_eos: true, stop_token_ids: [13] });
    // `user` wins over safety_identifier; without include, no logprobs.
    const plain = translate({ input: 'x', user: 'a', safety_identifier: 'b', top_logprobs: 3 }).chat;
    expect(plain.user).toBe('a');
    expect(plain.logprobs).toBeUndefined();
  });

  it('says what input, a message\'s content and a tool output take where they are of no type they take (it said "Invalid input")', () => {
    for (const input of [undefined, null, 5]) expect(refusal({ input }).message).toBe('input: expected a string or an array of input items');
    expect(refusal({ input: [{ role: 'user', content: null }] }).message).toBe('input.0.content: expected a string or an array of text parts');
    expect(refusal({ input: [{ type: 'function_call_output', call_id: 'c', output: {} }] }).message).toBe('input.0.output: expected a string or an array of text parts');
  });

  it('refuses by name what it does not do, unless at its neutral value', () => {
    // Background responses are served, polled from the store (and streamed again from it): without it, not.
    expect(refusal({ input: 'x', background: true, store: false })).toMatchObject({ param: 'background', code: 'invalid_value' });
    expect(refusal({ input: 'x', background: true, store: false, stream: true })).toMatchObject({ param: 'background', code: 'invalid_value' });
    expect(() => translate({ input: 'x', background: true })).not.toThrow();
    expect(() => translate({ input: 'x', background: true, stream: true })).not.toThrow();
    // A conversation is served (edge/conversation-store.ts), but not beside a chain: the two are each the context.
    expect(() => translate({ input: 'x', conversation: 'conv_1' })).not.toThrow();
    expect(() => translate({ input: 'x', conversation: { id: 'conv_1' } })).not.toThrow();
    expect(refusal({ input: 'x', conversation: 'conv_1', previous_response_id: 'resp_1' })).toMatchObject({ param: 'conversation', code: 'invalid_value' });
    expect(refusal({ input: 'x', conversation: { name: 'conv_1' } }).param).toBe('conversation.id');
    expect(refusal({ input: 'x', prompt: { id: 'pmpt_1' } }).param).toBe('prompt');
    expect(refusal({ input: 'x', reasoning: { effort: 'high' } }).param).toBe('reasoning');
    // An array is no reasoning object: ["high"] passed as none asked (review h175).
    expect(refusal({ input: 'x', reasoning: ['high'] })).toMatchObject({ param: 'reasoning', code: 'unsupported_parameter' });
    expect(refusal({ input: 'x', reasoning: [] })).toMatchObject({ param: 'reasoning', code: 'unsupported_parameter' });
    expect(refusal({ input: 'x', truncation: 'middle' }).param).toBe('truncation');
    expect(refusal({ input: 'x', max_tool_calls: 2 }).param).toBe('max_tool_calls');
    expect(refusal({ input: 'x', text: { verbosity: 'low' } }).param).toBe('text.verbosity');
    expect(refusal({ input: 'x', include: ['message.output_text.logprobs', 'file_search_call.results'] }).param).toBe('include.1');
    expect(refusal({ input: 'x', tools: [{ type: 'function', name: 'f' }, { type: 'web_search' }] }).param).toBe('tools.1.type');
    expect(refusal({ input: [{ role: 'user', content: 'a' }, { role: 'user', content: [{ type: 'input_image', image_url: 'x' }] }] })).toMatchObject({ param: 'input.1.content.0.type', code: 'unsupported_parameter' });
    expect(refusal({ input: [{ type: 'reasoning', summary: [] }] })).toMatchObject({ param: 'input.0.type', code: 'unsupported_parameter' });
    // Chat's fields are not the Responses API's: said with what to send instead, not dropped (max_tokens ran to the context's end).
    expect(refusal({ input: 'x', max_tokens: 3 })).toMatchObject({ param: 'max_tokens', code: 'unsupported_parameter', message: expect.stringContaining('send max_output_tokens') });
    expect(refusal({ input: 'x', response_format: { type: 'json_object' } })).toMatchObject({ param: 'response_format', message: expect.stringContaining('send text.format') });
    for (const field of ['stop', 'n', 'frequency_penalty', 'logprobs', 'messages']) expect(refusal({ input: 'x', [field]: 1 }).param).toBe(field);
    // vLLM's chat extras this server takes on chat only, refused by name rather than dropped (reviews h154, h156).
    for (const field of ['include_stop_str_in_output', 'allowed_token_ids', 'bad_words', 'structured_outputs', 'guided_json', 'guided_regex', 'guided_choice', 'guided_grammar', 'prediction', 'truncate_prompt_tokens', 'truncation_side', 'prompt_logprobs', 'echo', 'guided_whitespace_pattern', 'guided_decoding_backend', 'logprob_token_ids', 'return_tokens_as_token_ids', 'return_token_ids']) {
      expect(refusal({ input: 'x', [field]: 1 }), field).toMatchObject({ param: field, code: 'unsupported_parameter' });
    }
    expect(refusal({ input: 'x', truncate_prompt_tokens: -1 }).message).toContain('send truncation: "auto"');
    // vLLM's, SGLang's and llama.cpp's fields chat refuses are refused here alike (review h165: taken and dropped).
    for (const [field, value] of [['priority', 5], ['use_beam_search', true], ['best_of', 4], ['suffix', 'The end.'], ['typical_p', 0.2], ['watermarking', true], ['logits_processors', ['my.Proc']], ['regex', '[0-9]+'], ['repeat_penalty', 1.5], ['mirostat', 2], ['min_new_tokens', 5], ['max_new_tokens', 5], ['no_stop_trim', true], ['stop_regex', '\\.'], ['chat_template', '{{x}}']] as const) {
      expect(refusal({ input: 'x', [field]: value }), field).toMatchObject({ param: field, code: 'unsupported_parameter' });
    }
    expect(refusal({ input: 'x', regex: 'a+' }).message).toContain('guided_regex is that constraint here');
    expect(() => translate({ input: 'x', priority: 0, use_beam_search: false, typical_p: 1, repeat_penalty: 1 })).not.toThrow();
    // Its own fields are not chat's refusals: max_output_tokens and text.format are the Responses API's.
    expect(translate({ input: 'x', max_output_tokens: 5, text: { format: { type: 'json_object' } } }).chat).toMatchObject({ max_completion_tokens: 5, response_format: { type: 'json_object' } });
    // vLLM's cache_salt is taken, as on chat.
    expect(translate({ input: 'x', cache_salt: 'tenant-7' }).chat.cache_salt).toBe('tenant-7');
    expect(refusal({ input: 'x', skip_special_tokens: false }).param).toBe('skip_special_tokens');
    expect(() => translate({ input: 'x', skip_special_tokens: true })).not.toThrow();
    expect(refusal({ input: 'x', stream_options: { include_obfuscation: true } })).toMatchObject({ param: 'stream_options', message: 'stream_options is only allowed with stream: true.' });
    expect(() => translate({ input: 'x', stream: true, stream_options: { include_obfuscation: false }, max_tokens: null })).not.toThrow();
    // A function's output answers a call made before it: in this input, or earlier in the chain.
    expect(refusal({ input: [{ type: 'function_call_output', call_id: 'call_nowhere', output: 'sunny' }] })).toMatchObject({ param: 'input.0.call_id', message: 'No tool call found for function call output with call_id call_nowhere.' });
    expect(refusal({ input: [{ type: 'function_call_output', call_id: 'call_2', output: 'x' }, { type: 'function_call', call_id: 'call_2', name: 'f', arguments: '{}' }] }).param).toBe('input.0.call_id');
    const chained = translateResponsesRequest(parseResponsesBody({ model: 'm', input: [{ type: 'function_call_output', call_id: 'call_1', output: 'sunny' }] }), [], ['call_1']);
    expect(chained.callIds).toEqual(['call_1']);
    // And each call is answered: the previous response's own (all of them), and the input's, as OpenAI refuses a loop
    // that forgot its tool's result.
    const refusedChain = (input: object[], awaited: string[]): unknown => refusalOrNull(() => translateResponsesRequest(parseResponsesBody({ model: 'm', input }), [], awaited, new Map(), new Set(), awaited));
    expect(refusedChain([{ role: 'user', content: 'and?' }], ['call_1'])).toMatchObject({ status: 400, param: 'input', message: 'No tool output found for function call call_1.' });
    expect(refusedChain([{ type: 'function_call_output', call_id: 'call_1', output: 'x' }], ['call_1', 'call_2'])).toMatchObject({ param: 'input', message: 'No tool output found for function call call_2.' });
    expect(refusedChain([{ type: 'function_call_output', call_id: 'call_2', output: 'x' }, { type: 'function_call_output', call_id: 'call_1', output: 'y' }], ['call_1', 'call_2'])).toBeNull();
    expect(refusal({ input: [{ role: 'user', content: 'a' }, { type: 'function_call', call_id: 'call_3', name: 'f', arguments: '{}' }] })).toMatchObject({ param: 'input', message: 'No tool output found for function call call_3.' });
    // Neutral values pass.
    expect(() => translate({ input: 'x', background: false, truncation: 'disabled', reasoning: { effort: null }, text: { verbosity: 'medium' } })).not.toThrow();
    // truncation "auto" is served: the handler drops the oldest turns (edge/conversation-truncation.ts).
    expect(translate({ input: 'x', truncation: 'auto' }).body.truncation).toBe('auto');
  });

  it('names the Responses field in malformed requests', () => {
    expect(refusal({ input: [{ type: 'function_call', call_id: 'c', name: 'bad name!', arguments: '{}' }] }).param).toBe('input.0.name');
    expect(refusal({ input: [{ role: 'user', content: 7 }] }).param).toBe('input.0.content');
    expect(refusal({ input: 'x', tools: [{ type: 'function', name: 'f', parameters: 'no' }] }).param).toBe('tools.0.parameters');
    expect(refusal({ input: 'x', text: { format: { type: 'json_schema', name: 'n' } } }).param).toBe('text.format.schema');
    expect(refusal({ input: 'x', max_output_tokens: 0 }).param).toBe('max_output_tokens');
    expect(refusal({ input: 'x', metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }).param).toBe('metadata');
    expect(refusal({ input: [] })).toMatchObject({ param: 'input', message: 'input must not be empty' });
  });

  it("renames the chat path's errors into the Responses request's fields", () => {
    const renamed = inResponsesTerms(new ApiError(400, 'response_format.json_schema.schema: bad', 'invalid_request_error', 'invalid_value', 'response_format.json_schema.schema')) as ApiError;
    expect([renamed.param, renamed.message]).toEqual(['text.format.schema', 'text.format.schema: bad']);
    expect((inResponsesTerms(new ApiError(400, 'x', 'invalid_request_error', null, 'max_completion_tokens')) as ApiError).param).toBe('max_output_tokens');
    expect((inResponsesTerms(new ApiError(400, 'x', 'invalid_request_error', null, 'tools.2.function.parameters')) as ApiError).param).toBe('tools.2.parameters');
    // allowed_tools' entries: chat's list under `allowed_tools`, the Responses one on the choice itself.
    const entry = inResponsesTerms(new ApiError(400, "tool_choice.allowed_tools.tools.1: 'nope' is not one", 'invalid_request_error', 'invalid_value', 'tool_choice.allowed_tools.tools.1')) as ApiError;
    expect([entry.param, entry.message]).toEqual(['tool_choice.tools.1', "tool_choice.tools.1: 'nope' is not one"]);
    const same = new ApiError(400, 'x', 'invalid_request_error', null, 'temperature');
    expect(inResponsesTerms(same)).toBe(same);
  });
});

describe('text.format.name and the tool_choice echo (review h136)', () => {
  it("refuses a format name outside OpenAI's characters, naming text.format.name", () => {
    expect(() => parseResponsesBody({ model: 'm', input: 'x', text: { format: { type: 'json_schema', name: 'ok_name-1', schema: {} } } })).not.toThrow();
    const param = refusalOrNull(() => parseResponsesBody({ model: 'm', input: 'x', text: { format: { type: 'json_schema', name: 'has space', schema: {} } } }))?.param ?? null;
    expect(param).toBe('text.format.name');
  });

  it('echoes tool_choice "auto" where none was sent, with tools or without (OpenAI\'s default), and what was sent otherwise', () => {
    const echoed = (body: object) => {
      const { body: parsed, tools } = parseResponsesBody({ model: 'm', input: 'x', ...body });
      return startedResponse('resp_0123456789abcdef01234567', 'm', parsed, tools).tool_choice;
    };
    expect(echoed({})).toBe('auto');
    expect(echoed({ tools: [{ type: 'function', name: 'f' }] })).toBe('auto');
    expect(echoed({ tool_choice: 'none' })).toBe('none');
  });
});
