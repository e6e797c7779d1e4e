/**
 * OpenAI parameters the edge does not implement: refused by name at any value
 * that would change the answer, accepted at their neutral value (clients such
 * as LangChain send `tools: []`).
 */
import { describe, expect, it } from 'vitest';
import { ApiError, TooManyChoicesError } from '../../edge/api-error';
import { chatRequestSchema, completionRequestSchema, parseOpenAiBody } from '../../edge/request-schema';
import { clipped } from '../../edge/request-schema';
import { refusalOrNull } from '../support/refusal';

const refusal = (body: Record<string, unknown>): ApiError | null => refusalOrNull(() => parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'hi', ...body }));

describe('OpenAI parameters this server does not implement', () => {
  it('refuses each by name (400, unsupported_parameter) when it would change the answer', () => {
    const asked: Array<[string, unknown]> = [
      ['best_of', 3],
      ['suffix', ' the end'],
      ['tools', [{ type: 'function', function: { name: 'f' } }]],
      ['tool_choice', 'auto'],
      ['functions', [{ name: 'f' }]],
      ['function_call', 'auto'],
      ['modalities', ['text', 'audio']],
      ['audio', { voice: 'alloy', format: 'wav' }],
      ['web_search_options', {}],
      // vLLM's extensions not served (a vLLM user would expect them honoured).
      ['use_beam_search', true],
      // Of structured outputs, structural_tag is not served: named by its key.
      ['structured_outputs.structural_tag', { structural_tag: '{}' }],
      // A prompt without BOS: silently ignored before, a vLLM user got other text.
      ['add_special_tokens', false],
    ];
    for (const [name, value] of asked) {
      const err = refusal({ [name.split('.')[0]]: value });
      expect(err, name).toBeInstanceOf(ApiError);
      expect(err!.status).toBe(400);
      expect(err!.toBody().error).toEqual({ message: expect.stringContaining(`${name} is not supported`), type: 'invalid_request_error', param: name, code: 'unsupported_parameter' });
    }
  });

  it('accepts them left out, null, or at their neutral value', () => {
    const neutral = {
      best_of: 1,
      suffix: '',
      tools: [],
      functions: [],
      tool_choice: 'none',
      function_call: 'none',
      response_format: { type: 'text' },
      modalities: ['text'],
      use_beam_search: false,
      add_special_tokens: true,
    };
    expect(refusal(neutral)).toBeNull();
    expect(refusal(Object.fromEntries(Object.keys(neutral).map((k) => [k, null])))).toBeNull();
    // Log-probabilities are served (legacy completions: an integer).
    expect(refusal({ logprobs: 0 })).toBeNull();
    expect(refusal({ logprobs: 5 })).toBeNull();
    expect(refusal({ logprobs: true })!.toBody().error).toMatchObject({ param: 'logprobs', code: 'invalid_value' });
    expect(parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'hi', tools: [], some_new_field: 1 }).prompt).toBe('hi');
    expect(refusal({ logit_bias: { '42': -100, '7': 5 } })).toBeNull();
    expect(refusal({ logit_bias: { abc: 1 } })!.toBody().error).toMatchObject({ param: 'logit_bias.abc', code: 'invalid_value' });
    // Penalties are served, within OpenAI's range.
    expect(refusal({ frequency_penalty: 0.5, presence_penalty: -1, repetition_penalty: 1.2 })).toBeNull();
    expect(refusal({ frequency_penalty: 3 })!.toBody().error).toMatchObject({ param: 'frequency_penalty', code: 'invalid_value' });
    // A union's error says why, from the branch the value's type matched.
    expect(refusal({ stop: ['a', 'b', 'c', 'd', 'e'] })!.toBody().error).toMatchObject({ param: 'stop', code: 'invalid_value', message: 'stop accepts at most 4 sequences' });
    expect(refusal({ stop: ['a', ''] })!.toBody().error).toMatchObject({ param: 'stop.1', code: 'invalid_value' });
    expect(refusal({ stop: 5 })!.toBody().error).toMatchObject({ param: 'stop', code: 'invalid_value' });
    // Half of a character can never be in the text: refused, not matched inside an emoji. A whole one is a stop like any.
    for (const [stop, param] of [['\ud83d', 'stop'], [['x', 'a\ude00'], 'stop.1']] as const) {
      expect(refusal({ stop })!.toBody().error).toMatchObject({ param, code: 'invalid_value', message: expect.stringMatching(/lone surrogate/) });
    }
    expect(refusal({ stop: ['😀', 'e\u0301', '\ufffd'] })).toBeNull();
  });

  it('refuses echo on chat, which has no such field, and vLLM\'s chat-template controls unless neutral', () => {
    const chat = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };
    for (const [name, value] of [
      ['chat_template', '{{ messages }}'],
      ['chat_template_kwargs', { enable_thinking: true }],
      // An empty array is no empty object (review h175: taken as one).
      ['chat_template_kwargs', []],
      ['add_generation_prompt', false],
      ['continue_final_message', true],
    ] as const) {
      expect(() => parseOpenAiBody(chatRequestSchema, { ...chat, [name]: value }, 'chat'), name).toThrow(expect.objectContaining({ param: name, code: 'unsupported_parameter' }));
    }
    expect(parseOpenAiBody(chatRequestSchema, { ...chat, add_generation_prompt: true, continue_final_message: false, chat_template_kwargs: {} }, 'chat').messages).toHaveLength(1);
    // OpenAI's verbosity (the AI SDK's textVerbosity) would go unheeded: refused unless "medium", as the Responses API's text.verbosity.
    expect(() => parseOpenAiBody(chatRequestSchema, { ...chat, verbosity: 'low' }, 'chat')).toThrow(expect.objectContaining({ param: 'verbosity', code: 'unsupported_parameter' }));
    expect(parseOpenAiBody(chatRequestSchema, { ...chat, verbosity: 'medium' }, 'chat').messages).toHaveLength(1);
    // A prompt of token ids gets no BOS whatever add_special_tokens says: false is taken there, as vLLM takes it.
    for (const prompt of [[1, 403, 407], [[403, 407]]]) expect(parseOpenAiBody(completionRequestSchema, { model: 'm', prompt, add_special_tokens: false }).prompt).toEqual(prompt);
    expect(() => parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'hi', add_special_tokens: false })).toThrow(expect.objectContaining({ param: 'add_special_tokens' }));
    // The template places BOS itself: chat takes add_special_tokens either way, as vLLM's chat defaults to false.
    for (const add of [true, false]) expect(parseOpenAiBody(chatRequestSchema, { ...chat, add_special_tokens: add }, 'chat').messages).toHaveLength(1);
    expect(() => parseOpenAiBody(chatRequestSchema, { ...chat, echo: true }, 'chat')).toThrow(expect.objectContaining({ param: 'echo', code: 'unsupported_parameter' }));
    expect(parseOpenAiBody(chatRequestSchema, { ...chat, echo: false }, 'chat').messages).toHaveLength(1);
    expect(parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'hi', echo: true }).echo).toBe(true);
  });

  it("takes vLLM's truncate_prompt_tokens (>= 1, or -1) and return_tokens_as_token_ids on both endpoints, naming a bad value", () => {
    const chat = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };
    for (const value of [1, 100, -1, null]) {
      expect(parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'hi', truncate_prompt_tokens: value }).truncate_prompt_tokens).toBe(value);
      expect(parseOpenAiBody(chatRequestSchema, { ...chat, truncate_prompt_tokens: value }, 'chat').truncate_prompt_tokens).toBe(value);
    }
    // As vLLM's SamplingParams: 0 and below -1 are no length to keep.
    for (const value of [0, -2, 1.5, '5']) {
      expect(refusal({ truncate_prompt_tokens: value })!.toBody().error, String(value)).toMatchObject({ param: 'truncate_prompt_tokens', code: 'invalid_value' });
    }
    expect(refusal({ truncate_prompt_tokens: 0 })!.toBody().error.message).toMatch(/>= 1, or -1/);
    for (const value of [true, false]) {
      expect(parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'hi', logprobs: 1, return_tokens_as_token_ids: value }).return_tokens_as_token_ids).toBe(value);
      expect(parseOpenAiBody(chatRequestSchema, { ...chat, logprobs: true, return_tokens_as_token_ids: value }, 'chat').return_tokens_as_token_ids).toBe(value);
    }
    expect(refusal({ return_tokens_as_token_ids: 'yes' })!.toBody().error).toMatchObject({ param: 'return_tokens_as_token_ids', code: 'invalid_value' });
  });

  it("takes stream_options' include_usage and vLLM's continuous_usage_stats as booleans, null as left out (vLLM's Optional[bool])", () => {
    for (const value of [true, false, null]) {
      const body = parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'hi', stream: true, stream_options: { include_usage: value, continuous_usage_stats: value } });
      expect(body.stream_options).toEqual({ include_usage: value, continuous_usage_stats: value });
    }
    expect(refusal({ stream: true, stream_options: { continuous_usage_stats: 'yes' } })!.toBody().error.message).toMatch(/continuous_usage_stats/);
  });

  it("takes vLLM's bad_words on both endpoints, bounded in words and in each word's characters", () => {
    const chat = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };
    expect(parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'hi', bad_words: ['dog', ' a cat'] }).bad_words).toEqual(['dog', ' a cat']);
    expect(parseOpenAiBody(chatRequestSchema, { ...chat, bad_words: ['dog'] }, 'chat').bad_words).toEqual(['dog']);
    expect(refusal({ bad_words: 'dog' })!.toBody().error).toMatchObject({ param: 'bad_words', code: 'invalid_value' });
    expect(refusal({ bad_words: new Array(129).fill('dog') })!.toBody().error).toMatchObject({ param: 'bad_words', message: expect.stringContaining('at most 128 words') });
    expect(refusal({ bad_words: ['x'.repeat(1025)] })!.toBody().error).toMatchObject({ param: 'bad_words.0', message: expect.stringContaining('at most 1024 characters') });
  });

  it("refuses vLLM's fields that change the answer and are not served (vllm/entrypoints/openai/*/protocol.py), unless neutral", () => {
    const chat = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };
    const refused: Array<[string, unknown]> = [
      ['watermarking', true],
      ['repetition_detection', { max_pattern_size: 4, min_count: 3 }],
      ['prompt_embeds', 'AAAA'],
      ['prompt_embeds', ['AAAA']],
      ['skip_special_tokens', false],
      ['priority', 1],
      ['priority', -5],
      // vLLM's logits processors and flat repetition detection, and SGLang's names (review h118: taken and ignored).
      ['logits_processors', ['my.Proc']],
      ['max_repetition_pattern_size', 8],
      ['regex', '[0-9]+'],
      ['ebnf', 'root ::= "a"'],
      ['json_schema', '{"type":"object"}'],
      ['stop_regex', '\\.'],
      ['min_new_tokens', 4],
      ['no_stop_trim', true],
      // SGLang's max_new_tokens and the Responses API's names (review h165: dropped, the reply ran to the context's end).
      ['max_new_tokens', 5],
      ['max_output_tokens', 5],
      ['text', { format: { type: 'json_object' } }],
    ];
    for (const [name, value] of refused) {
      for (const run of [() => parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'hi', [name]: value }), () => parseOpenAiBody(chatRequestSchema, { ...chat, [name]: value }, 'chat')]) {
        expect(run, `${name} ${JSON.stringify(value)}`).toThrow(expect.objectContaining({ status: 400, param: name, code: 'unsupported_parameter' }));
      }
    }
    expect(refusal({ priority: 2 })!.message).toMatch(/send it as 0: requests are not scheduled by priority/);
    expect(refusal({ regex: 'a+' })!.message).toMatch(/guided_regex is that constraint here/);
    expect(refusal({ max_output_tokens: 5 })!.message).toMatch(/max_tokens is that control here/);
    expect(refusal({ text: { format: { type: 'json_object' } } })!.message).toMatch(/response_format is that control here/);
    expect(refusal({ text: { verbosity: 'medium' } })).toBeNull();
    // An array is no text object: it has no format to read, and passed as none asked (review h175).
    expect(refusal({ text: [{ format: { type: 'json_object' } }] })).toMatchObject({ param: 'text', code: 'unsupported_parameter' });
    // best_of equal to n asks for what n gives; fewer than n, or more, is refused.
    expect(refusal({ best_of: 3, n: 3 })).toBeNull();
    expect(refusal({ best_of: 1, n: 3 })).toMatchObject({ param: 'best_of', code: 'unsupported_parameter' });
    expect(refusal({ best_of: 2 })).toMatchObject({ param: 'best_of', code: 'unsupported_parameter' });
    // Chat's own: documents for a RAG template, and vLLM's rendered prompt text.
    for (const [name, value] of [['documents', [{ title: 'a', text: 'b' }]], ['return_prompt_text', true]] as const) {
      expect(() => parseOpenAiBody(chatRequestSchema, { ...chat, [name]: value }, 'chat'), name).toThrow(expect.objectContaining({ param: name, code: 'unsupported_parameter' }));
    }
    // Neutral, or null: taken.
    const neutral = { logprob_token_ids: null, watermarking: false, repetition_detection: null, prompt_embeds: [], skip_special_tokens: true, priority: 0, logits_processors: [], min_new_tokens: 0, no_stop_trim: false };
    expect(refusal(neutral)).toBeNull();
    expect(refusal(Object.fromEntries(Object.keys(neutral).map((k) => [k, null])))).toBeNull();
    expect(parseOpenAiBody(chatRequestSchema, { ...chat, ...neutral, documents: [], return_prompt_text: false }, 'chat').messages).toHaveLength(1);
    // A non-boolean skip_special_tokens is no value at all: invalid, not unsupported.
    expect(refusal({ skip_special_tokens: 'no' })!.toBody().error).toMatchObject({ param: 'skip_special_tokens', code: 'invalid_value' });
  });

  it("refuses llama.cpp server's sampling and length fields unless neutral, naming what serves them here (review h131: taken and ignored)", () => {
    const chat = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };
    const refused: Array<[string, unknown]> = [
      ['grammar', 'root ::= "yes"'],
      ['n_predict', 3],
      ['repeat_penalty', 1.3],
      ['n_probs', 3],
      ['mirostat', 2],
      ['typical_p', 0.5],
      ['tfs_z', 0.9],
      ['top_n_sigma', 1.5],
      ['min_keep', 5],
      ['dry_multiplier', 0.8],
      ['xtc_probability', 0.5],
      ['dynatemp_range', 0.3],
    ];
    for (const [name, value] of refused) {
      for (const run of [() => parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'hi', [name]: value }), () => parseOpenAiBody(chatRequestSchema, { ...chat, [name]: value }, 'chat')]) {
        expect(run, `${name} ${JSON.stringify(value)}`).toThrow(expect.objectContaining({ status: 400, param: name, code: 'unsupported_parameter' }));
      }
    }
    expect(refusal({ n_predict: 3 })!.message).toMatch(/max_tokens is that control here/);
    expect(refusal({ grammar: 'root ::= "a"' })!.message).toMatch(/guided_grammar/);
    expect(refusal({ repeat_penalty: 1.1 })!.message).toMatch(/repetition_penalty is that control here/);
    // How far back a penalty looks matters only where one is asked; -1 (the whole output) is what is served.
    expect(refusal({ repeat_last_n: 64 })).toBeNull();
    expect(refusal({ repeat_last_n: 64, frequency_penalty: 0.5 })).toMatchObject({ param: 'repeat_last_n', code: 'unsupported_parameter' });
    expect(refusal({ penalty_last_n: 64, repetition_penalty: 1.2 })).toMatchObject({ param: 'penalty_last_n' });
    expect(refusal({ penalty_last_n: -1, presence_penalty: 0.5 })).toBeNull();
    // llama-server's defaults, as some clients send them all: taken; and its fields that leave the answer as it is.
    const neutral = { grammar: '', n_predict: -1, repeat_penalty: 1, n_probs: 0, mirostat: 0, typical_p: 1, tfs_z: 1, top_n_sigma: -1, min_keep: 0, dry_multiplier: 0, xtc_probability: 0, dynatemp_range: 0, cache_prompt: true, n_keep: 0, id_slot: -1 };
    expect(refusal(neutral)).toBeNull();
    expect(parseOpenAiBody(chatRequestSchema, { ...chat, ...neutral }, 'chat').messages).toHaveLength(1);
  });

  it("takes vLLM's logprob_token_ids with logprobs, checked as vLLM checks them (a list of 1 to 128 ids; logprobs set, chat's true), each refusal naming the field", () => {
    const chat = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };
    const completion = { model: 'm', prompt: 'hi' };
    expect(parseOpenAiBody(completionRequestSchema, { ...completion, logprobs: 0, logprob_token_ids: [5, 7] }).logprob_token_ids).toEqual([5, 7]);
    expect(parseOpenAiBody(chatRequestSchema, { ...chat, logprobs: true, logprob_token_ids: [5] }, 'chat').logprob_token_ids).toEqual([5]);
    const refused: Array<[() => unknown, string]> = [
      [() => parseOpenAiBody(completionRequestSchema, { ...completion, logprob_token_ids: [5] }), 'when using `logprob_token_ids`, `logprobs` must be set.'],
      [() => parseOpenAiBody(completionRequestSchema, { ...completion, logprobs: null, logprob_token_ids: [5] }), '`logprobs` must be set'],
      [() => parseOpenAiBody(chatRequestSchema, { ...chat, logprob_token_ids: [5] }, 'chat'), 'when using `logprob_token_ids`, `logprobs` must be set to true.'],
      [() => parseOpenAiBody(chatRequestSchema, { ...chat, logprobs: false, top_logprobs: 0, logprob_token_ids: [5] }, 'chat'), '`logprobs` must be set to true'],
      [() => parseOpenAiBody(completionRequestSchema, { ...completion, logprobs: 1, logprob_token_ids: [] }), 'must not be an empty list'],
      [() => parseOpenAiBody(completionRequestSchema, { ...completion, logprobs: 1, logprob_token_ids: new Array(129).fill(3) }), 'at most 128 ids'],
      [() => parseOpenAiBody(completionRequestSchema, { ...completion, logprobs: 1, logprob_token_ids: [-1] }), ''],
      [() => parseOpenAiBody(chatRequestSchema, { ...chat, logprobs: true, logprob_token_ids: 5 }, 'chat'), ''],
    ];
    for (const [run, message] of refused) {
      expect(run).toThrow(expect.objectContaining({ status: 400, code: 'invalid_value', param: expect.stringMatching(/^logprob_token_ids/), message: expect.stringContaining(message) }));
    }
  });

  it("takes vLLM's fields that change nothing a client of this server sees, checking reasoning_effort's values as vLLM does", () => {
    const chat = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };
    const noEffect = {
      request_id: 'r-1',
      session_id: 's-1',
      kv_transfer_params: { do_remote_decode: false },
      ec_transfer_params: {},
      vllm_xargs: { k: 1 },
      stream_interval: 4,
      return_token_offsets: true,
      return_mm_kwargs: false,
      routed_experts_prompt_start: 2,
      thinking_token_budget: 100,
      spaces_between_special_tokens: false,
      length_penalty: 0.5,
    };
    expect(refusal(noEffect)).toBeNull();
    const chatOnly = { include_reasoning: false, parallel_tool_calls: false, media_io_kwargs: {}, mm_processor_kwargs: {} };
    for (const effort of ['none', 'low', 'high', 'max', null]) {
      expect(parseOpenAiBody(chatRequestSchema, { ...chat, ...noEffect, ...chatOnly, reasoning_effort: effort }, 'chat').reasoning_effort).toBe(effort);
    }
    expect(() => parseOpenAiBody(chatRequestSchema, { ...chat, reasoning_effort: 'extreme' }, 'chat')).toThrow(expect.objectContaining({ param: 'reasoning_effort', code: 'invalid_value' }));
  });

  it("takes vLLM's truncation_side (left or right) and return_token_ids (a boolean) on both endpoints, naming a bad value", () => {
    const chat = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };
    for (const side of ['left', 'right', null]) {
      expect(parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'hi', truncate_prompt_tokens: 4, truncation_side: side }).truncation_side).toBe(side);
      expect(parseOpenAiBody(chatRequestSchema, { ...chat, truncation_side: side }, 'chat').truncation_side).toBe(side);
    }
    for (const side of ['middle', 'LEFT', 1]) expect(refusal({ truncation_side: side })!.toBody().error, String(side)).toMatchObject({ param: 'truncation_side', code: 'invalid_value' });
    for (const value of [true, false, null]) {
      expect(parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'hi', return_token_ids: value }).return_token_ids).toBe(value);
      expect(parseOpenAiBody(chatRequestSchema, { ...chat, return_token_ids: value }, 'chat').return_token_ids).toBe(value);
    }
    expect(refusal({ return_token_ids: 'yes' })!.toBody().error).toMatchObject({ param: 'return_token_ids', code: 'invalid_value' });
  });

  it('still reports the schema\'s own errors after its own check', () => {
    const err = refusal({ temperature: 7 });
    expect(err!.toBody().error).toMatchObject({ param: 'temperature', code: 'invalid_value' });
  });
});

describe('bounded integers', () => {
  it('name their own bound for a huge value, not the largest safe integer', () => {
    for (const [param, value, bound] of [['top_k', 1e300, '100000'], ['n', 1e20, 'at most 8'], ['logprobs', 1e300, '20']] as const) {
      const err = refusal({ [param]: value });
      expect(err!.toBody().error.param).toBe(param);
      expect(err!.message, param).toContain(bound);
      expect(err!.message).not.toContain('9007199254740991');
    }
  });

  it('say their field once where the message names it: "n is at most 8", not "n: n is at most 8" (review h141)', () => {
    expect(refusal({ n: 9 })!.toBody().error).toMatchObject({ param: 'n', message: 'n is at most 8' });
    expect(refusal({ prompt_logprobs: 1000 })!.toBody().error).toMatchObject({ param: 'prompt_logprobs', message: expect.stringMatching(/^prompt_logprobs is at most \d+$/) });
    // A message that does not open with the field keeps it in front: which key, which field.
    expect(refusal({ top_k: -5 })!.toBody().error.message).toMatch(/^top_k: /);
    expect(refusal({ bad_words: ['ok', 'w'.repeat(100_000)] })!.toBody().error).toMatchObject({ param: 'bad_words.1', message: expect.stringMatching(/^bad_words\.1: a bad word holds at most \d+ characters$/) });
  });
});

describe('seed', () => {
  it('takes any int64, as OpenAI does, and refuses what is not one by name', () => {
    for (const seed of [0, -3, 2 ** 53 + 2, 9.2e18, -(2 ** 63)]) expect(refusal({ seed }), String(seed)).toBeNull();
    for (const seed of [1.5, 2 ** 64, '7']) {
      const err = refusal({ seed });
      expect(err?.status, String(seed)).toBe(400);
      expect(err!.toBody().error.param).toBe('seed');
    }
  });
});

describe('logit_bias', () => {
  it('takes token ids as OpenAI writes them, and refuses one token written twice ("7" and "007")', () => {
    expect(refusal({ logit_bias: { '0': 1, '7': -100, '511': 5 } })).toBeNull();
    const err = refusal({ logit_bias: { '7': 5, '007': 5 } });
    expect(err?.status).toBe(400);
    expect(err!.toBody().error.message).toMatch(/logit_bias\.007/);
  });

  it('refuses more than 1024 tokens by their count, with param logit_bias', () => {
    expect(refusal({ logit_bias: Object.fromEntries(Array.from({ length: 1024 }, (_, i) => [String(i), 1])) })).toBeNull();
    const err = refusal({ logit_bias: Object.fromEntries(Array.from({ length: 1025 }, (_, i) => [String(i), 1])) });
    expect(err!.toBody().error).toMatchObject({ param: 'logit_bias', message: 'logit_bias holds at most 1024 tokens' });
  });
});

describe('prompt', () => {
  it('names a bad token id briefly, however big it is (a 900 KB string came back whole in the error)', () => {
    const err = refusal({ prompt: [[1, 'x'.repeat(900_000)]] });
    expect(err!.toBody().error.message).toBe(`prompt[0][1] is "${'x'.repeat(40)}": token ids are non-negative integers`);
    expect(refusal({ prompt: [1, true] })!.toBody().error.message).toBe('prompt[1] is true: token ids are non-negative integers (or the prompt is a string)');
    let deep: unknown = [1];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(refusal({ prompt: [[1, deep]] })!.toBody().error.message).toBe("prompt[0][1] is an array: token ids are non-negative integers");
  });

  it('says a negative max_tokens as it says a 0 without echo (review h135)', () => {
    expect(refusal({ max_tokens: -1 })!.toBody().error).toMatchObject({ param: 'max_tokens', message: 'max_tokens must be at least 1 (0 only with echo: score the prompt)' });
    expect(refusal({ max_completion_tokens: -1 })!.toBody().error).toMatchObject({ param: 'max_completion_tokens', message: expect.stringContaining('must be at least 1') });
  });

  it('says a list that mixes text and token ids is that, not a bad id (review h131)', () => {
    for (const prompt of [['a', 1], [1, 'x'.repeat(900_000)]]) {
      expect(refusal({ prompt })!.toBody().error).toMatchObject({ param: 'prompt', message: 'prompt mixes text and token ids: send a string, a list of one string, or token ids' });
    }
  });

  it('bounds what an error quotes of the client: a 1 MB logit_bias key is not sent back twice', () => {
    const err = refusal({ logit_bias: { ['x'.repeat(1_000_000)]: 1 } })!.toBody().error;
    expect(err.param!.length).toBeLessThanOrEqual(101);
    expect(err.message.length).toBeLessThanOrEqual(501);
    expect(err.param).toMatch(/^logit_bias\.x+…$/);
  });

  it('cuts a quote between characters, never inside one', () => {
    expect(clipped('ab😀cd', 3)).toBe('ab…');
    expect(clipped('ab😀cd', 4)).toBe('ab😀…');
    expect(clipped('abc', 3)).toBe('abc');
  });
});

describe('sampling bounds', () => {
  it('refuses top_p above 1 by name (400)', () => {
    expect(refusal({ top_p: 1 })).toBeNull();
    const err = refusal({ top_p: 1.5 });
    expect(err?.status).toBe(400);
    expect(err!.toBody().error).toMatchObject({ param: 'top_p', code: 'invalid_value' });
  });

  it('refuses chat top_logprobs without logprobs: true, by name', () => {
    const chat = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };
    for (const logprobs of [undefined, false]) {
      expect(() => parseOpenAiBody(chatRequestSchema, { ...chat, logprobs, top_logprobs: 2 }, 'chat'), String(logprobs)).toThrow(
        expect.objectContaining({ status: 400, param: 'top_logprobs', message: expect.stringContaining('top_logprobs needs logprobs: true') }),
      );
    }
    expect(parseOpenAiBody(chatRequestSchema, { ...chat, logprobs: true, top_logprobs: 2 }, 'chat').top_logprobs).toBe(2);
  });

  it('names, of several bad fields, the others before the sampling ones: too many choices is still refused as such (its rate token given back)', () => {
    const chat = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };
    expect(() => parseOpenAiBody(chatRequestSchema, { ...chat, n: 1000, speculation: 'x' }, 'chat')).toThrow(TooManyChoicesError);
    expect(() => parseOpenAiBody(chatRequestSchema, { ...chat, stream: 'yes', temperature: 5 }, 'chat')).toThrow(expect.objectContaining({ param: 'stream' }));
    expect(() => parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'x', max_tokens: -1, seed: 1.5 })).toThrow(expect.objectContaining({ param: 'max_tokens' }));
  });
});

describe('user', () => {
  it('takes 256 characters and refuses 257 by name', () => {
    expect(refusal({ user: 'u'.repeat(256) })).toBeNull();
    const err = refusal({ user: 'u'.repeat(257) });
    expect(err?.status).toBe(400);
    expect(err!.toBody().error).toMatchObject({ param: 'user', code: 'invalid_value' });
  });
});

describe("a message's name", () => {
  const chat = (name: unknown) => () => parseOpenAiBody(chatRequestSchema, { model: 'm', messages: [{ role: 'user', content: 'hi' }, { role: 'user', name, content: 'there' }] }, 'chat');
  it('takes what OpenAI takes (1 to 64 letters, digits, underscores, dashes) and refuses the rest by its place (review h171: any length was stored)', () => {
    for (const name of ['Alice', 'bob_2', 'a-b', 'x'.repeat(64), null]) expect(chat(name)().messages).toHaveLength(2);
    for (const name of ['', 'Alice Smith', 'Alice <s>', 'x'.repeat(65), 'x'.repeat(400_000)]) {
      expect(chat(name), JSON.stringify(name).slice(0, 20)).toThrow(expect.objectContaining({ status: 400, param: 'messages.1.name', code: 'invalid_value' }));
    }
  });
});

describe('prompt_logprobs', () => {
  it("is taken on both endpoints (vLLM's, 0..20; -1 passes here and is refused with the vocabulary's size later), and refused by name past its bounds", () => {
    expect(parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'hi', prompt_logprobs: 3 }).prompt_logprobs).toBe(3);
    expect(parseOpenAiBody(chatRequestSchema, { model: 'm', messages: [{ role: 'user', content: 'hi' }], prompt_logprobs: 0 }, 'chat').prompt_logprobs).toBe(0);
    expect(refusal({ prompt_logprobs: -1 })).toBeNull();
    for (const value of [21, -2, 1.5, '2']) {
      expect(refusal({ prompt_logprobs: value })!.toBody().error, String(value)).toMatchObject({ param: 'prompt_logprobs', code: 'invalid_value' });
    }
  });
});

describe('min_p', () => {
  it('takes 0 to 1 (vLLM) and refuses more by name', () => {
    expect(refusal({ min_p: 0.05 })).toBeNull();
    expect(refusal({ min_p: 1.5 })!.toBody().error).toMatchObject({ param: 'min_p', code: 'invalid_value' });
  });
});

describe('numbers too large to read', () => {
  it('says so, not that Infinity was sent', () => {
    const err = refusal(JSON.parse('{"max_tokens":1e400}') as Record<string, unknown>);
    expect(err?.status).toBe(400);
    expect(err!.toBody().error).toMatchObject({ param: 'max_tokens', message: 'max_tokens: a number too large to be read (past ±1.8e308)' });
    // Negative alike (it was "expected number, received -Infinity").
    const negative = refusal(JSON.parse('{"temperature":-1e400}') as Record<string, unknown>);
    expect(negative!.toBody().error).toMatchObject({ param: 'temperature', message: 'temperature: a number too large to be read (past ±1.8e308)' });
  });
});

describe('cache_salt', () => {
  it("takes vLLM's 1 to 1,024 characters, and refuses past them naming the field", () => {
    expect(refusal({ cache_salt: 's'.repeat(1024) })).toBeNull();
    expect(refusal({ cache_salt: 's'.repeat(1025) })).toMatchObject({ status: 400, param: 'cache_salt' });
    expect(refusal({ cache_salt: '' })).toMatchObject({ status: 400, param: 'cache_salt' });
  });
});

describe("chat's tool messages (review h136)", () => {
  const chatRefusal = (messages: unknown[]): { param: string | null; message: string } | null =>
    refusalOrNull(() => parseOpenAiBody(chatRequestSchema, { model: 'm', messages }, 'chat'))?.toBody().error ?? null;
  const user = { role: 'user', content: 'Weather?' };
  const called = { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'w', arguments: '{}' } }, { id: 'call_2', type: 'function', function: { name: 'w', arguments: '{}' } }] };

  it('takes tool messages that answer the calls of the assistant message before them', () => {
    expect(chatRefusal([user, called, { role: 'tool', tool_call_id: 'call_1', content: 'sunny' }, { role: 'tool', tool_call_id: 'call_2', content: 'rain' }, { role: 'user', content: 'ok' }])).toBeNull();
    // The legacy function role is as it was.
    expect(chatRefusal([user, { role: 'function', name: 'w', content: 'sunny' }])).toBeNull();
  });

  it('refuses one without a tool_call_id, one answering no call, and one whose id is none of the calls, naming it', () => {
    expect(chatRefusal([user, called, { role: 'tool', content: 'sunny' }])).toMatchObject({ param: 'messages.2.tool_call_id', message: expect.stringContaining("must have a 'tool_call_id'") });
    // Not a string: said so, not as if it were missing (review h138).
    expect(chatRefusal([user, called, { role: 'tool', tool_call_id: 1, content: 'sunny' }])).toMatchObject({ param: 'messages.2.tool_call_id', message: expect.stringContaining('expected a string') });
    expect(chatRefusal([user, { role: 'tool', tool_call_id: 'call_1', content: 'sunny' }])).toMatchObject({ param: 'messages.1.role', message: expect.stringContaining("preceding message with 'tool_calls'") });
    expect(chatRefusal([user, called, { role: 'tool', tool_call_id: 'call_9', content: 'sunny' }])).toMatchObject({ param: 'messages.2.tool_call_id', message: expect.stringContaining("'call_9'") });
    // After a user message the calls are no longer being answered.
    expect(chatRefusal([user, called, { role: 'tool', tool_call_id: 'call_1', content: 'sunny' }, { role: 'user', content: 'and?' }, { role: 'tool', tool_call_id: 'call_2', content: 'rain' }])).toMatchObject({ param: 'messages.4.role' });
  });
});

describe('response_format.json_schema.name (review h136)', () => {
  it("takes OpenAI's letters, digits, underscores and dashes, up to 64, and refuses other names naming the field", () => {
    const body = (name: string) => ({ model: 'm', messages: [{ role: 'user', content: 'hi' }], response_format: { type: 'json_schema', json_schema: { name, schema: { type: 'object' } } } });
    expect(() => parseOpenAiBody(chatRequestSchema, body('pet_Schema-2'), 'chat')).not.toThrow();
    for (const name of ['my schema', 'a.b', 'é', 'x'.repeat(65), '']) {
      const param = refusalOrNull(() => parseOpenAiBody(chatRequestSchema, body(name), 'chat'))?.param ?? null;
      expect(param, name).toBe('response_format.json_schema.name');
    }
  });
});
