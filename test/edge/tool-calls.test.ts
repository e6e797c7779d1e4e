/**
 * Chat's tool calls where the request names what to call: the schema the
 * reply follows (vLLM's), its text made calls, and the refusals in vLLM's
 * words.
 */
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { toolCallPlan, toolCallsOf, toolFinishReason } from '../../edge/tool-calls';
import { jsonSchemaRegex } from '../../shared/structured/json-schema-regex';

const weather = { type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } };
const ping = { type: 'function' as const, function: { name: 'ping' } };

function refusal(body: Parameters<typeof toolCallPlan>[0]): { param: string | null; message: string } {
  try {
    toolCallPlan(body);
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError);
    return (err as ApiError).toBody().error;
  }
  throw new Error('not refused');
}

describe('toolCallPlan', () => {
  it("follows a named function's parameters (none: an object of no properties)", () => {
    const plan = toolCallPlan({ tools: [weather, ping], tool_choice: { type: 'function', function: { name: 'get_weather' } } })!;
    expect(plan).toMatchObject({ mode: { kind: 'named', name: 'get_weather' }, schema: weather.function.parameters, param: 'tools.0.function.parameters' });
    expect(toolCallPlan({ tools: [weather, ping], tool_choice: { type: 'function', function: { name: 'ping' } } })!.schema).toEqual({ type: 'object', properties: {} });
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

  it('refuses "auto" (also by default where tools are sent), a choice without tools, a name not listed, and two functions of one name', () => {
    expect(refusal({ tools: [weather] })).toMatchObject({ param: 'tool_choice', message: expect.stringContaining('"auto" tool choice is not supported') });
    expect(refusal({ tools: [weather], tool_choice: 'auto' })).toMatchObject({ param: 'tool_choice' });
    expect(refusal({ tool_choice: 'required' })).toMatchObject({ param: 'tool_choice', message: 'When using `tool_choice`, `tools` must be set.' });
    expect(refusal({ tools: [weather], tool_choice: { type: 'function', function: { name: 'ping' } } })).toMatchObject({ param: 'tool_choice', message: expect.stringContaining('does not match any of the specified `tools`') });
    expect(refusal({ tools: [ping, ping], tool_choice: 'required' })).toMatchObject({ param: 'tools.1.function.name' });
  });
});

describe('toolCallsOf', () => {
  it("makes a named function's text its arguments, and \"required\"'s array its calls", () => {
    const named = toolCallsOf({ kind: 'named', name: 'get_weather' }, '{"city": "Paris"}')!;
    expect(named).toEqual([{ id: expect.stringMatching(/^chatcmpl-tool-[0-9a-f]{32}$/), type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }]);
    const calls = toolCallsOf({ kind: 'required' }, '[{"name": "get_weather", "parameters": {"city": "Paris"}}, {"name": "ping", "parameters": {}}]', ['a'])!;
    expect(calls.map((c) => [c.id.slice(0, 1), c.function.name, c.function.arguments])).toEqual([
      ['a', 'get_weather', '{"city":"Paris"}'],
      ['c', 'ping', '{}'],
    ]);
    // Cut before the array closed: no calls (the reply stays text).
    expect(toolCallsOf({ kind: 'required' }, '[{"name": "ping", "param')).toBeNull();
  });

  it('ends "required"\'s whole calls with tool_calls, a named call and a cut reply as they ended', () => {
    const calls = toolCallsOf({ kind: 'required' }, '[{"name": "ping", "parameters": {}}]');
    expect(toolFinishReason({ kind: 'required' }, 'stop', calls)).toBe('tool_calls');
    expect(toolFinishReason({ kind: 'required' }, 'length', null)).toBe('length');
    expect(toolFinishReason({ kind: 'named', name: 'ping' }, 'stop', [])).toBe('stop');
  });
});
