/**
 * The edge soak's checks of one reply against what its request asked for
 * (pure: a reply read, the request's fields; each returns what broke, or
 * null): a choice constraint's text, a regex's, JSON schema's or grammar's, vLLM's
 * return_token_ids against usage and log-probabilities, a completion's
 * default max_tokens, truncation_side, and a refusal naming its field.
 */
import { compileGrammar, type GrammarAutomaton } from '../../shared/structured/grammar-automaton';
import { jsonObjectRegex, jsonSchemaRegex } from '../../shared/structured/json-schema-regex';
import { DEAD } from '../../shared/structured/text-automaton';

/** One choice of a reply, whole or streamed, as read. */
export interface ReadChoice {
  text: string;
  finishReason: string;
  /** return_token_ids: the choice's output ids (a stream's concatenated). */
  tokenIds?: number[];
  /** return_token_ids: the prompt's ids (completions: in the choice; chat: the response's). */
  promptTokenIds?: number[];
  /** Log-probabilities' tokens, in order (with return_tokens_as_token_ids, `token_id:<id>`). */
  logprobTokens?: string[];
  /** Chat's tool calls (a stream's put together by their index). */
  toolCalls?: Array<{ name: string; arguments: string }>;
}

export interface ReadReply {
  choices: ReadChoice[];
  /** The whole request's usage (a stream's last, choices-less chunk), where sent. */
  usage?: { prompt_tokens: number; completion_tokens: number };
}

interface RawChoice {
  index?: number;
  text?: string;
  message?: { content?: string | null; tool_calls?: Array<{ function: { name: string; arguments: string } }> };
  delta?: { content?: string | null; tool_calls?: Array<{ index: number; function?: { name?: string; arguments?: string } }> };
  finish_reason?: string | null;
  token_ids?: number[];
  prompt_token_ids?: number[];
  logprobs?: { tokens?: string[]; content?: Array<{ token: string }> } | null;
}
interface RawReply {
  choices?: RawChoice[];
  usage?: { prompt_tokens: number; completion_tokens: number } | null;
  prompt_token_ids?: number[];
}

function logprobTokensOf(c: RawChoice): string[] | undefined {
  if (!c.logprobs) return undefined;
  return c.logprobs.tokens ?? c.logprobs.content?.map((t) => t.token);
}

/** A reply's choices (whole JSON, or an SSE stream's chunks put together); null when it cannot be read. */
export function readReply(text: string, streamed: boolean): ReadReply | null {
  try {
    if (!streamed) {
      const json = JSON.parse(text) as RawReply;
      if (!Array.isArray(json.choices)) return null;
      return {
        choices: json.choices.map((c) => ({
          text: c.text ?? c.message?.content ?? '',
          finishReason: c.finish_reason ?? '',
          ...(c.token_ids ? { tokenIds: c.token_ids } : {}),
          ...((c.prompt_token_ids ?? json.prompt_token_ids) ? { promptTokenIds: c.prompt_token_ids ?? json.prompt_token_ids } : {}),
          ...(logprobTokensOf(c) ? { logprobTokens: logprobTokensOf(c) } : {}),
          ...(c.message?.tool_calls ? { toolCalls: c.message.tool_calls.map((t) => ({ name: t.function.name, arguments: t.function.arguments })) } : {}),
        })),
        ...(json.usage ? { usage: json.usage } : {}),
      };
    }
    const choices: ReadChoice[] = [];
    let usage: ReadReply['usage'];
    for (const line of text.split('\n')) {
      if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
      const chunk = JSON.parse(line.slice(6)) as RawReply;
      if (chunk.usage && (chunk.choices ?? []).length === 0) usage = chunk.usage;
      for (const c of chunk.choices ?? []) {
        const i = c.index ?? 0;
        const choice = (choices[i] ??= { text: '', finishReason: '' });
        choice.text += c.text ?? c.delta?.content ?? '';
        if (c.finish_reason) choice.finishReason = c.finish_reason;
        if (c.token_ids) choice.tokenIds = [...(choice.tokenIds ?? []), ...c.token_ids];
        const prompt = c.prompt_token_ids ?? chunk.prompt_token_ids;
        if (prompt && !choice.promptTokenIds) choice.promptTokenIds = prompt;
        const tokens = logprobTokensOf(c);
        if (tokens) choice.logprobTokens = [...(choice.logprobTokens ?? []), ...tokens];
        for (const d of c.delta?.tool_calls ?? []) {
          const call = ((choice.toolCalls ??= [])[d.index] ??= { name: '', arguments: '' });
          call.name += d.function?.name ?? '';
          call.arguments += d.function?.arguments ?? '';
        }
      }
    }
    for (let i = 0; i < choices.length; i++) choices[i] ??= { text: '', finishReason: '' };
    return { choices, ...(usage ? { usage } : {}) };
  } catch {
    return null;
  }
}

/**
 * A choice constraint's promise: a reply that ended (`stop`) is one of the
 * choices; one cut (`length`, or by a stop string or stop id, `cutEarly`) the
 * start of one.
 */
export function choiceProblem(choice: ReadChoice, choices: readonly string[], cutEarly: boolean): string | null {
  const whole = choice.finishReason === 'stop' && !cutEarly;
  if (whole ? choices.includes(choice.text) : choices.some((c) => c.startsWith(choice.text))) return null;
  return `${JSON.stringify(choice.text)} (finish_reason ${choice.finishReason}) is ${whole ? 'not one' : 'the start of none'} of the choices ${JSON.stringify(choices).slice(0, 200)}`;
}

/**
 * A request's regex, schema or JSON-mode constraint, as the soak checks it:
 * the regex the edge sends the pool, and whether the text is JSON; or its
 * grammar's automaton (no RegExp holds a context-free language).
 */
export type StructuredCheck = { kind: 'regex' | 'json schema' | 'json object'; regex: RegExp } | { kind: 'grammar'; grammar: GrammarAutomaton };

/** Grammars compiled so far, by their text: the soak sends a few, many times each. */
const grammars = new Map<string, GrammarAutomaton>();
const MAX_GRAMMARS_KEPT = 32;

function grammarOf(text: string): GrammarAutomaton {
  let grammar = grammars.get(text);
  if (!grammar) {
    if (grammars.size >= MAX_GRAMMARS_KEPT) grammars.clear();
    grammar = compileGrammar(text);
    grammars.set(text, grammar);
  }
  return grammar;
}

/**
 * One code point of a JSON string's content, however written, for the checks' own reading of a length: raw, a short
 * escape, `\u` (either case), an escaped surrogate pair (never read as two: a high `\u` alone only where no low one follows).
 */
const ANY_CODE_POINT = '(?:\\\\u[dD][89abAB][0-9a-fA-F]{2}\\\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\\\u(?![dD][89abAB][0-9a-fA-F]{2}\\\\u[dD][c-fC-F])[0-9a-fA-F]{4}|\\\\["\\\\/bfnrt]|[^"\\\\\\x00-\\x1F])';

/**
 * A schema's regex as JavaScript reads it, checked apart from the engine the pools share: this server's
 * `(?json-length{m,n}:X)` group, always a string's whole content, as a lookahead that counts the content's code points
 * up to the closing quote, then X: `(?=(?:CP){m,n}")(?:X)`.
 */
export function jsReadable(regex: string): string {
  return regex.replace(/\(\?json-length\{(\d+)(,?)(\d*)\}:/g, (_, min: string, comma: string, max: string) => `(?=${ANY_CODE_POINT}{${min}${comma}${max}}")(?:`);
}

/** The structured output a soak body asks for (not choices), or null. */
export function structuredOf(body: Record<string, unknown>): StructuredCheck | null {
  const so = body.structured_outputs as { regex?: string; json?: unknown; json_object?: boolean; grammar?: string } | undefined;
  const format = body.response_format as { type?: string; json_schema?: { schema?: unknown } } | undefined;
  const whole = (regex: string) => new RegExp(`^(?:${jsReadable(regex)})$`, 'u');
  const regex = so?.regex ?? (body.guided_regex as string | undefined);
  if (regex !== undefined) return { kind: 'regex', regex: whole(regex) };
  const grammar = so?.grammar ?? (body.guided_grammar as string | undefined);
  if (grammar !== undefined) return { kind: 'grammar', grammar: grammarOf(grammar) };
  const schema = so?.json ?? body.guided_json ?? format?.json_schema?.schema;
  if (schema !== undefined) return { kind: 'json schema', regex: whole(jsonSchemaRegex(typeof schema === 'string' ? JSON.parse(schema) : schema)) };
  if (so?.json_object === true || format?.type === 'json_object') return { kind: 'json object', regex: whole(jsonObjectRegex()) };
  return null;
}

const utf8 = new TextEncoder();

/**
 * A grammar's promise: a reply that ended is a whole sentence of it; one cut
 * (by length, a stop string or id) the start of one. A character split at
 * the cut (U+FFFD at the end) is no verdict on its bytes: left off.
 */
function grammarProblem(text: string, grammar: GrammarAutomaton, whole: boolean): string | null {
  const bytes = utf8.encode(whole ? text : text.replace(/\uFFFD+$/u, ''));
  const state = grammar.follow(0, bytes, 0, bytes.length);
  if (state === DEAD) return `${JSON.stringify(text).slice(0, 200)} is the start of no sentence of the grammar`;
  if (whole && !grammar.accepting(state)) return `${JSON.stringify(text).slice(0, 200)} (finish_reason stop) is only the start of a sentence of the grammar`;
  return null;
}

/**
 * A structured output's promise: a reply that ended (`stop`, not by a stop
 * string or id) matches the regex whole, and for JSON parses as JSON (an
 * object, for JSON mode); one cut is not checked (the start of a match). A
 * grammar's: a sentence of it, the start of one where cut.
 */
export function structuredProblem(choice: ReadChoice, check: StructuredCheck, cutEarly: boolean): string | null {
  const whole = choice.finishReason === 'stop' && !cutEarly;
  if (check.kind === 'grammar') return grammarProblem(choice.text, check.grammar, whole);
  if (!whole) return null;
  if (!check.regex.test(choice.text)) return `${JSON.stringify(choice.text).slice(0, 200)} (finish_reason stop) does not match`;
  if (check.kind === 'regex') return null;
  let value: unknown;
  try {
    value = JSON.parse(choice.text);
  } catch {
    return `${JSON.stringify(choice.text).slice(0, 200)} (finish_reason stop) is not JSON`;
  }
  if (check.kind === 'json object' && (typeof value !== 'object' || value === null || Array.isArray(value))) return `${JSON.stringify(choice.text).slice(0, 200)} is JSON but no object`;
  return null;
}

/** Chat's tool_choice as the soak sends it: "required", "auto" (sent, or the default where tools are) or a named function. */
export type ToolChoice = 'required' | 'auto' | { type: 'function'; function: { name: string } };

/**
 * Tool calls' promise: a reply that ended whole (a named call `stop`,
 * "required"'s `tool_calls`; not cut by a stop string or id) carries its
 * calls, of the listed functions (the named one), one at most without
 * parallel calls, each with arguments that are a JSON object its function's
 * parameters take (the regex the edge writes them into, and JSON.parse).
 * "auto"'s reply is such calls where it starts (past whitespace) with `[`,
 * and text that does not start so otherwise.
 */
export function toolCallsProblem(choice: ReadChoice, toolChoice: ToolChoice, tools: ReadonlyArray<{ function: { name: string; parameters?: unknown } }>, single: boolean, cutEarly: boolean): string | null {
  if (toolChoice === 'auto' && (choice.toolCalls ?? []).length === 0) {
    if (choice.finishReason === 'tool_calls') return 'finish_reason tool_calls with no tool_calls';
    // An array that never closed (cut) stays text; one that ended whole was made calls.
    if (!cutEarly && choice.finishReason !== 'length' && /^[ \t\n\r]*\[/.test(choice.text)) return `text that starts an array ended ${choice.finishReason}, not made calls: ${JSON.stringify(choice.text.slice(0, 120))}`;
    return null;
  }
  const whole = toolChoice === 'required' || toolChoice === 'auto' ? 'tool_calls' : 'stop';
  if (cutEarly || choice.finishReason !== whole) return choice.finishReason === 'length' || cutEarly ? null : `finish_reason ${choice.finishReason}, not ${whole}`;
  const calls = choice.toolCalls ?? [];
  if (calls.length === 0) return 'no tool_calls';
  if (single && calls.length > 1) return `${calls.length} calls without parallel_tool_calls`;
  for (const call of calls) {
    const fn = tools.find((t) => t.function.name === call.name);
    if (!fn) return `a call of '${call.name}', no listed function`;
    if (typeof toolChoice !== 'string' && call.name !== toolChoice.function.name) return `a call of '${call.name}', not the named '${toolChoice.function.name}'`;
    let value: unknown;
    try {
      value = JSON.parse(call.arguments);
    } catch {
      return `${call.name}'s arguments are not JSON: ${call.arguments.slice(0, 120)}`;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return `${call.name}'s arguments are no object`;
    const regex = new RegExp(`^(?:${jsReadable(jsonSchemaRegex(fn.function.parameters ?? { type: 'object', properties: {} }))})$`, 'u');
    if (!regex.test(call.arguments)) return `${call.name}'s arguments do not follow its parameters: ${call.arguments.slice(0, 120)}`;
  }
  return null;
}

/**
 * return_token_ids' promise: every choice carries its ids, together as many
 * as usage.completion_tokens counts, the prompt's as many as
 * usage.prompt_tokens; ids named by log-probabilities
 * (return_tokens_as_token_ids) are the first of the choice's ids, after the
 * prompt's where `echo` scored them too.
 */
export function tokenIdsProblem(reply: ReadReply, echo = false): string | null {
  let total = 0;
  for (const [i, c] of reply.choices.entries()) {
    if (!Array.isArray(c.tokenIds)) return `choice ${i} has no token_ids`;
    if (!Array.isArray(c.promptTokenIds)) return `choice ${i} has no prompt_token_ids`;
    if (c.tokenIds.some((id) => !Number.isInteger(id) || id < 0)) return `choice ${i}'s token_ids hold a non-id: ${JSON.stringify(c.tokenIds).slice(0, 120)}`;
    total += c.tokenIds.length;
    if (reply.usage && c.promptTokenIds.length !== reply.usage.prompt_tokens) return `choice ${i}: ${c.promptTokenIds.length} prompt_token_ids, usage.prompt_tokens ${reply.usage.prompt_tokens}`;
    if (c.logprobTokens && c.logprobTokens.every((t) => t.startsWith('token_id:'))) {
      const named = c.logprobTokens.map((t) => Number(t.slice('token_id:'.length)));
      const ids = echo ? [...c.promptTokenIds, ...c.tokenIds] : c.tokenIds;
      if (named.length > ids.length || named.some((id, k) => id !== ids[k]) || (echo && named.length < c.promptTokenIds.length)) {
        return `choice ${i}: log-probabilities name ${JSON.stringify(named).slice(0, 120)}, token_ids ${JSON.stringify(c.tokenIds).slice(0, 120)}`;
      }
    }
  }
  if (reply.usage && total !== reply.usage.completion_tokens) return `${total} token_ids in all, usage.completion_tokens ${reply.usage.completion_tokens}`;
  return null;
}

/**
 * return_token_ids' ids agree with the text: the prompt's ids and the
 * choice's, read back by echo (`echoWhole`), are the prompt's read alone
 * (`echoPrompt`) and then the choice's text. Only for a choice no stop string
 * or stop id cut (the end tokens print nothing); null too where a character
 * is split at the join (U+FFFD), which neither side can be held to.
 */
export function idsTextProblem(text: string, echoWhole: string, echoPrompt: string): string | null {
  if (echoPrompt.includes('\uFFFD') || echoWhole.includes('\uFFFD') || text.includes('\uFFFD')) return null;
  if (echoWhole === echoPrompt + text) return null;
  return `the ids read back give ${JSON.stringify(echoWhole.startsWith(echoPrompt) ? echoWhole.slice(echoPrompt.length) : echoWhole).slice(0, 200)}, the reply's text is ${JSON.stringify(text).slice(0, 200)}`;
}

/** A reply with no max_tokens sent: at most `limit` tokens per choice (a completion's default 16). */
export function maxTokensProblem(reply: ReadReply, limit: number): string | null {
  for (const [i, c] of reply.choices.entries()) {
    if (c.tokenIds && c.tokenIds.length > limit) return `choice ${i}: ${c.tokenIds.length} token_ids past the default max_tokens ${limit}`;
  }
  if (reply.usage && reply.usage.completion_tokens > limit * reply.choices.length) {
    return `usage.completion_tokens ${reply.usage.completion_tokens} past ${reply.choices.length} choice(s) of the default max_tokens ${limit}`;
  }
  return null;
}

/**
 * truncate_prompt_tokens' promise: of the prompt's ids read whole (`full`),
 * `kept` are the last k ("left"; a completion's text prompt its BOS and the
 * last k - 1, `bosKept`) or the first k ("right"); a prompt of k or fewer whole.
 */
export function truncationProblem(full: readonly number[], kept: readonly number[], k: number, side: 'left' | 'right', bosKept: boolean): string | null {
  let expected: readonly number[];
  if (full.length <= k) expected = full;
  else if (side === 'right') expected = full.slice(0, k);
  else if (bosKept) expected = [full[0], ...full.slice(full.length - (k - 1))];
  else expected = full.slice(full.length - k);
  if (expected.length === kept.length && expected.every((id, i) => id === kept[i])) return null;
  return `truncation_side ${side}, truncate_prompt_tokens ${k}: kept ${JSON.stringify(kept).slice(0, 120)} of ${JSON.stringify(full).slice(0, 120)}, expected ${JSON.stringify(expected).slice(0, 120)}`;
}

/** A refused field: 400 with the error's `param` naming it. */
export function refusalProblem(status: number, text: string, param: string): string | null {
  if (status === 0 || status === 429 || status === 503) return null; // cut, or busy: not an answer on the field
  let named: unknown;
  try {
    named = (JSON.parse(text) as { error?: { param?: unknown } }).error?.param;
  } catch {
    named = undefined;
  }
  if (status === 400 && named === param) return null;
  return `got ${status} naming ${JSON.stringify(named)}, not a 400 naming ${param}: ${text.slice(0, 160)}`;
}
