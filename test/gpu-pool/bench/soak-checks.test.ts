/**
 * The edge soak's checks of one reply (gpu-pool/bench/soak-checks.ts): each
 * passes the reply its request promised and names one that breaks it.
 */
import { describe, expect, it } from 'vitest';
import { choiceProblem, jsReadable, structuredOf, structuredProblem, toolCallsProblem, idsTextProblem, maxTokensProblem, readReply, refusalProblem, tokenIdsProblem, truncationProblem } from '../../../gpu-pool/bench/soak-checks';

const sse = (...chunks: object[]): string => [...chunks.map((c) => `data: ${JSON.stringify(c)}\n\n`), 'data: [DONE]\n\n'].join('');

describe('reading a reply', () => {
  it('reads a whole completion, a whole chat reply (its prompt ids at the top) and an unreadable one', () => {
    const completion = readReply(JSON.stringify({ choices: [{ index: 0, text: 'yes', finish_reason: 'stop', token_ids: [5, 2], prompt_token_ids: [1, 9], logprobs: { tokens: ['token_id:5'] } }], usage: { prompt_tokens: 2, completion_tokens: 2 } }), false);
    expect(completion).toEqual({ choices: [{ text: 'yes', finishReason: 'stop', tokenIds: [5, 2], promptTokenIds: [1, 9], logprobTokens: ['token_id:5'] }], usage: { prompt_tokens: 2, completion_tokens: 2 } });
    const chat = readReply(JSON.stringify({ choices: [{ index: 0, message: { content: 'no' }, finish_reason: 'length', token_ids: [7], logprobs: { content: [{ token: 'token_id:7' }] } }], prompt_token_ids: [3], usage: { prompt_tokens: 1, completion_tokens: 1 } }), false);
    expect(chat?.choices[0]).toEqual({ text: 'no', finishReason: 'length', tokenIds: [7], promptTokenIds: [3], logprobTokens: ['token_id:7'] });
    expect(readReply('{"choices":', false)).toBeNull();
    expect(readReply('{"error":{}}', false)).toBeNull();
  });

  it("puts a stream's chunks together: each choice's text and ids in order, the prompt's ids once, the usage of the last chunk", () => {
    const text = sse(
      { choices: [{ index: 0, delta: { role: 'assistant', content: '' } }], prompt_token_ids: [1, 4] },
      { choices: [{ index: 1, delta: { role: 'assistant', content: '' } }], prompt_token_ids: [1, 4] },
      { choices: [{ index: 0, delta: { content: 'ye' }, token_ids: [8, 9], logprobs: { content: [{ token: 'token_id:8' }, { token: 'token_id:9' }] } }], usage: { prompt_tokens: 2, completion_tokens: 2 } },
      { choices: [{ index: 1, delta: { content: 'n' }, token_ids: [3] }] },
      { choices: [{ index: 0, delta: { content: 's' }, token_ids: [] }] },
      { choices: [{ index: 0, delta: {}, finish_reason: 'stop', token_ids: [2] }] },
      { choices: [{ index: 1, delta: {}, finish_reason: 'length', token_ids: [] }] },
      { choices: [], usage: { prompt_tokens: 2, completion_tokens: 4 } },
    );
    expect(readReply(text, true)).toEqual({
      choices: [
        { text: 'yes', finishReason: 'stop', tokenIds: [8, 9, 2], promptTokenIds: [1, 4], logprobTokens: ['token_id:8', 'token_id:9'] },
        { text: 'n', finishReason: 'length', tokenIds: [3], promptTokenIds: [1, 4] },
      ],
      usage: { prompt_tokens: 2, completion_tokens: 4 },
    });
    expect(readReply('data: {"choices":[{"index":0,"text":"a"\n\n', true)).toBeNull();
  });
});

describe('a choice constraint', () => {
  const choices = ['yes', 'no', 'not sure'];
  it('takes a whole choice, or the start of one where cut', () => {
    expect(choiceProblem({ text: 'yes', finishReason: 'stop' }, choices, false)).toBeNull();
    expect(choiceProblem({ text: 'no', finishReason: 'stop' }, choices, false)).toBeNull();
    expect(choiceProblem({ text: 'not s', finishReason: 'length' }, choices, false)).toBeNull();
    expect(choiceProblem({ text: 'no', finishReason: 'stop' }, choices, true)).toBeNull();
    expect(choiceProblem({ text: 'not', finishReason: 'stop' }, choices, true)).toBeNull();
  });
  it('names a text that is no choice, a start that ended without a stop, and text past every choice', () => {
    expect(choiceProblem({ text: 'maybe', finishReason: 'stop' }, choices, false)).toMatch(/"maybe" \(finish_reason stop\) is not one of the choices/);
    expect(choiceProblem({ text: 'not', finishReason: 'stop' }, choices, false)).toMatch(/is not one of the choices/);
    expect(choiceProblem({ text: 'yes!', finishReason: 'length' }, choices, false)).toMatch(/is the start of none of the choices/);
    expect(choiceProblem({ text: ' yes', finishReason: 'stop' }, choices, true)).toMatch(/the start of none/);
  });
});

describe("a regex's or JSON schema's promise", () => {
  const schema = { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] };
  it('reads the constraint from whichever field names it', () => {
    expect(structuredOf({ structured_outputs: { regex: 'a+' } })?.kind).toBe('regex');
    const regex = structuredOf({ guided_regex: 'a+' });
    expect(regex?.kind === 'regex' && regex.regex.test('aa')).toBe(true);
    for (const body of [{ structured_outputs: { json: schema } }, { guided_json: JSON.stringify(schema) }, { response_format: { type: 'json_schema', json_schema: { name: 'n', schema } } }]) {
      expect(structuredOf(body)?.kind).toBe('json schema');
    }
    expect(structuredOf({ response_format: { type: 'json_object' } })?.kind).toBe('json object');
    expect(structuredOf({ structured_outputs: { choice: ['a'] } })).toBeNull();
    expect(structuredOf({ response_format: { type: 'text' } })).toBeNull();
  });
  it('passes a whole match, and a reply cut by length or a stop', () => {
    const regex = structuredOf({ guided_regex: '[0-9]{2}' })!;
    expect(structuredProblem({ text: '42', finishReason: 'stop' }, regex, false)).toBeNull();
    expect(structuredProblem({ text: '4', finishReason: 'length' }, regex, false)).toBeNull();
    expect(structuredProblem({ text: 'x', finishReason: 'stop' }, regex, true)).toBeNull();
    expect(structuredProblem({ text: '{"n": 3}', finishReason: 'stop' }, structuredOf({ guided_json: schema })!, false)).toBeNull();
  });
  it('names a reply that ended outside the language, or JSON mode text that is not an object', () => {
    expect(structuredProblem({ text: '4', finishReason: 'stop' }, structuredOf({ guided_regex: '[0-9]{2}' })!, false)).toMatch(/does not match/);
    expect(structuredProblem({ text: '{"n": "3"}', finishReason: 'stop' }, structuredOf({ guided_json: schema })!, false)).toMatch(/does not match/);
    // A regex that lets through what JSON does not: the parse is the soak's own check.
    expect(structuredProblem({ text: '{"n": 3}', finishReason: 'stop' }, { kind: 'json object', regex: /^[^]*$/u }, false)).toBeNull();
    expect(structuredProblem({ text: '{"n": 3', finishReason: 'stop' }, { kind: 'json object', regex: /^[^]*$/u }, false)).toMatch(/is not JSON/);
    expect(structuredProblem({ text: '[1]', finishReason: 'stop' }, { kind: 'json object', regex: /^[^]*$/u }, false)).toMatch(/no object/);
  });
  it("reads a length beside a pattern (the engine's own group) as JavaScript does, counting code points however written", () => {
    const coded = structuredOf({ guided_json: { type: 'object', properties: { c: { type: 'string', pattern: '^[A-Z\\/]+$', minLength: 2, maxLength: 3 } }, required: ['c'] } })!;
    for (const [c, ok] of [['AB', true], ['ABC', true], ['A', false], ['ABCD', false], ['A/', true], ['ab', false]] as const) {
      expect(structuredProblem({ text: JSON.stringify({ c }), finishReason: 'stop' }, coded, false), c).toEqual(ok ? null : expect.stringMatching(/does not match/));
    }
    // Counted apart from the pattern: a pair escaped is one code point, a high \u alone one, short escapes one.
    const counted = new RegExp(`^${jsReadable('"(?json-length{1}:[^]*)"')}$`, 'u');
    for (const [text, ok] of [['"\\ud83d\\ude00"', true], ['"\\ud83d"', true], ['"\\ud83dx"', false], ['"\\/"', true], ['"😀"', true], ['""', false], ['"ab"', false]] as const) {
      expect(counted.test(text), text).toBe(ok);
    }
  });
});

describe("a grammar's promise", () => {
  const brackets = 'root ::= pair+\npair ::= "(" pair* ")" | "[" pair* "]"';
  const words = 'root ::= (item " "?){1,3}\nitem ::= "日本" | "🙂" | [à-ö]';
  it('reads the grammar from either field, compiled once per text', () => {
    const a = structuredOf({ structured_outputs: { grammar: brackets } });
    const b = structuredOf({ guided_grammar: brackets });
    expect(a?.kind).toBe('grammar');
    expect(a?.kind === 'grammar' && b?.kind === 'grammar' && a.grammar === b.grammar).toBe(true);
  });
  it('passes a whole sentence that ended, and the start of one where cut by length or a stop', () => {
    const check = structuredOf({ guided_grammar: brackets })!;
    expect(structuredProblem({ text: '([()])[]', finishReason: 'stop' }, check, false)).toBeNull();
    expect(structuredProblem({ text: '([(', finishReason: 'length' }, check, false)).toBeNull();
    expect(structuredProblem({ text: '((', finishReason: 'stop' }, check, true)).toBeNull();
    const multibyte = structuredOf({ structured_outputs: { grammar: words } })!;
    expect(structuredProblem({ text: '日本 🙂ä', finishReason: 'stop' }, multibyte, false)).toBeNull();
    // A character split by the cut: its bytes are no verdict.
    expect(structuredProblem({ text: '日本 \uFFFD', finishReason: 'length' }, multibyte, false)).toBeNull();
  });
  it('names a reply that ended inside a sentence, and text no sentence starts with, cut or not', () => {
    const check = structuredOf({ guided_grammar: brackets })!;
    expect(structuredProblem({ text: '([]', finishReason: 'stop' }, check, false)).toMatch(/"\(\[\]" \(finish_reason stop\) is only the start of a sentence/);
    expect(structuredProblem({ text: '(]', finishReason: 'stop' }, check, false)).toMatch(/is the start of no sentence of the grammar/);
    expect(structuredProblem({ text: '()x', finishReason: 'length' }, check, false)).toMatch(/the start of no sentence/);
    expect(structuredProblem({ text: ')', finishReason: 'stop' }, check, true)).toMatch(/the start of no sentence/);
    const multibyte = structuredOf({ guided_grammar: words })!;
    expect(structuredProblem({ text: '日本 ü', finishReason: 'stop' }, multibyte, false)).toMatch(/the start of no sentence/);
    expect(structuredProblem({ text: '\uFFFD', finishReason: 'stop' }, multibyte, false)).toMatch(/the start of no sentence/);
  });
});

describe("tool calls' promise", () => {
  const tools = [{ function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }, { function: { name: 'ping' } }];
  const named = { type: 'function' as const, function: { name: 'get_weather' } };
  it('reads calls from a whole reply and from a stream of pieces', () => {
    const whole = readReply(JSON.stringify({ choices: [{ index: 0, message: { content: null, tool_calls: [{ id: 'x', type: 'function', function: { name: 'ping', arguments: '{}' } }] }, finish_reason: 'tool_calls' }] }), false);
    expect(whole?.choices[0].toolCalls).toEqual([{ name: 'ping', arguments: '{}' }]);
    const streamed = readReply(
      sse(
        { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 'x', type: 'function', function: { name: 'get_weather', arguments: '{"ci' } }] } }] },
        { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: 'ty": "Paris"}' } }] } }] },
        { choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] },
      ),
      true,
    );
    expect(streamed?.choices[0]).toMatchObject({ finishReason: 'stop', toolCalls: [{ name: 'get_weather', arguments: '{"city": "Paris"}' }] });
  });
  it('passes whole calls of the listed functions with arguments their parameters take, and a cut reply', () => {
    expect(toolCallsProblem({ text: '', finishReason: 'stop', toolCalls: [{ name: 'get_weather', arguments: '{"city": "Paris"}' }] }, named, tools, false, false)).toBeNull();
    expect(toolCallsProblem({ text: '', finishReason: 'tool_calls', toolCalls: [{ name: 'ping', arguments: '{}' }, { name: 'get_weather', arguments: '{"city":"Rome"}' }] }, 'required', tools, false, false)).toBeNull();
    expect(toolCallsProblem({ text: '[{"name"', finishReason: 'length' }, 'required', tools, false, false)).toBeNull();
  });
  it('names calls missing, of the wrong function, too many, or with arguments their parameters do not take', () => {
    expect(toolCallsProblem({ text: 'hi', finishReason: 'stop' }, named, tools, false, false)).toBe('no tool_calls');
    expect(toolCallsProblem({ text: '', finishReason: 'stop', toolCalls: [{ name: 'ping', arguments: '{}' }] }, named, tools, false, false)).toMatch(/not the named/);
    expect(toolCallsProblem({ text: '', finishReason: 'tool_calls', toolCalls: [{ name: 'nope', arguments: '{}' }] }, 'required', tools, false, false)).toMatch(/no listed function/);
    expect(toolCallsProblem({ text: '', finishReason: 'tool_calls', toolCalls: [{ name: 'ping', arguments: '{}' }, { name: 'ping', arguments: '{}' }] }, 'required', tools, true, false)).toMatch(/without parallel_tool_calls/);
    expect(toolCallsProblem({ text: '', finishReason: 'stop', toolCalls: [{ name: 'get_weather', arguments: '{"town": "Paris"}' }] }, named, tools, false, false)).toMatch(/do not follow its parameters/);
    expect(toolCallsProblem({ text: '', finishReason: 'tool_calls', toolCalls: [{ name: 'ping', arguments: '{}' }] }, named, tools, false, false)).toMatch(/finish_reason tool_calls, not stop/);
  });
  it('takes "auto"\'s text that starts with no array, or whole calls; names an array left text, or calls said with no calls', () => {
    expect(toolCallsProblem({ text: ' Once upon a time', finishReason: 'stop' }, 'auto', tools, false, false)).toBeNull();
    expect(toolCallsProblem({ text: '', finishReason: 'tool_calls', toolCalls: [{ name: 'ping', arguments: '{}' }] }, 'auto', tools, false, false)).toBeNull();
    expect(toolCallsProblem({ text: ' [{"name": "pi', finishReason: 'length' }, 'auto', tools, false, false)).toBeNull();
    expect(toolCallsProblem({ text: '\n[{"name": "ping", "parameters": {}}]', finishReason: 'stop' }, 'auto', tools, false, false)).toMatch(/starts an array ended stop/);
    expect(toolCallsProblem({ text: 'hi', finishReason: 'tool_calls' }, 'auto', tools, false, false)).toMatch(/with no tool_calls/);
    expect(toolCallsProblem({ text: '', finishReason: 'tool_calls', toolCalls: [{ name: 'nope', arguments: '{}' }] }, 'auto', tools, false, false)).toMatch(/no listed function/);
  });
});

describe("return_token_ids' ids", () => {
  const reply = {
    choices: [
      { text: 'a', finishReason: 'stop', tokenIds: [5, 2], promptTokenIds: [1, 9, 9], logprobTokens: ['token_id:5'] },
      { text: 'bc', finishReason: 'length', tokenIds: [6, 7, 8], promptTokenIds: [1, 9, 9] },
    ],
    usage: { prompt_tokens: 3, completion_tokens: 5 },
  };
  it('agree with usage and the log-probabilities that name them', () => {
    expect(tokenIdsProblem(reply)).toBeNull();
    // Without usage (a stream without include_usage): the ids alone.
    expect(tokenIdsProblem({ choices: reply.choices })).toBeNull();
    // Log-probabilities by text, not by id: not compared.
    expect(tokenIdsProblem({ ...reply, choices: [{ ...reply.choices[0], logprobTokens: ['a', ''] }, reply.choices[1]] })).toBeNull();
  });
  it('names ids missing, more or fewer than usage counts, a prompt of another length, and log-probabilities of other ids', () => {
    expect(tokenIdsProblem({ ...reply, choices: [reply.choices[0], { ...reply.choices[1], tokenIds: undefined }] })).toMatch(/choice 1 has no token_ids/);
    expect(tokenIdsProblem({ ...reply, choices: [{ ...reply.choices[0], promptTokenIds: undefined }, reply.choices[1]] })).toMatch(/choice 0 has no prompt_token_ids/);
    expect(tokenIdsProblem({ ...reply, usage: { prompt_tokens: 3, completion_tokens: 4 } })).toMatch(/5 token_ids in all, usage.completion_tokens 4/);
    expect(tokenIdsProblem({ ...reply, usage: { prompt_tokens: 2, completion_tokens: 5 } })).toMatch(/3 prompt_token_ids, usage.prompt_tokens 2/);
    expect(tokenIdsProblem({ ...reply, choices: [{ ...reply.choices[0], logprobTokens: ['token_id:6'] }, reply.choices[1]] })).toMatch(/log-probabilities name \[6\], token_ids \[5,2\]/);
    expect(tokenIdsProblem({ ...reply, choices: [{ ...reply.choices[0], logprobTokens: ['token_id:5', 'token_id:2', 'token_id:2'] }, reply.choices[1]] })).toMatch(/log-probabilities name/);
    expect(tokenIdsProblem({ ...reply, choices: [{ ...reply.choices[0], tokenIds: [5, -1] }, reply.choices[1]] })).toMatch(/a non-id/);
  });
  it("with echo, the log-probabilities name the prompt's ids, then the choice's", () => {
    const echoed = { ...reply, choices: [{ ...reply.choices[0], logprobTokens: ['token_id:1', 'token_id:9', 'token_id:9', 'token_id:5'] }, reply.choices[1]] };
    expect(tokenIdsProblem(echoed, true)).toBeNull();
    expect(tokenIdsProblem(echoed, false)).toMatch(/log-probabilities name \[1,9,9,5\]/);
    expect(tokenIdsProblem({ ...reply, choices: [{ ...reply.choices[0], logprobTokens: ['token_id:1', 'token_id:9'] }, reply.choices[1]] }, true)).toMatch(/log-probabilities name \[1,9\]/);
    expect(tokenIdsProblem({ ...reply, choices: [{ ...reply.choices[0], logprobTokens: ['token_id:1', 'token_id:9', 'token_id:9', 'token_id:6'] }, reply.choices[1]] }, true)).toMatch(/log-probabilities name/);
  });
});

describe("return_token_ids' ids read back", () => {
  it("take the prompt's text, then the reply's; a split character is no verdict", () => {
    expect(idsTextProblem(' there was', 'Once there was', 'Once')).toBeNull();
    expect(idsTextProblem('', 'Once', 'Once')).toBeNull();
    expect(idsTextProblem('x', 'Once\uFFFDx', 'Once\uFFFD')).toBeNull();
  });
  it('names ids that print other text', () => {
    expect(idsTextProblem(' there was', 'Once there is', 'Once')).toMatch(/the ids read back give " there is", the reply's text is " there was"/);
    expect(idsTextProblem('was', 'Once was!', 'Once')).toMatch(/give " was!"/);
    expect(idsTextProblem('a', 'Twice a', 'Once')).toMatch(/give "Twice a"/);
  });
});

describe("a completion's default max_tokens", () => {
  it('takes up to the limit per choice and names more', () => {
    expect(maxTokensProblem({ choices: [{ text: '', finishReason: 'length', tokenIds: Array(16).fill(3) }], usage: { prompt_tokens: 1, completion_tokens: 16 } }, 16)).toBeNull();
    expect(maxTokensProblem({ choices: [{ text: '', finishReason: 'length' }, { text: '', finishReason: 'length' }], usage: { prompt_tokens: 1, completion_tokens: 32 } }, 16)).toBeNull();
    expect(maxTokensProblem({ choices: [{ text: '', finishReason: 'length', tokenIds: Array(17).fill(3) }] }, 16)).toMatch(/17 token_ids past the default max_tokens 16/);
    expect(maxTokensProblem({ choices: [{ text: '', finishReason: 'length' }], usage: { prompt_tokens: 1, completion_tokens: 300 } }, 16)).toMatch(/usage.completion_tokens 300 past 1 choice/);
  });
});

describe('truncation_side', () => {
  const full = [1, 10, 11, 12, 13];
  it("keeps the first k (right) or the last k (left), a completion's text its BOS on the left, and a short prompt whole", () => {
    expect(truncationProblem(full, [1, 10], 2, 'right', true)).toBeNull();
    expect(truncationProblem(full, [1, 10], 2, 'right', false)).toBeNull();
    expect(truncationProblem(full, [1, 12, 13], 3, 'left', true)).toBeNull();
    expect(truncationProblem(full, [11, 12, 13], 3, 'left', false)).toBeNull();
    expect(truncationProblem(full, [1], 1, 'left', true)).toBeNull();
    expect(truncationProblem(full, full, 5, 'right', false)).toBeNull();
    expect(truncationProblem(full, full, 9, 'left', true)).toBeNull();
  });
  it('names the wrong end kept, a BOS lost or kept wrongly, and a prompt cut that fits', () => {
    expect(truncationProblem(full, [12, 13], 2, 'right', false)).toMatch(/truncation_side right, truncate_prompt_tokens 2: kept \[12,13\].*expected \[1,10\]/);
    expect(truncationProblem(full, [1, 10, 11], 3, 'left', false)).toMatch(/expected \[11,12,13\]/);
    expect(truncationProblem(full, [11, 12, 13], 3, 'left', true)).toMatch(/expected \[1,12,13\]/);
    expect(truncationProblem(full, [1, 10, 11], 5, 'right', false)).toMatch(/expected \[1,10,11,12,13\]/);
  });
});

describe('a refusal', () => {
  const refusal = (param: string): string => JSON.stringify({ error: { message: 'no', type: 'invalid_request_error', param, code: 'unsupported_parameter' } });
  it('is a 400 naming the field; a busy answer or a cut is no answer on it', () => {
    expect(refusalProblem(400, refusal('priority'), 'priority')).toBeNull();
    expect(refusalProblem(429, '', 'priority')).toBeNull();
    expect(refusalProblem(503, '', 'priority')).toBeNull();
    expect(refusalProblem(0, '', 'priority')).toBeNull();
  });
  it('names a 200, a 400 naming another field or none, and a 500', () => {
    expect(refusalProblem(200, '{"choices":[]}', 'watermarking')).toMatch(/got 200 naming undefined, not a 400 naming watermarking/);
    expect(refusalProblem(400, refusal('structured_outputs'), 'structured_outputs.choice')).toMatch(/got 400 naming "structured_outputs", not a 400 naming structured_outputs.choice/);
    expect(refusalProblem(400, 'Bad Request', 'priority')).toMatch(/naming undefined/);
    expect(refusalProblem(500, refusal('priority'), 'priority')).toMatch(/got 500/);
  });
});
