/**
 * Chat's tool calls: the schema the reply follows (vLLM's where the
 * request names what to call; "auto"'s calls or text), its text made calls,
 * and the refusals in vLLM's words.
 */
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { autoReplyKind, autoToolGrammar, autoToolRegex, toolCallPlan, toolCallsOf, toolFinishReason } from '../../edge/tool-calls';
import { compileGrammar } from '../../shared/structured/grammar-automaton';
import { compileRegex } from '../../shared/structured/regex-automaton';
import { jsonSchemaGrammar } from '../../shared/structured/json-schema-grammar';
import { compileWithEngine } from '../support/json-schema-cases';
import { jsonSchemaRegex } from '../../shared/structured/json-schema-regex';
import { chatRequestSchema, parseOpenAiBody } from '../../edge/request-schema';
import { structuredOutput } from '../../edge/structured-output';
import { inResponsesTerms, parseResponsesBody, translateResponsesRequest } from '../../edge/responses-request';
import { startedResponse } from '../../edge/responses-format';
import { refusalOf, refusalOrNull } from '../support/refusal';

const weather = { type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } };
const ping = { type: 'function' as const, function: { name: 'ping' } };

const refusal = (body: Parameters<typeof toolCallPlan>[0]): { param: string | null; message: string } => refusalOf(() => toolCallPlan(body)).toBody().error;

describe('toolCallPlan', () => {
  it("follows a named function's parameters (none: an object of no properties)", () => {
    const plan = toolCallPlan({ tools: [weather, ping], tool_choice: { type: 'function', function: { name: 'get_weather' } } })!;
    expect(plan).toMatchObject({ mode: { kind: 'named', name: 'get_weather' }, schema: weather.function.parameters });
    expect(plan.locate('/properties/city')).toEqual({ param: 'tools.0.function.parameters', path: '/properties/city' });
    // A function of no parameters (none, or an empty object): its arguments are `{}`, as vLLM writes them.
    for (const fn of [ping, { type: 'function' as const, function: { name: 'ping', parameters: {} } }]) {
      const schema = toolCallPlan({ tools: [weather, fn], tool_choice: { type: 'function', function: { name: 'ping' } } })!.schema;
      const whole = new RegExp(`^(?:${jsonSchemaRegex(schema)})$`, 'u');
      expect(whole.test('{}')).toBe(true);
      expect(whole.test('{"a": 1}')).toBe(false);
      expect(whole.test('false')).toBe(false);
    }
  });

  it("keeps each tool's references its own under \"required\": definitions moved to the top, a tool's `#` its own root", () => {
    // Pydantic writes $defs for enums and nested models; zod writes `#` for a recursive object.
    const unit = { type: 'function' as const, function: { name: 'unit', parameters: { $defs: { U: { enum: ['c', 'f'] } }, type: 'object', properties: { u: { $ref: '#/$defs/U' } }, required: ['u'] } } };
    const tree = { type: 'function' as const, function: { name: 'tree', parameters: { type: 'object', properties: { v: { type: 'integer', minimum: 0, maximum: 3 }, kids: { type: 'array', maxItems: 2, items: { $ref: '#' } } }, required: ['v', 'kids'] } } };
    const plan = toolCallPlan({ tools: [unit, tree], tool_choice: 'required' })!;
    // As the edge writes it: the array and its call objects do not count against the tree's own nesting.
    const whole = new RegExp(`^(?:${jsonSchemaRegex(plan.schema, { maxDepth: plan.maxDepth })})$`, 'u');
    expect(whole.test('[{"name": "unit", "parameters": {"u": "c"}}]')).toBe(true);
    expect(whole.test('[{"name": "unit", "parameters": {"u": "k"}}]')).toBe(false);
    expect(whole.test('[{"name": "tree", "parameters": {"v": 1, "kids": [{"v": 2, "kids": []}]}}]')).toBe(true);
    // The tree's `#` is the tree, not the array of calls.
    expect(whole.test('[{"name": "tree", "parameters": {"v": 1, "kids": [[{"name": "tree", "parameters": {"v": 2, "kids": []}}]]}}]')).toBe(false);
    // Two tools defining one name differently cannot share the top.
    const other = { type: 'function' as const, function: { name: 'other', parameters: { $defs: { U: { type: 'integer' } }, type: 'object', properties: { u: { $ref: '#/$defs/U' } } } } };
    expect(refusal({ tools: [unit, other], tool_choice: 'required' })).toMatchObject({ param: 'tools.1.function.parameters', message: expect.stringContaining("define 'U' differently") });
  });

  it('writes "required" as an array of calls of the listed functions, one at most without parallel calls', () => {
    const plan = toolCallPlan({ tools: [weather, ping], tool_choice: 'required' })!;
    const whole = new RegExp(`^(?:${jsonSchemaRegex(plan.schema)})$`, 'u');
    expect(whole.test('[{"name": "get_weather", "parameters": {"city": "Paris"}}, {"name": "ping", "parameters": {}}]')).toBe(true);
    expect(whole.test('[]')).toBe(false);
    expect(whole.test('[{"name": "nope", "parameters": {}}]')).toBe(false);
    expect(whole.test('[{"name": "get_weather", "parameters": {}}]')).toBe(false);
    const one = new RegExp(`^(?:${jsonSchemaRegex(toolCallPlan({ tools: [weather, ping], tool_choice: 'required', parallel_tool_calls: false })!.schema)})$`, 'u');
    expect(one.test('[{"name": "ping", "parameters": {}}]')).toBe(true);
    expect(one.test('[{"name": "ping", "parameters": {}}, {"name": "ping", "parameters": {}}]')).toBe(false);
  });

  it('asks nothing of "none", no tools, or an empty list', () => {
    expect(toolCallPlan({})).toBeNull();
    expect(toolCallPlan({ tools: [weather], tool_choice: 'none' })).toBeNull();
    expect(toolCallPlan({ tools: [] })).toBeNull();
  });

  it('takes "auto" (also by default where tools are sent) as "required"\'s calls or text', () => {
    for (const body of [{ tools: [weather, ping] }, { tools: [weather, ping], tool_choice: 'auto' as const }]) {
      const plan = toolCallPlan(body)!;
      expect(plan.mode).toEqual({ kind: 'auto' });
      expect(plan.schema).toEqual(toolCallPlan({ tools: [weather, ping], tool_choice: 'required' })!.schema);
    }
  });

  it('refuses a choice without tools, a name not listed, and two functions of one name', () => {
    expect(refusal({ tools: [ping, ping] })).toMatchObject({ param: 'tools.1.function.name' });
    expect(refusal({ tool_choice: 'required' })).toMatchObject({ param: 'tool_choice', message: 'When using `tool_choice`, `tools` must be set.' });
    expect(refusal({ tools: [weather], tool_choice: { type: 'function', function: { name: 'ping' } } })).toMatchObject({ param: 'tool_choice', message: expect.stringContaining('does not match any of the specified `tools`') });
    expect(refusal({ tools: [ping, ping], tool_choice: 'required' })).toMatchObject({ param: 'tools.1.function.name' });
  });
});

describe("OpenAI's allowed_tools", () => {
  const allowed = (mode: 'auto' | 'required', names: unknown[]): { type: 'allowed_tools'; allowed_tools: { mode: 'auto' | 'required'; tools: unknown[] } } => ({
    type: 'allowed_tools',
    allowed_tools: { mode, tools: names.map((name) => (typeof name === 'string' ? { type: 'function', function: { name } } : name)) },
  });

  it('lets the reply call the allowed functions only, "required" or "auto"', () => {
    for (const mode of ['required', 'auto'] as const) {
      const plan = toolCallPlan({ tools: [weather, ping], tool_choice: allowed(mode, ['ping']) })!;
      expect(plan.mode).toEqual({ kind: mode });
      const whole = new RegExp(`^(?:${jsonSchemaRegex(plan.schema, { maxDepth: plan.maxDepth })})$`, 'u');
      expect(whole.test('[{"name": "ping", "parameters": {}}]')).toBe(true);
      expect(whole.test('[{"name": "get_weather", "parameters": {"city": "Paris"}}]')).toBe(false);
    }
  });

  it("keeps each allowed tool's place in the list: an error in its parameters names it there", () => {
    const bad = { type: 'function' as const, function: { name: 'bad', parameters: { type: 'object', properties: { n: { type: 'integer', multipleOf: 2 } } } } };
    const plan = toolCallPlan({ tools: [weather, bad], tool_choice: allowed('required', ['bad']) })!;
    expect(() => jsonSchemaRegex(plan.schema)).toThrow();
    expect(plan.locate('/$defs/sssd_tool_1/properties/n')).toEqual({ param: 'tools.1.function.parameters', path: '/properties/n' });
    // The tools left out are not written: their schemas cannot fail the request.
    expect(JSON.stringify(toolCallPlan({ tools: [bad, ping], tool_choice: allowed('required', ['ping']) })!.schema)).not.toContain('multipleOf');
  });

  it('refuses an empty list, an entry that is no function, and a name not listed, naming the entry', () => {
    expect(refusal({ tools: [weather], tool_choice: allowed('auto', []) })).toMatchObject({ param: 'tool_choice.allowed_tools.tools' });
    expect(refusal({ tools: [weather], tool_choice: allowed('auto', ['get_weather', { type: 'mcp', server_label: 'x' }]) })).toMatchObject({ param: 'tool_choice.allowed_tools.tools.1', message: expect.stringContaining('functions are the only tools served') });
    expect(refusal({ tools: [weather], tool_choice: allowed('required', ['nope']) })).toMatchObject({ param: 'tool_choice.allowed_tools.tools.0', message: expect.stringContaining("'nope' is not one of the specified `tools`") });
  });

  it('is taken by the request schema, a bad mode refused with the shapes tool_choice takes', () => {
    const body = { model: 'm', messages: [{ role: 'user', content: 'hi' }], tools: [weather] };
    expect(parseOpenAiBody(chatRequestSchema, { ...body, tool_choice: allowed('auto', ['get_weather']) }, 'chat').tool_choice).toEqual(allowed('auto', ['get_weather']));
    expect(() => parseOpenAiBody(chatRequestSchema, { ...body, tool_choice: { type: 'allowed_tools', allowed_tools: { mode: 'sometimes', tools: [] } } }, 'chat')).toThrow(/"type": "allowed_tools"/);
  });
});

describe('tool_choice as a request writes it', () => {
  it('says what a malformed tool_choice should be', () => {
    for (const toolChoice of [{ type: 'function' }, { function: { name: 'f' } }, 'bogus']) {
      const error = refusalOrNull(() => parseOpenAiBody(chatRequestSchema, { model: 'm', messages: [{ role: 'user', content: 'hi' }], tools: [weather], tool_choice: toolChoice }, 'chat'))?.toBody().error ?? null;
      expect(error, JSON.stringify(toolChoice)).toMatchObject({ param: 'tool_choice', message: expect.stringContaining('{"type": "function", "function": {"name": "my_function"}}') });
    }
  });
});

describe('toolCallsOf', () => {
  it("makes a named function's text its arguments, and \"required\"'s array its calls", () => {
    const named = toolCallsOf({ kind: 'named', name: 'get_weather' }, '{"city": "Paris"}')!;
    expect(named).toEqual([{ id: expect.stringMatching(/^chatcmpl-tool-[0-9a-f]{32}$/), type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }]);
    const calls = toolCallsOf({ kind: 'required' }, '[{"name": "get_weather", "parameters": {"city": "Paris"}}, {"name": "ping", "parameters": {}}]', ['a'])!;
    expect(calls.map((c) => [c.id.slice(0, 1), c.function.name, c.function.arguments])).toEqual([
      ['a', 'get_weather', '{"city": "Paris"}'],
      ['c', 'ping', '{}'],
    ]);
    // Cut before the array closed: no calls (the reply stays text).
    expect(toolCallsOf({ kind: 'required' }, '[{"name": "ping", "param')).toBeNull();
    // Arguments as written: numbers JavaScript cannot hold are not rounded, escapes and spacing kept.
    const exact = toolCallsOf({ kind: 'required' }, '[ { "name" : "n", "parameters" : {"n": 12345678901234567891, "x": 1e400, "s": "a\\"}[,"} } ,{"name":"m","parameters":{}}]')!;
    expect(exact.map((c) => [c.function.name, c.function.arguments])).toEqual([
      ['n', '{"n": 12345678901234567891, "x": 1e400, "s": "a\\"}[,"}'],
      ['m', '{}'],
    ]);
  });

  it('ends "required"\'s whole calls with tool_calls (also at max_tokens), a named call and a cut reply as they ended', () => {
    const calls = toolCallsOf({ kind: 'required' }, '[{"name": "ping", "parameters": {}}]');
    expect(toolFinishReason({ kind: 'required' }, 'stop', calls)).toBe('tool_calls');
    expect(toolFinishReason({ kind: 'required' }, 'length', null)).toBe('length');
    // Whole calls where max_tokens fell on the end token: the calls are made.
    expect(toolFinishReason({ kind: 'required' }, 'length', calls)).toBe('tool_calls');
    expect(toolFinishReason({ kind: 'named', name: 'ping' }, 'stop', [])).toBe('stop');
  });
});

describe('"auto": calls where the reply starts with their array, else text', () => {
  const plan = toolCallPlan({ tools: [weather, ping] })!;
  const CALL = '[{"name": "get_weather", "parameters": {"city": "Paris"}}]';

  it('decides at the first character past whitespace', () => {
    expect(autoReplyKind('')).toBe('undecided');
    expect(autoReplyKind(' \n\t\r')).toBe('undecided');
    expect(autoReplyKind(' \n[')).toBe('calls');
    expect(autoReplyKind(' Once [')).toBe('text');
    // Whitespace JSON does not take before an array decides for text, as the language does.
    expect(autoReplyKind('\f[')).toBe('text');
  });

  it('writes a language of any text not starting an array, or whitespace then the calls, as a regex and as a grammar', () => {
    const written = autoToolRegex(jsonSchemaRegex(plan.schema, { maxDepth: plan.maxDepth }));
    // The pool's engine, and JavaScript's (clients read the regex too).
    const regexes = [compileWithEngine(written), new RegExp(`^(?:${written})$`, 'u')];
    const grammar = compileGrammar(autoToolGrammar(jsonSchemaGrammar(plan.schema)));
    const accepts = (text: string): boolean => {
      const bytes = new TextEncoder().encode(text);
      const state = grammar.follow(0, bytes, 0, bytes.length);
      return state >= 0 && grammar.accepting(state);
    };
    const taken = ['', '  ', 'Once upon a time [1]', '\n\nHi', '\f[', `\n ${CALL}`, CALL, '[{"name": "ping", "parameters": {}}, {"name": "ping", "parameters": {}}]'];
    const refused = ['[', ' [1, 2]', '[{"name": "nope", "parameters": {}}]', `${CALL} and more`, '[{"name": "get_weather", "parameters": {}}]'];
    for (const text of taken) {
      for (const regex of regexes) expect(regex.test(text), JSON.stringify(text)).toBe(true);
      expect(accepts(text), JSON.stringify(text)).toBe(true);
    }
    for (const text of refused) {
      for (const regex of regexes) expect(regex.test(text), JSON.stringify(text)).toBe(false);
      expect(accepts(text), JSON.stringify(text)).toBe(false);
    }
    // With (?any-tail) (pools that read it): the same texts, and past the first character any bytes at all.
    const anyTail = compileRegex(autoToolRegex(jsonSchemaRegex(plan.schema, { maxDepth: plan.maxDepth }), true));
    const follows = (bytes: Uint8Array): boolean => {
      const state = anyTail.follow(0, bytes, 0, bytes.length);
      return state >= 0 && anyTail.accepting(state);
    };
    for (const text of taken) expect(follows(new TextEncoder().encode(text)), JSON.stringify(text)).toBe(true);
    for (const text of refused) expect(follows(new TextEncoder().encode(text)), JSON.stringify(text)).toBe(false);
    expect(follows(Uint8Array.from([0x4f, 0x80, 0xc0, 0x5b]))).toBe(true);
    expect(anyTail.anyTail(anyTail.follow(0, Uint8Array.from([0x20, 0x4f]), 0, 2))).toBe(true);
  });

  it('makes a whole array its calls, ending tool_calls; text, or an array cut short, stays text', () => {
    const calls = toolCallsOf({ kind: 'auto' }, ` ${CALL}`)!;
    expect(calls.map((c) => [c.function.name, c.function.arguments])).toEqual([['get_weather', '{"city": "Paris"}']]);
    expect(toolFinishReason({ kind: 'auto' }, 'stop', calls)).toBe('tool_calls');
    expect(toolCallsOf({ kind: 'auto' }, 'Once upon a time')).toBeNull();
    expect(toolCallsOf({ kind: 'auto' }, '[{"name": "ping", "param')).toBeNull();
    // Read, not held to the schema (structured-output.ts): calls only where each names a listed function and passes an object.
    const read = { kind: 'auto' as const, names: ['get_weather', 'ping'] };
    expect(toolCallsOf(read, CALL)!.map((c) => c.function.name)).toEqual(['get_weather']);
    expect(toolCallsOf(read, '[{"name": "nope", "parameters": {}}]')).toBeNull();
    expect(toolCallsOf(read, '[{"name": "ping", "parameters": 1}]')).toBeNull();
    expect(toolCallsOf(read, '[1, 2]')).toBeNull();
    expect(toolFinishReason({ kind: 'auto' }, 'length', null)).toBe('length');
    expect(toolFinishReason({ kind: 'auto' }, 'stop', null)).toBe('stop');
  });
});

describe('strict tools and object parameters (review h136)', () => {
  // Keywords no regex here writes: under "auto" without strict, the calls are read, not followed.
  const typo = { type: 'object', properties: { n: { type: 'integr' } }, required: ['n'], additionalProperties: false };
  const even = { type: 'object', properties: { n: { type: 'integer', multipleOf: 2 } }, required: ['n'], additionalProperties: false };
  const chat = (body: Record<string, unknown>) => parseOpenAiBody(chatRequestSchema, { model: 'm', messages: [{ role: 'user', content: 'hi' }], ...body }, 'chat');
  const chatRefusal = (body: Record<string, unknown>): { param: string | null; message: string } | null => refusalOrNull(() => structuredOutput(chat(body)))?.toBody().error ?? null;
  const responsesRefusal = (body: Record<string, unknown>): { param: string | null; message: string } | null => {
    const err = refusalOrNull(() => structuredOutput(translateResponsesRequest(parseResponsesBody({ model: 'm', input: 'hi', ...body }), []).chat));
    if (err === null) return null;
    const error = inResponsesTerms(err);
    expect(error).toBeInstanceOf(ApiError);
    return (error as ApiError).toBody().error;
  };

  it('refuses under "auto" a strict tool\'s parameters that cannot be followed, as "required" does; without strict reads the calls', () => {
    for (const parameters of [typo, even]) {
      const fn = { type: 'function', function: { name: 'f', parameters } };
      const strictFn = { type: 'function', function: { name: 'f', parameters, strict: true } };
      const required = chatRefusal({ tools: [weather, fn], tool_choice: 'required' });
      expect(required).toMatchObject({ param: 'tools.1.function.parameters' });
      expect(chatRefusal({ tools: [weather, strictFn] })).toEqual(required);
      expect(chatRefusal({ tools: [weather, strictFn], tool_choice: 'auto' })).toEqual(required);
      // strict false, or left out: the calls are read from the reply unconstrained, as before.
      expect(chatRefusal({ tools: [weather, fn] })).toBeNull();
      expect(structuredOutput(chat({ tools: [weather, { type: 'function', function: { name: 'f', parameters, strict: false } }] })).toolCalls).toEqual({ kind: 'auto', names: ['get_weather', 'f'] });
      // The Responses API: its flat tool, the error naming its field there.
      expect(responsesRefusal({ tools: [{ type: 'function', name: 'f', parameters, strict: true }] })).toMatchObject({ param: 'tools.0.parameters' });
      // Left out there, OpenAI tries strict where the schema allows and falls back otherwise: read, as chat's.
      expect(responsesRefusal({ tools: [{ type: 'function', name: 'f', parameters }] })).toBeNull();
    }
    // Strict is per function (review h139): a tool not sent strict whose schema cannot be written beside a strict one
    // is no 400; the strict one's calls are followed, and the other's arguments are any object.
    const strictWeather = { ...weather, function: { ...weather.function, strict: true } };
    const mixed = structuredOutput(chat({ tools: [strictWeather, { type: 'function', function: { name: 'f', parameters: even } }] }));
    expect(mixed.regex ?? mixed.grammar).not.toBeNull();
    expect(mixed.toolCalls).toMatchObject({ kind: 'auto' });
    // A strict tool's calls cannot be followed with the end token ignored: the 400 "required" gives.
    expect(chatRefusal({ tools: [{ ...weather, function: { ...weather.function, strict: true } }], ignore_eos: true })).toMatchObject({ param: 'ignore_eos' });
    expect(chatRefusal({ tools: [weather], ignore_eos: true })).toBeNull();
  });

  it('echoes a Responses tool\'s strict where it was sent', () => {
    const { body, tools } = parseResponsesBody({ model: 'm', input: 'hi', tools: [{ type: 'function', name: 'f', parameters: {}, strict: true }, { type: 'function', name: 'g' }] });
    const echoed = startedResponse('resp_0123456789abcdef01234567', 'm', body, tools).tools;
    expect(echoed[0]).toMatchObject({ name: 'f', strict: true });
    expect(echoed[1]).not.toHaveProperty('strict');
  });

  it('refuses parameters that are no object schema, named, "required" or "auto", on chat and the Responses API', () => {
    for (const parameters of [{ type: 'string' }, { type: 'array', items: { type: 'integer' } }, { type: ['object', 'null'] }, { anyOf: [{ type: 'string' }, { type: 'object' }] }]) {
      const fn = { type: 'function', function: { name: 'f', parameters } };
      for (const toolChoice of [{ type: 'function', function: { name: 'f' } }, 'required', 'auto']) {
        expect(chatRefusal({ tools: [weather, fn], tool_choice: toolChoice }), JSON.stringify([parameters, toolChoice])).toMatchObject({ param: 'tools.1.function.parameters', message: expect.stringContaining('type "object"') });
      }
      expect(responsesRefusal({ tools: [{ type: 'function', name: 'f', parameters }], tool_choice: { type: 'function', name: 'f' } })).toMatchObject({ param: 'tools.0.parameters' });
    }
    // No type: its keywords are an object's, and its arguments an object (a string was let through before).
    const untyped = toolCallPlan({ tools: [{ type: 'function', function: { name: 'f', parameters: { description: 'anything' } } }], tool_choice: { type: 'function', function: { name: 'f' } } })!;
    const whole = new RegExp(`^(?:${jsonSchemaRegex(untyped.schema)})$`, 'u');
    expect(whole.test('{"a": 1}')).toBe(true);
    expect(whole.test('"text"')).toBe(false);
    expect(toolCallPlan({ tools: [{ type: 'function', function: { name: 'f', parameters: { type: ['object'] } } }], tool_choice: 'required' })).not.toBeNull();
  });
});
