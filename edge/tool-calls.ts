/**
 * Chat's tool calls where the request names what to call: `tool_choice` a
 * named function (its arguments are JSON valid under its `parameters`) or
 * `"required"` (one or more calls of the listed functions). As vLLM serves
 * them without a model-specific tool parser: the reply is a structured
 * output (vLLM's own schemas for them, written into a regex as any JSON
 * schema is, edge/structured-output.ts), and its text becomes the message's
 * `tool_calls`. `"auto"`, where the model itself decides whether to call,
 * needs the model's own tool-call format to parse, which the served
 * llama2.c models have none of: refused, as vLLM refuses it without
 * `--enable-auto-tool-choice`.
 */
import { badRequest } from './api-error';
import { bytesToHex } from './hex';

export interface ToolFunction {
  name: string;
  description?: string | null;
  parameters?: Record<string, unknown> | null;
  strict?: boolean | null;
}

interface ToolFields {
  tools?: Array<{ type: 'function'; function: ToolFunction }> | null;
  tool_choice?: 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } } | null;
  parallel_tool_calls?: boolean | null;
}

/** How the reply becomes tool calls: one call of the named function, or the calls of a JSON array. */
export type ToolCallMode = { kind: 'named'; name: string } | { kind: 'required' };

/** The tool calls a request asks for, with the schema its reply follows (`param`: the field an error in it names); null: none. */
export interface ToolCallPlan {
  mode: ToolCallMode;
  schema: Record<string, unknown>;
  param: string;
}

/** A function's parameters as vLLM reads them: none, an object of no properties. */
function parametersOf(fn: ToolFunction): Record<string, unknown> {
  return fn.parameters ?? { type: 'object', properties: {} };
}

/** The request's tool calls, checked as vLLM checks them (ChatCompletionRequest.check_tool_usage), in its words. */
export function toolCallPlan(body: ToolFields): ToolCallPlan | null {
  // An empty list is none (some clients send it by default; vLLM refuses it, and this server took it before tools were served).
  const tools = body.tools != null && body.tools.length > 0 ? body.tools : null;
  // vLLM's default: "auto" where tools are sent, else "none".
  const choice = body.tool_choice ?? (tools !== null ? 'auto' : 'none');
  if (choice === 'none') return null;
  if (tools === null) throw badRequest('When using `tool_choice`, `tools` must be set.', 'tool_choice', 'invalid_value');
  if (choice === 'auto') {
    throw badRequest(
      '"auto" tool choice is not supported by this server: the model decides whether to call a tool only in a tool-call format of its own, which the served model has none of. Send tool_choice "required" or a named function (the reply is then a call), or "none".',
      'tool_choice',
      'unsupported_parameter',
    );
  }
  const names = new Set<string>();
  for (const [i, tool] of tools.entries()) {
    if (names.has(tool.function.name)) throw badRequest(`tools: two functions are named '${tool.function.name}'.`, `tools.${i}.function.name`, 'invalid_value');
    names.add(tool.function.name);
  }
  if (choice === 'required') {
    // vLLM's schema for it (_get_json_schema_from_tools): an array of {name, parameters}, one of the tools each.
    const items = { anyOf: tools.map((tool) => ({ type: 'object', properties: { name: { type: 'string', enum: [tool.function.name] }, parameters: parametersOf(tool.function) }, required: ['name', 'parameters'] })) };
    const schema: Record<string, unknown> = { type: 'array', minItems: 1, items, ...(body.parallel_tool_calls === false ? { maxItems: 1 } : {}) };
    return { mode: { kind: 'required' }, schema, param: 'tools' };
  }
  const index = tools.findIndex((tool) => tool.function.name === choice.function.name);
  if (index < 0) throw badRequest('The tool specified in `tool_choice` does not match any of the specified `tools`', 'tool_choice', 'invalid_value');
  return { mode: { kind: 'named', name: choice.function.name }, schema: parametersOf(tools[index].function), param: `tools.${index}.function.parameters` };
}

/** A tool call's id, as vLLM makes them (`chatcmpl-tool-` and 32 hex digits). */
export function toolCallId(): string {
  return `chatcmpl-tool-${bytesToHex(crypto.getRandomValues(new Uint8Array(16)))}`;
}

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/**
 * A finished reply's text as tool calls: a named function's arguments are
 * the text; `"required"`'s text is a JSON array of {name, parameters}, each
 * a call whose arguments are its parameters as JSON. Null where the text is
 * no whole array (cut by max_tokens or a stop string): the reply stays
 * text. `ids`: the calls' ids where a stream already sent them.
 */
export function toolCallsOf(mode: ToolCallMode, text: string, ids: readonly string[] = []): ToolCall[] | null {
  if (mode.kind === 'named') return [{ id: ids[0] ?? toolCallId(), type: 'function', function: { name: mode.name, arguments: text } }];
  let calls: unknown;
  try {
    calls = JSON.parse(text);
  } catch {
    return null;
  }
  if (!Array.isArray(calls)) return null;
  return calls.map((call: { name: string; parameters: unknown }, i) => ({ id: ids[i] ?? toolCallId(), type: 'function', function: { name: call.name, arguments: JSON.stringify(call.parameters) } }));
}

/**
 * The finish reason of a reply made tool calls: OpenAI's `tool_calls` where
 * the model was asked for any call (`"required"`) and wrote whole ones; a
 * named function's call ends `stop`, as OpenAI's and vLLM's do.
 */
export function toolFinishReason(mode: ToolCallMode, finishReason: string, calls: readonly ToolCall[] | null): string {
  return mode.kind === 'required' && calls !== null && finishReason === 'stop' ? 'tool_calls' : finishReason;
}
