/**
 * vLLM's structured outputs at the edge (choice, regex, json, json_object;
 * the older guided_* fields) and OpenAI's response_format, read as vLLM
 * reads them; what cannot be served refused naming the field.
 */
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { anyTailFor, jsonFormFor, structuredOutput, type StructuredOutput } from '../../edge/structured-output';
import { PoolPicker } from '../../edge/pool-picker';
import { compileGrammar } from '../../shared/structured/grammar-automaton';
import { featuresNeeded, POOL_FEATURES, type PoolFeature } from '../../shared/pool-features';
import { chatRequestSchema, completionRequestSchema, parseOpenAiBody } from '../../edge/request-schema';
import { compileWithEngine } from '../support/json-schema-cases';
import { refusalOf, refusalOrNull } from '../support/refusal';

function choicesOf(body: Record<string, unknown>, endpoint: 'completion' | 'chat' = 'completion'): string[] | null {
  if (endpoint === 'chat') return structuredOutput(parseOpenAiBody(chatRequestSchema, { model: 'm', messages: [{ role: 'user', content: 'hi' }], ...body }, 'chat')).choices;
  return structuredOutput(parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'hi', ...body })).choices;
}

const refusal = (body: Record<string, unknown>): { param: string | null; code: string | null; message: string } => refusalOf(() => choicesOf(body)).toBody().error;

describe('choice constraint (vLLM structured_outputs.choice, guided_choice)', () => {
  it('reads structured_outputs.choice, or guided_choice where structured_outputs is not sent, on either endpoint', () => {
    expect(choicesOf({})).toBeNull();
    expect(choicesOf({ structured_outputs: null, guided_choice: null })).toBeNull();
    expect(choicesOf({ structured_outputs: { choice: ['yes', 'no'] } })).toEqual(['yes', 'no']);
    expect(choicesOf({ guided_choice: ['yes', 'no'] }, 'chat')).toEqual(['yes', 'no']);
    // vLLM takes structured_outputs where both are sent.
    expect(choicesOf({ structured_outputs: { choice: ['a'] }, guided_choice: ['b'] })).toEqual(['a']);
    // Its options that change nothing for a choice, and duplicates, are taken.
    expect(choicesOf({ structured_outputs: { choice: ['é', 'é'], disable_fallback: true, whitespace_pattern: null } })).toEqual(['é', 'é']);
  });

  it('refuses an empty list, an empty or half-character choice, no constraint, and ignore_eos, naming the field', () => {
    expect(refusal({ structured_outputs: { choice: [] } })).toMatchObject({ param: 'structured_outputs.choice', code: 'invalid_value', message: expect.stringContaining('at least one choice') });
    expect(refusal({ guided_choice: ['yes', ''] })).toMatchObject({ param: 'guided_choice', message: expect.stringContaining('[1] is empty') });
    expect(refusal({ guided_choice: ['\ud83d'] })).toMatchObject({ param: 'guided_choice', message: expect.stringContaining('lone surrogate') });
    expect(refusal({ guided_choice: 'yes' })).toMatchObject({ param: 'guided_choice' });
    expect(refusal({ guided_choice: ['x'.repeat(70_000)] })).toMatchObject({ param: 'guided_choice', message: expect.stringContaining('65536 UTF-8 bytes') });
    expect(refusal({ structured_outputs: {} })).toMatchObject({ param: 'structured_outputs', code: 'invalid_value' });
    expect(refusal({ guided_choice: ['yes'], ignore_eos: true })).toMatchObject({ param: 'ignore_eos', code: 'invalid_value' });
    // One constraint at a time, as vLLM's StructuredOutputsParams has it.
    expect(refusal({ structured_outputs: { choice: ['yes'], regex: 'y.*' } })).toMatchObject({ param: 'structured_outputs.regex', code: 'invalid_value', message: expect.stringContaining('You can only use one kind of structured outputs constraint') });
  });
});

function structuredOf(body: Record<string, unknown>, endpoint: 'completion' | 'chat' = 'completion'): StructuredOutput {
  if (endpoint === 'chat') return structuredOutput(parseOpenAiBody(chatRequestSchema, { model: 'm', messages: [{ role: 'user', content: 'hi' }], ...body }, 'chat'));
  return structuredOutput(parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'hi', ...body }));
}

const refused = (body: Record<string, unknown>, endpoint: 'completion' | 'chat' = 'completion'): { param: string | null; code: string | null; message: string } =>
  refusalOf(() => structuredOf(body, endpoint)).toBody().error;

/** Whether `text` is a whole match of what the pool is sent. */
function matches(out: StructuredOutput, text: string): boolean {
  return new RegExp(`^(?:${out.regex!})$`, 'u').test(text);
}

const DOG = { type: 'object', properties: { name: { type: 'string' }, age: { type: 'integer', minimum: 0 } }, required: ['name'] };

describe('regex and JSON constraints (vLLM structured_outputs.regex, json, json_object; guided_*; response_format)', () => {
  it('sends the pool one regex for each, read from the field the request used', () => {
    expect(structuredOf({ structured_outputs: { regex: '[0-9]{3}' } })).toEqual({ choices: null, regex: '[0-9]{3}', grammar: null, toolCalls: null, param: 'structured_outputs.regex' });
    expect(structuredOf({ guided_regex: 'a|b' }, 'chat')).toEqual({ choices: null, regex: 'a|b', grammar: null, toolCalls: null, param: 'guided_regex' });
    for (const body of [{ structured_outputs: { json: DOG } }, { structured_outputs: { json: JSON.stringify(DOG) } }, { guided_json: DOG }, { response_format: { type: 'json_schema', json_schema: { name: 'dog', schema: DOG, strict: true } } }]) {
      const out = structuredOf(body, 'chat');
      expect(out.choices).toBeNull();
      expect(matches(out, '{"name": "Rex", "age": 3}'), JSON.stringify(body)).toBe(true);
      expect(matches(out, '{"name":"Rex"}')).toBe(true);
      expect(matches(out, '{"age": 3}')).toBe(false);
      expect(matches(out, '{"name": "Rex", "age": -3}')).toBe(false);
    }
    for (const body of [{ response_format: { type: 'json_object' } }, { structured_outputs: { json_object: true } }, { response_format: { type: 'json_schema', json_schema: { name: 'any' } } }]) {
      const out = structuredOf(body, 'chat');
      expect(matches(out, '{"a": [1, 2, {"b": null}], "c": "d"}'), JSON.stringify(body)).toBe(true);
      expect(matches(out, '[1]')).toBe(false);
    }
    // The whitespace between JSON's tokens, where the request names it.
    const spaced = structuredOf({ structured_outputs: { json: DOG, whitespace_pattern: '[ \\n]{0,2}' } });
    expect(matches(spaced, '{\n"name":\n "Rex"\n}')).toBe(true);
    expect(matches(structuredOf({ guided_json: DOG }), '{\n"name": "Rex"}')).toBe(false);
    // Neutral: text, json_object false, the options that change nothing here.
    expect(structuredOf({ response_format: { type: 'text' } })).toEqual({ choices: null, regex: null, grammar: null, toolCalls: null, param: null });
    expect(structuredOf({ structured_outputs: { regex: 'x', json_object: false, disable_any_whitespace: true, disable_additional_properties: true } }).regex).toBe('x');
    // vLLM reads guided_* only where structured_outputs is not sent.
    expect(structuredOf({ structured_outputs: { regex: 'a' }, guided_json: DOG }).regex).toBe('a');
  });

  it('refuses two constraints, a bad regex or schema, and ignore_eos, naming the field', () => {
    expect(refused({ structured_outputs: { regex: 'a' }, response_format: { type: 'json_object' } }, 'chat')).toMatchObject({ param: 'response_format', message: expect.stringContaining('structured_outputs.regex, response_format') });
    expect(refused({ guided_choice: ['a'], guided_regex: 'a' })).toMatchObject({ param: 'guided_regex', code: 'invalid_value' });
    expect(refused({ structured_outputs: { regex: '(a' } })).toMatchObject({ param: 'structured_outputs.regex', code: 'invalid_value', message: expect.stringMatching(/^structured_outputs\.regex: /) });
    expect(refused({ guided_regex: 'a(?=b)' })).toMatchObject({ param: 'guided_regex', message: expect.stringContaining('lookahead') });
    expect(refused({ structured_outputs: { regex: '((a{1000}){1000}){1000}' } })).toMatchObject({ param: 'structured_outputs.regex', message: expect.stringContaining('too large') });
    expect(refused({ response_format: { type: 'json_schema', json_schema: { name: 'n', schema: { type: 'object', properties: { a: { type: 'integer', multipleOf: 2 } } } } } }, 'chat')).toMatchObject({
      param: 'response_format.json_schema.schema',
      message: expect.stringContaining('/properties/a/multipleOf'),
    });
    expect(refused({ structured_outputs: { json: '{not json' } })).toMatchObject({ param: 'structured_outputs.json', message: expect.stringContaining('JSON text') });
    expect(refused({ guided_json: DOG, guided_whitespace_pattern: '(' })).toMatchObject({ param: 'guided_whitespace_pattern', code: 'invalid_value' });
    expect(refused({ structured_outputs: { regex: 'a', disable_additional_properties: false } })).toMatchObject({ param: 'structured_outputs.disable_additional_properties', code: 'unsupported_parameter' });
    expect(refused({ structured_outputs: { whitespace_pattern: ' ' } })).toMatchObject({ param: 'structured_outputs', message: expect.stringContaining('names no constraint') });
    expect(refused({ response_format: { type: 'json_object' }, ignore_eos: true })).toMatchObject({ param: 'ignore_eos', message: expect.stringContaining('(response_format)') });
    expect(refused({ response_format: { type: 'xml' } }, 'chat')).toMatchObject({ param: 'response_format.type' });
    expect(refused({ structured_outputs: { structural_tag: '{}' } })).toMatchObject({ param: 'structured_outputs.structural_tag', code: 'unsupported_parameter' });
  });

  it('refuses a schema too large, too deep or too expanding to follow with a 400 naming it, quickly, never a 500', () => {
    let nested: Record<string, unknown> = { type: 'integer' };
    for (let i = 0; i < 24; i++) nested = { type: 'array', items: nested };
    let deep: Record<string, unknown> = { type: 'integer' };
    for (let i = 0; i < 1200; i++) deep = { type: 'object', properties: { a: deep }, required: ['a'] };
    const defs: Record<string, unknown> = { L0: { type: 'integer' } };
    for (let k = 1; k <= 9; k++) defs[`L${k}`] = { type: 'array', prefixItems: Array.from({ length: 10 }, () => ({ $ref: `#/$defs/L${k - 1}` })) };
    const fanOut = { type: 'object', properties: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`p${i}`, { $ref: '#' }])) };
    for (const schema of [nested, deep, { $defs: defs, $ref: '#/$defs/L9' }, fanOut, { type: 'string', maxLength: 1000 }, { type: 'array', items: { type: 'string', maxLength: 20 }, maxItems: 1000 }]) {
      const started = performance.now();
      for (const whitespace of [null, '[ ]?']) {
        const body = whitespace === null ? { guided_json: schema } : { guided_json: schema, guided_whitespace_pattern: whitespace };
        const error = refusalOrNull(() => structuredOf(body))?.toBody().error ?? null;
        // Taken (a long string within the automaton's bounds), or refused naming the schema, never the whitespace.
        if (error !== null) expect(error, JSON.stringify(schema).slice(0, 80)).toMatchObject({ param: 'guided_json', message: expect.stringMatching(/^guided_json: /) });
      }
      expect(performance.now() - started, JSON.stringify(schema).slice(0, 80)).toBeLessThan(1500);
    }
    // In the schema's terms where its regex is too large for the automaton, not a regex's offsets.
    expect(refused({ guided_json: { type: 'array', items: { type: 'string', maxLength: 20 }, maxItems: 1000 } })).toMatchObject({ message: expect.stringContaining('the schema is too large to follow') });
    // Many optional properties: groups nested past the engine's depth, said in the schema's terms too.
    const optional = { type: 'object', properties: Object.fromEntries(Array.from({ length: 199 }, (_, i) => [`p${i}`, { type: 'integer' }])) };
    expect(refused({ guided_json: optional })).toMatchObject({ param: 'guided_json', message: expect.stringContaining('the schema is too large to follow') });
    // A whitespace that alone makes the regex too large is refused as the whitespace's fault.
    const eleven = { type: 'object', properties: Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`p${i}`, { type: 'integer' }])) };
    expect(structuredOf({ guided_json: eleven }).regex).not.toBeNull();
    expect(refused({ guided_json: eleven, guided_whitespace_pattern: '[ \\n]{0,1000}' })).toMatchObject({ param: 'guided_whitespace_pattern', message: expect.stringContaining('too large') });
    expect(refused({ response_format: { type: 'json_object' }, guided_whitespace_pattern: '[ \\n]{0,1000}' }, 'chat')).toMatchObject({ param: 'guided_whitespace_pattern' });
    // Repeats of nothing, nested: refused in milliseconds, not built for seconds.
    const started = performance.now();
    expect(refused({ structured_outputs: { regex: '(?:(?:(?:(?:){1000}){1000}){1000}){2}a' } })).toMatchObject({ param: 'structured_outputs.regex', message: expect.stringContaining('too large') });
    expect(refused({ guided_json: { type: 'string', pattern: '(?:(?:(?:){1000}){1000}){1000}' } })).toMatchObject({ param: 'guided_json' });
    expect(performance.now() - started).toBeLessThan(500);
    // A whitespace pattern that is not JSON's whitespace is refused as the whitespace's fault.
    expect(refused({ guided_json: DOG, guided_whitespace_pattern: '\\s*' })).toMatchObject({ param: 'guided_whitespace_pattern' });
    expect(refused({ guided_json: DOG, guided_whitespace_pattern: '[ ]?$' })).toMatchObject({ param: 'guided_whitespace_pattern' });
  });

  it('checks a regex sent again without building its automaton again', () => {
    // Warm: the code that converts and checks has run (a first call anywhere pays for its compilation).
    for (let i = 0; i < 5; i++) structuredOf({ guided_json: { type: 'array', items: { type: 'string', format: 'date' }, maxItems: i + 1 } });
    // A long string: a small regex whose automaton (checked at the edge) is large, tens of thousands of NFA states.
    const schema = { type: 'object', properties: { story: { type: 'string', maxLength: 1500 } }, required: ['story'] };
    let t = performance.now();
    structuredOf({ guided_json: schema });
    const first = performance.now() - t;
    t = performance.now();
    for (let i = 0; i < 10; i++) structuredOf({ guided_json: schema });
    expect((performance.now() - t) / 10).toBeLessThan(first / 2);
  });
});

describe("grammar constraint (vLLM's structured_outputs.grammar, guided_grammar)", () => {
  const completion = (body: Record<string, unknown>): StructuredOutput => structuredOutput(parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'hi', ...body }));
  const chat = (body: Record<string, unknown>): StructuredOutput => structuredOutput(parseOpenAiBody(chatRequestSchema, { model: 'm', messages: [{ role: 'user', content: 'hi' }], ...body }, 'chat'));
  const refusedWith = (read: () => unknown): { param: string | null; code: string | null; message: string } => refusalOf(read).toBody().error;
  const GRAMMAR = 'root ::= "(" root ")" | "x"';

  it("sends the grammar to the pool as its own field, from structured_outputs.grammar or guided_grammar, on either endpoint", () => {
    expect(completion({ structured_outputs: { grammar: GRAMMAR } })).toEqual({ choices: null, regex: null, grammar: GRAMMAR, toolCalls: null, param: 'structured_outputs.grammar' });
    expect(chat({ guided_grammar: GRAMMAR })).toEqual({ choices: null, regex: null, grammar: GRAMMAR, toolCalls: null, param: 'guided_grammar' });
    // structured_outputs is read where both are sent, as vLLM does.
    expect(completion({ structured_outputs: { grammar: GRAMMAR }, guided_grammar: 'root ::= "y"' }).grammar).toBe(GRAMMAR);
    expect(completion({ structured_outputs: { grammar: null, regex: 'a' } })).toMatchObject({ regex: 'a', grammar: null });
  });

  it('refuses a bad grammar before any pool, naming the field and where in it', () => {
    expect(refusedWith(() => completion({ structured_outputs: { grammar: 'root ::= "a" (' } }))).toMatchObject({ param: 'structured_outputs.grammar', code: 'invalid_value', message: expect.stringMatching(/^structured_outputs\.grammar: unbalanced \(.*line 1, column 14/) });
    expect(refusedWith(() => chat({ guided_grammar: 'root ::= x' }))).toMatchObject({ param: 'guided_grammar', message: expect.stringContaining("undefined rule 'x'") });
    expect(refusedWith(() => completion({ guided_grammar: 'root ::= root "a" | "a"' }))).toMatchObject({ param: 'guided_grammar', message: expect.stringContaining('left recursion') });
    expect(refusedWith(() => completion({ guided_grammar: 'start: "a"' }))).toMatchObject({ param: 'guided_grammar', message: expect.stringContaining('only GBNF') });
    // Its first configuration past the bounds (2^20 return stacks): no pool could follow it, so none is sent it.
    const pairs = ['root ::= r1 r1', ...Array.from({ length: 19 }, (_, i) => `r${i + 1} ::= r${i + 2} r${i + 2}`), 'r20 ::= "x" | ""'].join('\n');
    expect(refusedWith(() => completion({ guided_grammar: pairs }))).toMatchObject({ param: 'guided_grammar', code: 'invalid_value', message: expect.stringContaining('configurations in one step') });
    expect(refusedWith(() => completion({ structured_outputs: { grammar: `root ::= "${'a'.repeat(65_537)}"` } }))).toMatchObject({ param: 'structured_outputs.grammar', message: expect.stringContaining('more than the 65536') });
    // One structured output at a time, and not with ignore_eos.
    expect(refusedWith(() => completion({ structured_outputs: { grammar: GRAMMAR, regex: 'x' } }))).toMatchObject({ param: 'structured_outputs.grammar', message: expect.stringContaining('only use one kind') });
    expect(refusedWith(() => chat({ guided_grammar: GRAMMAR, response_format: { type: 'json_object' } }))).toMatchObject({ message: expect.stringContaining('guided_grammar, response_format') });
    expect(refusedWith(() => completion({ guided_grammar: GRAMMAR, ignore_eos: true }))).toMatchObject({ param: 'ignore_eos', message: expect.stringContaining('(guided_grammar)') });
  });
});

/** A pool that answers its health check alone, listing `features` (kept in `servers`, to close): what a picker hears. */
async function healthOnlyPool(servers: Server[], features: readonly string[]): Promise<string> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true, active: 0, queued: 0, load: 0, tokensPerSecond: 0, draining: false, features }));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Runs `check` with two health-only pools, one of this code's features and one from before `lacking`; closes them after. */
async function withPoolsAround(lacking: PoolFeature, check: (current: string, older: string) => Promise<void>): Promise<void> {
  const servers: Server[] = [];
  try {
    const current = await healthOnlyPool(servers, POOL_FEATURES);
    const older = await healthOnlyPool(servers, POOL_FEATURES.filter((f) => f !== lacking));
    await check(current, older);
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}

describe('JSON as a grammar (any depth), where the pools follow grammars', () => {
  const asGrammar = (body: Record<string, unknown>): StructuredOutput => structuredOutput(parseOpenAiBody(chatRequestSchema, { model: 'm', messages: [{ role: 'user', content: 'hi' }], ...body }, 'chat'), 'grammar');
  const follows = (grammar: string, text: string): boolean => {
    const automaton = compileGrammar(grammar);
    const bytes = new TextEncoder().encode(text);
    const state = automaton.follow(0, bytes, 0, bytes.length);
    return state >= 0 && automaton.accepting(state);
  };
  let deep = '1';
  for (let i = 0; i < 12; i++) deep = i % 2 === 0 ? `[${deep}]` : `{"a": ${deep}}`;

  it('sends JSON mode, schemas and tool calls as a grammar a pool takes, objects nested past the regex bound taken', () => {
    for (const body of [{ response_format: { type: 'json_object' } }, { structured_outputs: { json_object: true } }, { guided_json: {} }]) {
      const out = asGrammar(body);
      expect(out).toMatchObject({ choices: null, regex: null, toolCalls: null });
      expect(follows(out.grammar!, `{"deep": ${deep}}`), JSON.stringify(body)).toBe(true);
      expect(follows(out.grammar!, `{"deep": ${deep}`)).toBe(false);
      // The regex form stops at 3 nested containers.
      expect(matches(structuredOf(body, 'chat'), `{"deep": ${deep}}`)).toBe(false);
    }
    const dog = asGrammar({ response_format: { type: 'json_schema', json_schema: { name: 'dog', schema: DOG } } });
    expect(follows(dog.grammar!, '{"name": "Rex", "age": 3}')).toBe(true);
    expect(follows(dog.grammar!, '{"age": 3}')).toBe(false);
    // The request's whitespace, as the regex takes it.
    const spaced = asGrammar({ structured_outputs: { json: DOG, whitespace_pattern: '[ \\n]{0,2}' } });
    expect(follows(spaced.grammar!, '{\n"name":\n "Rex"\n}')).toBe(true);
    // Tool calls: the reply's calls as a grammar, its mode kept.
    const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { x: {} }, required: ['x'] } } }];
    const called = asGrammar({ tools, tool_choice: 'required' });
    expect(called.toolCalls).toEqual({ kind: 'required' });
    expect(follows(called.grammar!, `[{"name": "f", "parameters": {"x": ${deep}}}]`)).toBe(true);
    // Beside a structured output: refused, saying how to get either (under "auto", by default too).
    const both = (body: Record<string, unknown>): string => refusalOrNull(() => structuredOf(body, 'chat'))?.message ?? 'not refused';
    expect(both({ tools, guided_regex: 'a|b' })).toBe('You can only either use constraints for structured outputs or tools, not both. (tool_choice is "auto" by default where tools are sent: send tool_choice "none" for a reply in guided_regex, or leave guided_regex out for tool calls)');
    expect(both({ tools, tool_choice: 'required', guided_regex: 'a' })).toBe('You can only either use constraints for structured outputs or tools, not both.');
    // "auto" where the calls' schema cannot be followed (a keyword not written here), or the end token is ignored:
    // the reply is read, not held: calls where it is a whole array of the listed functions. "required" is refused.
    const unfollowable = [...tools, { type: 'function', function: { name: 'even', parameters: { type: 'object', properties: { n: { type: 'integer', multipleOf: 2 } } } } }];
    for (const body of [{ tools: unfollowable }, { tools, ignore_eos: true }]) {
      expect(structuredOf(body, 'chat')).toEqual({ choices: null, regex: null, grammar: null, toolCalls: { kind: 'auto', names: body.tools.map((t) => t.function.name) }, param: null });
    }
    expect(both({ tools: unfollowable, tool_choice: 'required' })).toContain('multipleOf');
    // A whitespace the request sent that is no regex of the subset is its own 400, under "auto" too, and teaches the
    // edge nothing about the schema: the same tools without it are followed as before (review h106).
    expect(both({ tools, structured_outputs: { whitespace_pattern: '(' } })).toContain('whitespace_pattern');
    expect(structuredOf({ tools }, 'chat').regex).not.toBeNull();
    // Where the pools read (?any-tail): the regex form (GBNF has no such group), the text past its first character
    // left to the model.
    type Body = Parameters<typeof structuredOutput>[0];
    const anyTail = structuredOutput({ tools } as Body, 'grammar', true);
    expect(anyTail).toMatchObject({ grammar: null, toolCalls: { kind: 'auto' }, regex: expect.stringContaining('(?any-tail)') });
    expect(structuredOutput({ tools, tool_choice: 'required' } as Body, 'regex', true).regex).not.toContain('(?any-tail)');
    // "auto" beside JSON (OpenAI's response_format, vLLM's json): the calls' array or that JSON, one regex; JSON that may
    // itself start with an array is refused, naming it.
    const callsOrDog = structuredOf({ tools, response_format: { type: 'json_schema', json_schema: { name: 'dog', schema: DOG } } }, 'chat');
    expect(callsOrDog.toolCalls).toEqual({ kind: 'auto' });
    expect(matches(callsOrDog, '{"name": "Rex", "age": 3}')).toBe(true);
    expect(matches(callsOrDog, '[{"name": "f", "parameters": {"x": 1}}]')).toBe(true);
    // No whitespace before either (a small model held to JSON would write blank lines there for ever).
    expect(matches(callsOrDog, ' [{"name": "f", "parameters": {"x": 1}}]')).toBe(false);
    expect(matches(callsOrDog, 'Once upon a time')).toBe(false);
    expect(matches(callsOrDog, '{"age": 3}')).toBe(false);
    expect(matches(structuredOf({ tools, guided_json: DOG }, 'chat'), '{"name": "Rex"}')).toBe(true);
    expect(matches(structuredOf({ tools, response_format: { type: 'json_object' } }, 'chat'), '{"any": [1]}')).toBe(true);
    expect(both({ tools, response_format: { type: 'json_schema', json_schema: { name: 'list', schema: { type: 'array', items: { type: 'integer' } } } } })).toContain('may start with one too');
    expect(both({ tools, response_format: { type: 'json_object' }, ignore_eos: true })).toContain('ignore_eos');
    // JSON too large to follow alone is its own 400, naming it.
    expect(both({ tools, guided_json: { enum: Array.from({ length: 30_000 }, (_, i) => `word-${i}`) } })).toContain('guided_json');
    expect(both({ tools, guided_json: { type: 'object', properties: { s: { type: 'string', pattern: '^(?:[a-z]{1000}){200}$' } } } })).toContain('guided_json');
    // Tools too large to follow beside JSON: their 400, naming them as "required"'s does (review h107).
    const wide = { type: 'function', function: { name: 'wide', parameters: { type: 'object', properties: { s: { type: 'string', pattern: '^(?:[a-z]{1000}){200}$' } } } } };
    const refusedTools = refusalOrNull(() => structuredOf({ tools: [wide], response_format: { type: 'json_object' } }, 'chat'))?.toBody().error ?? null;
    expect(refusedTools).toMatchObject({ param: 'tools', message: expect.stringContaining('too large') });
    // A regex beside "auto" is not joined: the 400 says how to get either.
    expect(both({ tools, guided_regex: 'a' })).toContain('send tool_choice "none"');
    // "auto" (the default): those calls, or text that starts with no array.
    for (const auto of [asGrammar({ tools }), structuredOf({ tools, tool_choice: 'auto' }, 'chat')]) {
      expect(auto.toolCalls).toEqual({ kind: 'auto' });
      const takes = (text: string): boolean => (auto.grammar !== null ? follows(auto.grammar, text) : matches(auto, text));
      expect(takes(`[{"name": "f", "parameters": {"x": 1}}]`)).toBe(true);
      expect(takes(' Once upon a time')).toBe(true);
      expect(takes('[1]')).toBe(false);
    }
    // A regex, choices or a grammar the request sent are not JSON: as they were.
    expect(asGrammar({ guided_regex: 'a|b' })).toEqual({ choices: null, regex: 'a|b', grammar: null, toolCalls: null, param: 'guided_regex' });
  });

  it('refuses a bad schema as the regex form does, naming the field, and sends the regex where the grammar is past a pool\'s bounds', () => {
    const bad = { response_format: { type: 'json_schema', json_schema: { name: 'n', schema: { type: 'object', properties: { a: { type: 'integer', multipleOf: 2 } } } } } };
    expect(() => asGrammar(bad)).toThrow(ApiError);
    expect(refusalOf(() => asGrammar(bad)).toBody().error).toMatchObject({ param: 'response_format.json_schema.schema', message: expect.stringContaining('/properties/a/multipleOf') });
    expect(() => asGrammar({ guided_json: DOG, guided_whitespace_pattern: '\\s*' })).toThrow(/guided_whitespace_pattern/);
    // 6,000 enum values: a 47 KB regex, a grammar past 64 KiB.
    const wide = asGrammar({ guided_json: { enum: Array.from({ length: 6000 }, (_, i) => `w${i}`) } });
    expect(wide.grammar).toBeNull();
    expect(matches(wide, '"w5999"')).toBe(true);
    // Past both: the schema's 400.
    expect(() => asGrammar({ guided_json: { enum: Array.from({ length: 30_000 }, (_, i) => `word-${i}`) } })).toThrow(/guided_json/);
  });

  it("sends a string's length beside its pattern as the regex form (GBNF cannot say it), sent only to pools that read its length group", async () => {
    const code = { type: 'object', properties: { code: { type: 'string', minLength: 2, maxLength: 4, pattern: '^[A-Z]+$' } }, required: ['code'] };
    const out = asGrammar({ response_format: { type: 'json_schema', json_schema: { name: 'code', schema: code } } });
    expect(out.grammar).toBeNull();
    const regex = compileWithEngine(out.regex!);
    expect(['{"code": "AB"}', '{"code": "ABCD"}'].map((t) => regex.test(t))).toEqual([true, true]);
    expect(['{"code": "A"}', '{"code": "ABCDE"}', '{"code": "ab"}'].map((t) => regex.test(t))).toEqual([false, false, false]);
    const needed = featuresNeeded({ id: 'r', promptIds: [1], maxTokens: 4, regex: out.regex! });
    expect(needed).toEqual(['regex', 'regexJsonLength']);
    // A pool from before the length group would refuse the regex (an unknown `(?` group): it is not tried.
    await withPoolsAround('regexJsonLength', async (current, older) => {
      const mixed = new PoolPicker([older, current], 't');
      expect((await mixed.ordered(undefined, null, needed)).map((c) => c.baseUrl)).toEqual([current]);
    });
  });

  it('goes as a grammar unless a pool heard from lacks the feature, so that only pools that follow grammars are sent it', async () => {
    await withPoolsAround('grammar', async (current, older) => {
      // A fleet of current pools: the grammar form, which only pools with the feature are sent.
      const fleet = new PoolPicker([current], 't');
      expect(await jsonFormFor(fleet)).toBe('grammar');
      const out = structuredOutput(parseOpenAiBody(chatRequestSchema, { model: 'm', messages: [{ role: 'user', content: 'hi' }], response_format: { type: 'json_object' } }, 'chat'), await jsonFormFor(fleet));
      const needed = featuresNeeded({ id: 'r', promptIds: [1], maxTokens: 4, grammar: out.grammar! });
      expect(needed).toContain('grammar');
      const mixed = new PoolPicker([current, older], 't');
      expect((await mixed.ordered(undefined, null, needed)).map((c) => c.baseUrl)).toEqual([current]);
      // Mid-upgrade (a pool heard from lacks it, cold isolate or warm): the regex form, which every pool follows.
      expect(await jsonFormFor(new PoolPicker([current, older], 't'))).toBe('regex');
      expect(await jsonFormFor(mixed)).toBe('regex');
    });
  });

  it('leaves "auto"\'s text to the model past its first character ((?any-tail)) unless a pool heard from cannot read it', async () => {
    await withPoolsAround('regexAnyTail', async (current, older) => {
      expect(await anyTailFor(new PoolPicker([current], 't'))).toBe(true);
      expect(await anyTailFor(new PoolPicker([current, older], 't'))).toBe(false);
      const tools = [{ type: 'function', function: { name: 'f' } }];
      const body = parseOpenAiBody(chatRequestSchema, { model: 'm', messages: [{ role: 'user', content: 'hi' }], tools }, 'chat');
      const needed = featuresNeeded({ id: 'r', promptIds: [1], maxTokens: 4, regex: structuredOutput(body, 'regex', true).regex! });
      expect(needed).toEqual(['regex', 'regexAnyTail']);
      expect((await new PoolPicker([older, current], 't').ordered(undefined, null, needed)).map((c) => c.baseUrl)).toEqual([current]);
      // Mid-upgrade: the text held to whole characters, a regex every pool with `regex` reads.
      expect(featuresNeeded({ id: 'r', promptIds: [1], maxTokens: 4, regex: structuredOutput(body, 'regex', false).regex! })).toEqual(['regex']);
    });
  });
});
