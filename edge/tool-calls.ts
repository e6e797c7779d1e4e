/**
 * Chat's tool calls where the request names what to call: `tool_choice` a
 * named function (its arguments are JSON valid under its `parameters`) or
 * `"required"` (one or more calls of the listed functions). As vLLM serves
 * them without a model-specific tool parser: the reply is a structured
 * output (vLLM's own schemas for them, written into a regex as any JSON
 * schema is, edge/structured-output.ts), and its text becomes the message's
 * `tool_calls`. `"auto"` (the default where tools are sent), where the
 * model decides whether to call: the served llama2.c models have no
 * tool-call format of their own, so this server reads one, keyed as vLLM's
 * `pythonic` parser keys Llama 3.2's: a reply whose first character past
 * whitespace is `[` is "required"'s array of calls (held to it from there),
 * any other reply is text, streamed as it comes.
 */
import { badRequest } from './api-error';
import { bytesToHex } from './hex';
import { COMBINATORS, DEFAULT_MAX_DEPTH } from '../shared/structured/json-schema-regex';
import { clipped } from './request-schema';

export interface ToolFunction {
  name: string;
  description?: string | null;
  parameters?: Record<string, unknown> | null;
  strict?: boolean | null;
}

/**
 * OpenAI's `allowed_tools` choice: "auto" or "required" over some of the
 * listed tools only (the rest stay listed, as OpenAI keeps them for its
 * prompt cache). Its entries are read in toolCallPlan, each error naming
 * its place.
 */
export interface AllowedToolsChoice {
  type: 'allowed_tools';
  allowed_tools: { mode: 'auto' | 'required'; tools: unknown[] };
}

/** Chat's `tool_choice`, as the request schema lets it through. */
export type ToolChoiceField = 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } } | AllowedToolsChoice;

interface ToolFields {
  tools?: Array<{ type: 'function'; function: ToolFunction }> | null;
  tool_choice?: ToolChoiceField | null;
  parallel_tool_calls?: boolean | null;
}

/** How the reply becomes tool calls: one call of the named function, the calls of a JSON array, or (auto) that array where the reply starts with one, else text. */
export type ToolCallMode =
  | { kind: 'named'; name: string }
  | { kind: 'required' }
  /** `names`: where the calls' schema is not followed (structured-output.ts), the functions a call read from the text may name. */
  | { kind: 'auto'; names?: readonly string[] };

/** Whitespace that "auto" reads past before the character that decides (JSON's: what the array may start with). */
const AUTO_SPACE = ' \t\n\r';

/**
 * What an "auto" reply is, from its text so far: `calls` where its first
 * character past whitespace is `[` (the reply is held to the array of
 * calls), `text` where it is any other, `undecided` while there is none.
 */
export function autoReplyKind(text: string): 'calls' | 'text' | 'undecided' {
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (!AUTO_SPACE.includes(c)) return c === '[' ? 'calls' : 'text';
  }
  return 'undecided';
}

/**
 * An "auto" reply's language, as a regex: text whose first character past
 * whitespace is not `[` (or only whitespace), or whitespace then the calls'
 * array (`calls`, "required"'s regex). `anyTail`: past that first
 * character, any tokens at all (`(?any-tail)`: the pool lifts the mask, so
 * the text is the one the model writes with no tools, tokens that print
 * nothing or no whole character included); else any text.
 */
export function autoToolRegex(calls: string, anyTail = false): string {
  return `[ \\t\\n\\r]*(?:[^ \\t\\n\\r\\[]${anyTail ? '(?any-tail)' : '[\\s\\S]*'})?|[ \\t\\n\\r]*(?:${calls})`;
}

/** The same as a GBNF grammar: "required"'s grammar `calls` (its `root` renamed) under a root that also takes such text. */
export function autoToolGrammar(calls: string): string {
  const renamed = calls.replace(/^root ::=/m, `${AUTO_CALLS_RULE} ::=`);
  return `root ::= [ \\t\\n\\r]* ([^ \\t\\n\\r\\[] .*)? | [ \\t\\n\\r]* ${AUTO_CALLS_RULE}\n${renamed}`;
}

/** "auto"'s array rule (the JSON grammar writer names its rules after schema paths and definitions, none with this prefix). */
const AUTO_CALLS_RULE = 'sssd-auto-tool-calls';

/** The tool calls a request asks for, with the schema its reply follows; null: none. */
export interface ToolCallPlan {
  mode: ToolCallMode;
  schema: Record<string, unknown>;
  /** The field an error in the schema at `path` (a JSON pointer into `schema`) names, and the path within that field. */
  locate(path: string): { param: string; path: string };
  /** Nesting the schema's open values and recursion are written to (json-schema-regex.ts's maxDepth): "required"'s array and call objects do not count against a tool's own. */
  maxDepth: number;
  /** The functions the reply may call (the listed ones, or allowed_tools' part of them). */
  names: readonly string[];
  /**
   * Whether one of them is sent `strict: true`: its calls must follow its
   * `parameters` (OpenAI's strict mode), so under "auto" a schema that
   * cannot be followed is the 400 "required" gives, not read unconstrained.
   */
  strict: boolean;
  /**
   * Beside strict ones, the calls' schema with each tool not sent strict
   * taking any object: what "auto" follows where only such a tool's schema
   * cannot be written (OpenAI's strict is per function: review h139). Null
   * where no tool is strict, or every one is; written only when needed.
   */
  strictOnly?: (() => Record<string, unknown>) | null;
  /** The indexes of the tools sent strict. */
  strictTools?: ReadonlySet<number>;
}


/**
 * A function's parameters as the reply's arguments follow them: none (or an
 * empty object), an object of no properties, `{}`, as vLLM writes it. As
 * OpenAI has them, parameters are a schema of an object (its arguments are
 * one): another `type` (`{type: "string"}` gave `arguments` that were a JSON
 * string) is a 400 naming tool `i`; no `type` is read as `type: "object"`
 * (its keywords apply to an object), unless the schema is a combinator
 * whose branches could be other values, also a 400.
 */
function parametersOf(fn: ToolFunction, i: number): Record<string, unknown> {
  const params = fn.parameters;
  if (!params || Object.keys(params).length === 0) return { type: 'object', properties: {}, additionalProperties: false };
  const type = params.type;
  const isObject = type === 'object' || (Array.isArray(type) && type.length === 1 && type[0] === 'object');
  if (isObject) return params;
  // Keywords that let a value be other than an object whatever `type` says (json-schema-regex.ts takes no `type` beside them).
  const combinator = COMBINATORS.find((k) => k in params);
  if (type === undefined && combinator === undefined) return { ...params, type: 'object' };
  const got = type !== undefined ? `type ${clippedJson(type)}` : `${combinator} with no type`;
  throw badRequest(`tools.${i}.function.parameters: a function's parameters must be a JSON schema of type "object" (the call's arguments are a JSON object), not ${got}.`, `tools.${i}.function.parameters`, 'invalid_value');
}

function clippedJson(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return clipped(text, 60);
}

/** Where "required"'s schema keeps tool i's parameters (their own `#` points there). */
const toolRoot = (i: number): string => `sssd_tool_${i}`;

/** `value` with every `$ref` made to point into the combined schema's `$defs`: `#` at `root`, `#/definitions/x` at `#/$defs/x`. */
function rebased(value: unknown, root: string): unknown {
  if (Array.isArray(value)) return value.map((v) => rebased(v, root));
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    if (key === '$ref' && typeof v === 'string') out[key] = v === '#' ? `#/$defs/${root}` : v.replace(/^#\/definitions\//, '#/$defs/');
    else out[key] = rebased(v, root);
  }
  return out;
}

/**
 * vLLM's schema for "required" (_get_json_schema_from_tools): an array of
 * {name, parameters}, one of the tools each. Each tool's parameters are a
 * schema of their own, whose `$ref`s point into it: its definitions go to
 * the top, as vLLM moves them (two tools defining one name differently are
 * refused), and the tool's own root to a definition of its own.
 */
function requiredSchema(tools: ReadonlyArray<{ function: ToolFunction }>, single: boolean, allowed: ReadonlySet<string> | null): Record<string, unknown> {
  const defs: Record<string, unknown> = {};
  const owner = new Map<string, number>();
  // A tool keeps its place in the list (its definitions' names and errors say it) where allowed_tools leaves others out.
  const items = tools.flatMap((tool, i) => {
    if (allowed !== null && !allowed.has(tool.function.name)) return [];
    const { $defs, definitions, ...params } = parametersOf(tool.function, i) as Record<string, unknown> & { $defs?: Record<string, unknown>; definitions?: Record<string, unknown> };
    for (const [name, def] of [...Object.entries(definitions ?? {}), ...Object.entries($defs ?? {})]) {
      const written = rebased(def, toolRoot(i));
      if (owner.has(name) && JSON.stringify(defs[name]) !== JSON.stringify(written)) {
        throw badRequest(`tools: tool_choice "required" puts every tool's definitions together, and tools ${owner.get(name)} and ${i} define '${name}' differently; rename one.`, `tools.${i}.function.parameters`, 'invalid_value');
      }
      owner.set(name, i);
      defs[name] = written;
    }
    defs[toolRoot(i)] = rebased(params, toolRoot(i));
    return [{ type: 'object', properties: { name: { type: 'string', enum: [tool.function.name] }, parameters: { $ref: `#/$defs/${toolRoot(i)}` } }, required: ['name', 'parameters'] }];
  });
  return { $defs: defs, type: 'array', minItems: 1, items: { anyOf: items }, ...(single ? { maxItems: 1 } : {}) };
}

/** The request's tool calls, checked as vLLM checks them (ChatCompletionRequest.check_tool_usage), in its words. */
export function toolCallPlan(body: ToolFields): ToolCallPlan | null {
  // An empty list is none (some clients send it by default; vLLM refuses it, and this server took it before tools were served).
  const tools = body.tools != null && body.tools.length > 0 ? body.tools : null;
  // vLLM's default: "auto" where tools are sent, else "none".
  const asked = body.tool_choice ?? (tools !== null ? 'auto' : 'none');
  if (asked === 'none') return null;
  if (tools === null) throw badRequest('When using `tool_choice`, `tools` must be set.', 'tool_choice', 'invalid_value');
  const names = new Set<string>();
  for (const [i, tool] of tools.entries()) {
    if (names.has(tool.function.name)) throw badRequest(`tools: two functions are named '${tool.function.name}'.`, `tools.${i}.function.name`, 'invalid_value');
    names.add(tool.function.name);
    // Every listed tool's, as OpenAI checks them, whichever the reply may call.
    parametersOf(tool.function, i);
  }
  const allowed = typeof asked === 'object' && asked.type === 'allowed_tools' ? allowedNames(asked, names) : null;
  const choice = typeof asked === 'object' && asked.type === 'allowed_tools' ? asked.allowed_tools.mode : asked;
  if (choice === 'required' || choice === 'auto') {
    return {
      mode: { kind: choice },
      names: allowed !== null ? [...allowed] : [...names],
      strict: tools.some((tool) => tool.function.strict === true && (allowed === null || allowed.has(tool.function.name))),
      schema: requiredSchema(tools, body.parallel_tool_calls === false, allowed),
      strictTools: new Set(tools.flatMap((tool, i) => (tool.function.strict === true ? [i] : []))),
      strictOnly:
        tools.some((tool) => tool.function.strict === true) && tools.some((tool) => tool.function.strict !== true)
          ? () =>
              requiredSchema(
                tools.map((tool) => (tool.function.strict === true ? tool : { ...tool, function: { ...tool.function, parameters: { type: 'object' } } })),
                body.parallel_tool_calls === false,
                allowed,
              )
          : null,
      maxDepth: DEFAULT_MAX_DEPTH + 2,
      // An error inside a tool's own parameters names that tool, at its path there.
      locate: (path) => {
        const at = /^\/\$defs\/sssd_tool_(\d+)(\/.*)?$/.exec(path);
        return at ? { param: `tools.${at[1]}.function.parameters`, path: at[2] ?? '' } : { param: 'tools', path };
      },
    };
  }
  const index = tools.findIndex((tool) => tool.function.name === choice.function.name);
  if (index < 0) throw badRequest('The tool specified in `tool_choice` does not match any of the specified `tools`', 'tool_choice', 'invalid_value');
  return { mode: { kind: 'named', name: choice.function.name }, names: [choice.function.name], strict: tools[index].function.strict === true, schema: parametersOf(tools[index].function, index), locate: (path) => ({ param: `tools.${index}.function.parameters`, path }), maxDepth: DEFAULT_MAX_DEPTH };
}

/** The functions an allowed_tools choice lets the reply call: each entry a listed function's, by name; a 400 naming the entry otherwise. */
function allowedNames(choice: AllowedToolsChoice, listed: ReadonlySet<string>): Set<string> {
  const entries = choice.allowed_tools.tools;
  const param = 'tool_choice.allowed_tools.tools';
  if (entries.length === 0) throw badRequest('tool_choice.allowed_tools.tools must name at least one tool.', param, 'invalid_value');
  const names = new Set<string>();
  for (const [i, entry] of entries.entries()) {
    const fn = entry as { type?: unknown; function?: { name?: unknown } | null } | null;
    if (typeof fn !== 'object' || fn === null || fn.type !== 'function' || typeof fn.function !== 'object' || fn.function === null || typeof fn.function.name !== 'string') {
      throw badRequest(`${param}.${i}: each allowed tool is a function, named as in \`tools\` (functions are the only tools served).`, `${param}.${i}`, 'invalid_value');
    }
    if (!listed.has(fn.function.name)) throw badRequest(`${param}.${i}: '${fn.function.name}' is not one of the specified \`tools\`.`, `${param}.${i}`, 'invalid_value');
    names.add(fn.function.name);
  }
  return names;
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
  let calls = mode.kind === 'auto' && autoReplyKind(text) !== 'calls' ? null : requiredCalls(text);
  // Not held to the calls' schema: an array is calls only where each names a listed function and passes it an object.
  if (calls !== null && mode.kind === 'auto' && mode.names !== undefined) {
    const names = mode.names;
    if (!calls.every((call) => names.includes(call.name) && isJsonObject(call.arguments))) calls = null;
  }
  return calls && calls.map((call, i) => ({ id: ids[i] ?? toolCallId(), type: 'function', function: { name: call.name, arguments: call.arguments } }));
}

/**
 * "required"'s text, `[{"name": ..., "parameters": ...}, ...]`, read as
 * calls whose arguments are each `parameters` value's own text: as written,
 * where parsing and writing it again would round a number JavaScript cannot
 * hold (12345678901234567891, 1e400). Null where the text is no whole array
 * of such objects.
 */
function requiredCalls(text: string): Array<{ name: string; arguments: string }> | null {
  let calls: unknown;
  try {
    calls = JSON.parse(text);
  } catch {
    return null;
  }
  // Each an object naming its function and passing parameters (a reply not held to the schema may be any array).
  const isCall = (call: unknown): boolean => typeof call === 'object' && call !== null && !Array.isArray(call) && typeof (call as { name?: unknown }).name === 'string' && 'parameters' in call;
  if (!Array.isArray(calls) || calls.length === 0 || !calls.every(isCall)) return null;
  const out: Array<{ name: string; arguments: string }> = [];
  let at = skipSpace(text, 0) + 1; // past '['
  for (const call of calls as Array<{ name?: unknown }>) {
    at = skipSpace(text, at);
    if (text[at] === ',') at = skipSpace(text, at + 1);
    // The object's members, each key then its value's span; `parameters`' span is the arguments.
    at = skipSpace(text, at + 1); // past '{'
    let args: string | null = null;
    while (text[at] !== '}') {
      if (text[at] === ',') at = skipSpace(text, at + 1);
      const keyEnd = valueEnd(text, at);
      const key = JSON.parse(text.slice(at, keyEnd)) as string;
      at = skipSpace(text, skipSpace(text, keyEnd) + 1); // past ':'
      const end = valueEnd(text, at);
      if (key === 'parameters') args = text.slice(at, end);
      at = skipSpace(text, end);
    }
    at++;
    if (typeof call.name !== 'string' || args === null) return null;
    out.push({ name: call.name, arguments: args });
  }
  return out;
}

function isJsonObject(text: string): boolean {
  const value: unknown = JSON.parse(text);
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function skipSpace(text: string, at: number): number {
  while (at < text.length && (text[at] === ' ' || text[at] === '\n' || text[at] === '\t' || text[at] === '\r')) at++;
  return at;
}

/** Where the JSON value starting at `at` ends (the text is known to be JSON). */
function valueEnd(text: string, at: number): number {
  const c = text[at];
  if (c === '"') {
    let i = at + 1;
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    return i + 1;
  }
  if (c === '{' || c === '[') {
    let depth = 0;
    for (let i = at; i < text.length; i++) {
      const d = text[i];
      if (d === '"') i = valueEnd(text, i) - 1;
      else if (d === '{' || d === '[') depth++;
      else if ((d === '}' || d === ']') && --depth === 0) return i + 1;
    }
    return text.length;
  }
  let i = at;
  while (i < text.length && !',}] \n\t\r'.includes(text[i])) i++;
  return i;
}

/**
 * The finish reason of a reply made tool calls: OpenAI's `tool_calls` where
 * the model was asked for any call (`"required"`, `"auto"`) and wrote whole ones, also
 * where `max_tokens` fell on the end token that alone could follow them (the
 * AI SDK runs no call of a reply that ended `length`); a named function's
 * call ends `stop`, as OpenAI's and vLLM's do.
 */
export function toolFinishReason(mode: ToolCallMode, finishReason: string, calls: readonly ToolCall[] | null): string {
  return mode.kind !== 'named' && calls !== null && (finishReason === 'stop' || finishReason === 'length') ? 'tool_calls' : finishReason;
}
