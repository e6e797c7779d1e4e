/**
 * vLLM's structured outputs and OpenAI's response_format: the reply's text
 * is one of a list of choices, matches a regular expression, is a sentence
 * of a GBNF grammar, or is JSON valid under a schema (or any JSON object). vLLM reads them from
 * `structured_outputs` (its current field), else from the older `guided_*`
 * fields, and maps `response_format` onto the same; one constraint at most.
 *
 * The pool masks every token that would leave the language
 * (gpu-pool/verify/text-masks.ts): choices as a trie of them; a grammar as
 * itself (checked here: parsed, its rules and size); a regex as itself; JSON
 * (a schema, JSON mode, tool calls) as a regular expression written here
 * whose open values and recursion nest at most 3 containers deep
 * (json-schema-regex.ts), or, where the caller asks (SSSD_JSON_GRAMMAR) and
 * the grammar is within a pool's bounds, as a GBNF grammar nested to any
 * depth (shared/structured/json-schema-grammar.ts). Each pool reads one
 * form, and a bad pattern, grammar or schema is a 400 before anything is
 * sent.
 */
import { RecentlyChecked, RecentTexts } from './recently-checked';
import { ApiError, badRequest } from './api-error';
import { MAX_OUTPUT_GRAMMAR_CHARS, MAX_OUTPUT_REGEX_CHARS } from '../shared/protocol';
import { checkRegex, compileRegex, RegexSyntaxError, RegexTooLargeError } from '../shared/structured/regex-automaton';
import { DEAD } from '../shared/structured/text-automaton';
import { AutomatonLimitError, checkGrammar, GrammarSyntaxError } from '../shared/structured/grammar-automaton';
import { jsonObjectRegex, jsonSchemaRegex, type JsonSchemaRegexOptions, SchemaError, WhitespaceError } from '../shared/structured/json-schema-regex';
import { GrammarTooLargeError, GrammarUnwritableError, jsonObjectGrammar, jsonSchemaGrammar } from '../shared/structured/json-schema-grammar';
import { autoToolGrammar, autoToolRegex, toolCallPlan, type ToolCallMode, type ToolCallPlan, type ToolChoiceField, type ToolFunction } from './tool-calls';
import type { PoolPicker } from './pool-picker';

type JsonSchemaField = string | Record<string, unknown>;

interface StructuredFields {
  structured_outputs?: {
    choice?: string[] | null;
    regex?: string | null;
    grammar?: string | null;
    json?: JsonSchemaField | null;
    json_object?: boolean | null;
    whitespace_pattern?: string | null;
    disable_additional_properties?: boolean | null;
  } | null;
  guided_choice?: string[] | null;
  guided_regex?: string | null;
  guided_grammar?: string | null;
  guided_json?: JsonSchemaField | null;
  guided_whitespace_pattern?: string | null;
  response_format?: { type: 'text' } | { type: 'json_object' } | { type: 'json_schema'; json_schema: { schema?: Record<string, unknown> | null } } | null;
  ignore_eos?: boolean | null;
  tools?: Array<{ type: 'function'; function: ToolFunction }> | null;
  tool_choice?: ToolChoiceField | null;
  parallel_tool_calls?: boolean | null;
}

/** What the pool is sent: choices, a regex the whole text must match, or a GBNF grammar it is a sentence of (all null: any text); and where the text is chat's tool calls, how. */
export interface StructuredOutput {
  choices: string[] | null;
  regex: string | null;
  grammar: string | null;
  toolCalls: ToolCallMode | null;
  /** The field the constraint came from (the request's own name for it), for a pool's refusal of it; null: none followed. */
  param: string | null;
}

/** One constraint as the request named it: the field (an error's `param`) and what it asks. */
type Constraint =
  | { param: string; choices: string[] }
  | { param: string; regex: string }
  | { param: string; grammar: string }
  | { param: string; schema: JsonSchemaField; locate?: (path: string) => { param: string; path: string }; maxDepth?: number; orText?: AutoText }
  | { param: string; jsonObject: true };

/** How JSON is sent: as a grammar (any depth; pools with the feature `grammar`) or as the depth-bounded regex every pool follows. */
export type JsonForm = 'grammar' | 'regex';

/**
 * How JSON goes to the pools `picker` knows: as a grammar, unless a pool
 * heard from follows none (a fleet mid-upgrade), then as the regex. A cold
 * isolate hears from the pools first (the generation waits for them anyway).
 * Settled once a request, the constraint goes with it, so a failover or a
 * resume goes only to pools that follow it (the feature it needs).
 */
export async function jsonFormFor(picker: PoolPicker, waitUntil?: (promise: Promise<unknown>) => void): Promise<JsonForm> {
  await picker.checkHealth(waitUntil);
  return picker.heardWithout('grammar') ? 'regex' : 'grammar';
}

/**
 * Whether "auto"'s text may go unconstrained past its first character (its
 * regex ending in `(?any-tail)`): every pool heard from reads it. Else its
 * text is held to whole UTF-8 characters, tokens that print something
 * (a fleet mid-upgrade).
 */
export async function anyTailFor(picker: PoolPicker, waitUntil?: (promise: Promise<unknown>) => void): Promise<boolean> {
  await picker.checkHealth(waitUntil);
  return !picker.heardWithout('regexAnyTail');
}

/** How "auto"'s text branch is written: past its first character, any tokens (`(?any-tail)`), or any text. */
type AutoText = 'any-tail' | 'text';

/** The request's structured output, checked: a 400 for two constraints at once, a bad regex, grammar or schema, or ignore_eos with one. */
export function structuredOutput(body: StructuredFields, jsonAs: JsonForm = 'regex', anyTail = false): StructuredOutput {
  const tools = toolCallPlan(body);
  const constraints: Constraint[] = [];
  let whitespace: { param: string; pattern: string } | null = null;
  const so = body.structured_outputs;
  // vLLM reads the guided_* fields only where structured_outputs is not sent (protocol.py, to_sampling_params).
  if (so !== undefined && so !== null) {
    if (so.choice != null) constraints.push({ param: 'structured_outputs.choice', choices: so.choice });
    if (so.regex != null) constraints.push({ param: 'structured_outputs.regex', regex: so.regex });
    if (so.grammar != null) constraints.push({ param: 'structured_outputs.grammar', grammar: so.grammar });
    if (so.json != null) constraints.push({ param: 'structured_outputs.json', schema: so.json });
    if (so.json_object === true) constraints.push({ param: 'structured_outputs.json_object', jsonObject: true });
    if (so.whitespace_pattern != null) whitespace = { param: 'structured_outputs.whitespace_pattern', pattern: so.whitespace_pattern };
    if (so.disable_additional_properties === false) {
      // The layout here never writes a property a schema with `properties` does not list: false would ask for more.
      throw badRequest('structured_outputs.disable_additional_properties: false is not supported by this server: an object whose schema lists properties holds those alone here (leave it out, or send true)', 'structured_outputs.disable_additional_properties', 'unsupported_parameter');
    }
    // vLLM's StructuredOutputsParams refuses one that names no constraint (a response_format or tool calls may be the one).
    if (constraints.length === 0 && (body.response_format == null || body.response_format.type === 'text') && tools === null) {
      throw badRequest('structured_outputs names no constraint: send one of choice, regex, grammar, json or json_object, or leave structured_outputs out.', 'structured_outputs', 'invalid_value');
    }
  } else {
    if (body.guided_choice != null) constraints.push({ param: 'guided_choice', choices: body.guided_choice });
    if (body.guided_regex != null) constraints.push({ param: 'guided_regex', regex: body.guided_regex });
    if (body.guided_grammar != null) constraints.push({ param: 'guided_grammar', grammar: body.guided_grammar });
    if (body.guided_json != null) constraints.push({ param: 'guided_json', schema: body.guided_json });
    if (body.guided_whitespace_pattern != null) whitespace = { param: 'guided_whitespace_pattern', pattern: body.guided_whitespace_pattern };
  }
  const format = body.response_format;
  if (format?.type === 'json_object') constraints.push({ param: 'response_format', jsonObject: true });
  else if (format?.type === 'json_schema') {
    const schema = format.json_schema.schema;
    constraints.push(schema != null ? { param: 'response_format.json_schema.schema', schema } : { param: 'response_format', jsonObject: true });
  }
  if (constraints.length > 1) {
    // vLLM's words (StructuredOutputsParams.__post_init__).
    throw badRequest(`You can only use one kind of structured outputs constraint but multiple are specified: ${constraints.map((c) => c.param).join(', ')}.`, constraints[1].param, 'invalid_value');
  }
  if (tools !== null) {
    // vLLM's words (ChatCompletionRequest.check_structured_outputs_count): the calls are the reply's one constraint.
    if (constraints.length > 0) {
      const other = constraints[0];
      // Under "auto", JSON (OpenAI's response_format beside tools): the calls' array, or that JSON.
      if (tools.mode.kind === 'auto' && ('schema' in other || 'jsonObject' in other)) return autoCallsOrJson(tools, other, body.ignore_eos === true, whitespace);
      // Under "auto" the reply's language is already "calls or text" (tool-calls.ts): a regex, choices or grammar is not joined to it.
      const auto = tools.mode.kind === 'auto' ? ` (tool_choice ${body.tool_choice == null ? 'is "auto" by default where tools are sent' : 'is "auto"'}: send tool_choice "none" for a reply in ${other.param}, or leave ${other.param} out for tool calls)` : '';
      throw badRequest(`You can only either use constraints for structured outputs or tools, not both.${auto}`, 'tool_choice', 'invalid_value');
    }
    if (tools.mode.kind === 'auto') return autoToolCalls(tools, body.ignore_eos === true, jsonAs, whitespace, anyTail);
    constraints.push({ param: tools.locate('').param, schema: tools.schema, locate: tools.locate, maxDepth: tools.maxDepth });
  }
  const constraint = constraints[0];
  if (constraint === undefined) return { choices: null, regex: null, grammar: null, toolCalls: null, param: null };
  return followed(constraint, body.ignore_eos === true, jsonAs, whitespace, tools?.mode ?? null);
}

/** JSON regexes lately found to start with no `[` (each compiled to find out: 1-30 ms). */
const startsNoArray = new RecentlyChecked(32, 1 << 20);

/**
 * "auto" beside JSON (a response_format, or vLLM's json / json_object): the
 * reply is the calls' array (its first character `[`) or
 * JSON valid under the other constraint, one regex the pool follows (as
 * OpenAI answers a request with both: a call, or the structured answer).
 * JSON that may itself start with `[` (an array) could be read either way:
 * a 400. Written as regexes (the grammar form has no way to join them).
 */
function autoCallsOrJson(tools: ToolCallPlan, json: JsonConstraint, ignoreEos: boolean, whitespace: { param: string; pattern: string } | null): StructuredOutput {
  if (ignoreEos) throw badRequest(`ignore_eos cannot be used with a structured output (${json.param}): the reply ends at the end token once it is whole.`, 'ignore_eos', 'invalid_value');
  // The JSON alone first, checked as any (its size and syntax a 400 naming it), so compiling it below cannot fail.
  const answer = followed(json, false, 'regex', whitespace, null).regex!;
  if (!startsNoArray.has(answer)) {
    const automaton = compileRegex(answer);
    const opens = ['[', ' [', '\t[', '\n[', '\r['].some((start) => {
      const bytes = new TextEncoder().encode(start);
      return automaton.follow(0, bytes, 0, bytes.length) !== DEAD;
    });
    if (opens) {
      throw badRequest(
        `${json.param}: under tool_choice "auto" a reply that starts with "[" is the tool calls' array, and this JSON may start with one too; send a schema whose value is an object, or tool_choice "none" (the JSON alone) or "required" (calls alone).`,
        json.param,
        'invalid_value',
      );
    }
    startsNoArray.add(answer);
  }
  // The calls' array alone, checked as "required"'s is: a tools schema past a pool's bounds is a 400 naming the tool.
  const calls = followed({ param: tools.locate('').param, schema: tools.schema, locate: tools.locate, maxDepth: tools.maxDepth }, false, 'regex', whitespace, null).regex!;
  // No whitespace before either: the first character decides, and a small model held to JSON writes blank lines for ever
  // where they are allowed there (the JSON's own regex allows none before its value either).
  return followed({ param: json.param, regex: `(?:${calls})|(?:${answer})` }, false, 'regex', null, tools.mode);
}

/** "auto" tool calls' schemas lately found past what a pool follows (or this server reads), by schema text: read, not followed, at once. */
const unfollowedAuto = new RecentlyChecked(32, 1 << 20);

/**
 * "auto": the calls' array, or text that does not start with one
 * (tool-calls.ts), followed by the pool. Where the calls' schema is past what
 * a pool follows (too large, a keyword this server does not write), or the
 * end token is ignored, the reply is not held to it: calls are read from a
 * reply that is a whole array of the listed functions, as vLLM's auto tool
 * parsers read them, and every request with those tools still gets its
 * text (a request that asked for no constraint is not refused for one).
 * Unless a tool the reply may call is `strict: true`: its calls must follow
 * its schema (OpenAI's strict mode), so a schema that cannot be followed,
 * or the end token ignored, is the 400 "required" gives.
 */
function autoToolCalls(tools: ToolCallPlan, ignoreEos: boolean, jsonAs: JsonForm, whitespace: { param: string; pattern: string } | null, anyTail: boolean): StructuredOutput {
  const read: StructuredOutput = { choices: null, regex: null, grammar: null, toolCalls: { kind: 'auto', names: tools.names }, param: null };
  // A whitespace the request sent is checked first: its 400 is the request's own, not the schema's (review h106).
  if (whitespace) checkPattern(whitespace.param, whitespace.pattern);
  const key = `${anyTail} ${tools.maxDepth} ${JSON.stringify(whitespace?.pattern ?? null)} ${JSON.stringify(tools.schema)}`;
  if (!tools.strict && (ignoreEos || unfollowedAuto.has(key))) return read;
  try {
    // (?any-tail) is the regex's own: GBNF has none, so with it the regex form goes.
    const orText: AutoText = anyTail ? 'any-tail' : 'text';
    return followed({ param: tools.locate('').param, schema: tools.schema, locate: tools.locate, maxDepth: tools.maxDepth, orText }, ignoreEos, anyTail ? 'regex' : jsonAs, whitespace, tools.mode);
  } catch (err) {
    // Only what the tools' schema cannot be written as is read instead; a whitespace past what it allows is the request's 400.
    if (!(err instanceof ApiError) || err.status !== 400 || (whitespace !== null && err.param === whitespace.param)) throw err;
    if (tools.strict) {
      // Strict is per function: a schema that cannot be written in a tool not sent strict leaves that tool's calls any
      // object, and the strict ones held to theirs (review h139: it was a 400 naming the tool that asked nothing).
      if (tools.strictOnly && !strictToolAt(err.param, tools)) {
        const orText: AutoText = anyTail ? 'any-tail' : 'text';
        return followed({ param: tools.locate('').param, schema: tools.strictOnly(), locate: tools.locate, maxDepth: tools.maxDepth, orText }, ignoreEos, anyTail ? 'regex' : jsonAs, whitespace, tools.mode);
      }
      throw err;
    }
    unfollowedAuto.add(key);
    return read;
  }
}

/** Whether an error's param is a strict tool's parameters (`tools.{i}.function.parameters`), or names no tool at all. */
function strictToolAt(param: string | null, tools: ToolCallPlan): boolean {
  const at = param === null ? null : /^tools\.(\d+)\.function\.parameters$/.exec(param);
  return at === null || tools.strictTools?.has(Number(at[1])) !== false;
}

/** What the pool is sent for one constraint, checked: a 400 for a bad regex, grammar or schema, or ignore_eos beside it. */
function followed(constraint: Constraint, ignoreEos: boolean, jsonAs: JsonForm, whitespace: { param: string; pattern: string } | null, toolCalls: ToolCallMode | null): StructuredOutput {
  // The reply ends at the end token once it is whole: with the end token ignored it could not end there.
  if (ignoreEos) {
    throw badRequest(`ignore_eos cannot be used with a structured output (${constraint.param}): the reply ends at the end token once it is whole.`, 'ignore_eos', 'invalid_value');
  }
  if ('choices' in constraint) return { choices: constraint.choices, regex: null, grammar: null, toolCalls: null, param: constraint.param };
  if ('grammar' in constraint) return { choices: null, regex: null, grammar: checkedGrammar(constraint.param, constraint.grammar), toolCalls: null, param: constraint.param };
  if (jsonAs === 'grammar' && !('regex' in constraint)) {
    // A bad schema is the 400 the regex's would be (one walker); a grammar past a pool's bounds, the regex's form.
    const grammar = jsonGrammarOf(constraint, whitespace);
    if (grammar !== null) return { choices: null, regex: null, grammar, toolCalls, param: constraint.param };
  }
  const regex = regexOf(constraint, whitespace);
  if (regex.length > MAX_OUTPUT_REGEX_CHARS) {
    throw badRequest(`${constraint.param}: its regular expression is ${regex.length} characters, more than the ${MAX_OUTPUT_REGEX_CHARS} a pool takes; send a smaller one.`, constraint.param, 'invalid_value');
  }
  if (!checkedRegexes.has(regex)) {
    try {
      checkRegex(regex);
    } catch (err) {
      if (!(err instanceof RegexSyntaxError)) throw err;
      if ('regex' in constraint) throw badRequest(`${constraint.param}: ${err.message}`, constraint.param, 'invalid_value');
      // A schema's regex is this code's: its size (states, or groups nested past the engine's depth) is what fails,
      // said in the schema's terms, not the regex's; or the whitespace's, where the default would have passed.
      if (whitespace && fitsWithDefaultWhitespace(constraint)) {
        throw badRequest(`${whitespace.param}: written between every token of the JSON, this whitespace makes its regular expression too large for a pool; send a shorter one.`, whitespace.param, 'invalid_value');
      }
      throw badRequest(
        `${constraint.param}: the schema is too large to follow: its regular expression ${err instanceof RegexTooLargeError ? 'needs more automaton states than a pool holds' : 'nests deeper than a pool reads'} (long maxLength or maxItems, many optional properties or deep nesting make it grow); send a smaller schema.`,
        constraint.param,
        'invalid_value',
      );
    }
    checkedRegexes.add(regex);
  }
  return { choices: null, regex, grammar: null, toolCalls, param: constraint.param };
}

/** A grammar a pool takes (parsed, its rules checked, its automaton's size bounded), or a 400 naming the field and where in it. */
function checkedGrammar(param: string, grammar: string): string {
  if (grammar.length > MAX_OUTPUT_GRAMMAR_CHARS) {
    throw badRequest(`${param}: the grammar is ${grammar.length} characters, more than the ${MAX_OUTPUT_GRAMMAR_CHARS} a pool takes; send a smaller one.`, param, 'invalid_value');
  }
  // A grammar sent with every request is checked once per isolate, as a regex is.
  if (checkedGrammars.has(grammar)) return grammar;
  try {
    checkGrammar(grammar);
  } catch (err) {
    // Past the limits already in its first configuration (an ambiguous grammar's multiply): no pool would follow it.
    if (err instanceof GrammarSyntaxError || err instanceof AutomatonLimitError) throw badRequest(`${param}: ${err.message}`, param, 'invalid_value');
    throw err;
  }
  checkedGrammars.add(grammar);
  return grammar;
}

/**
 * JSON's grammar (any depth), checked once per isolate as a grammar sent
 * is; a 400 for a schema this server cannot follow; null where the grammar
 * is past a pool's bounds (its length, its automaton's), where the regex
 * (its length bound 4 times the grammar's) may still fit, or where it cannot
 * hold the schema (a string's length beside its pattern: the regex can).
 */
function jsonGrammarOf(constraint: JsonConstraint, whitespace: { param: string; pattern: string } | null): string | null {
  const grammar = writtenJson('grammar', constraint, whitespace, (schema, options) => {
    try {
      return schema === null ? jsonObjectGrammar(options) : jsonSchemaGrammar(schema, options);
    } catch (err) {
      if (err instanceof GrammarTooLargeError || err instanceof GrammarUnwritableError) return null;
      throw err;
    }
  });
  if (grammar === null || refusedGrammars.has(grammar)) return null;
  if (checkedGrammars.has(grammar)) return grammar;
  try {
    checkGrammar(grammar);
  } catch (err) {
    if (err instanceof GrammarSyntaxError || err instanceof AutomatonLimitError) {
      // Found past a pool's bounds once: the regex form from then on, without building it again (36-430 ms).
      refusedGrammars.add(grammar);
      return null;
    }
    throw err;
  }
  checkedGrammars.add(grammar);
  return grammar;
}

/** Regexes checked lately (JSON mode's, or a schema's: 1-30 ms of CPU each to check), and grammars, kept apart (one text may be both). */
const checkedRegexes = new RecentlyChecked(32, 1 << 20);
const checkedGrammars = new RecentlyChecked(32, 1 << 20);
/** JSON's grammars found past a pool's bounds lately (the regex form goes instead). */
const refusedGrammars = new RecentlyChecked(32, 1 << 20);

/** The regex a constraint asks for: a schema's written out; a 400 for a schema this server cannot follow. */
function regexOf(constraint: Exclude<Constraint, { choices: string[] } | { grammar: string }>, whitespace: { param: string; pattern: string } | null): string {
  if ('regex' in constraint) return constraint.regex;
  return writtenJson('regex', constraint, whitespace, (schema, options) => (schema === null ? jsonObjectRegex(options) : jsonSchemaRegex(schema, options)));
}

/**
 * JSON's forms written lately, by form, options and schema text: a grammar
 * took 0.2-0.35 ms to write (JSON mode's, a small schema's; a grammar past
 * its bounds up to ~0.4 s to find so) and a regex 0.04-0.1 ms, on every
 * request that sent the same schema, where the rest of the edge's request
 * path takes ~0.04 ms.
 */
const writtenLately = new RecentTexts<string>(64, 4 << 20);

type JsonConstraint = Exclude<Constraint, { choices: string[] } | { grammar: string } | { regex: string }>;

/**
 * What `write` makes of the constraint's schema (null: JSON mode's any
 * object), kept per form and schema text (writtenLately; null, a form past
 * its bounds, too); a 400 for a schema this server cannot follow, in its own
 * terms.
 */
function writtenJson<T extends string | null>(form: JsonForm, constraint: JsonConstraint, whitespace: { param: string; pattern: string } | null, write: (schema: unknown, options: JsonSchemaRegexOptions) => T): T {
  if (whitespace) checkPattern(whitespace.param, whitespace.pattern);
  const options = { ...(whitespace ? { whitespace: whitespace.pattern } : {}), ...('maxDepth' in constraint && constraint.maxDepth !== undefined ? { maxDepth: constraint.maxDepth } : {}) };
  const schema = 'jsonObject' in constraint ? null : parsedSchema(constraint.param, constraint.schema);
  const text = 'jsonObject' in constraint ? '' : typeof constraint.schema === 'string' ? constraint.schema : JSON.stringify(schema);
  const orText = 'orText' in constraint ? constraint.orText : undefined;
  const key = `${form} ${'jsonObject' in constraint ? 'object' : orText !== undefined ? `schema-or-${orText}` : 'schema'} ${options.maxDepth ?? ''} ${JSON.stringify(options.whitespace ?? null)} ${text}`;
  const kept = writtenLately.get(key);
  // '' stands for null: a form past its bounds (no regex or grammar is empty), which took as long to find.
  if (kept !== undefined) return (kept === '' ? null : kept) as T;
  try {
    const json = write(schema, options);
    const written = (json === null || orText === undefined ? json : form === 'regex' ? autoToolRegex(json, orText === 'any-tail') : autoToolGrammar(json)) as T;
    writtenLately.set(key, written ?? '');
    return written;
  } catch (err) {
    if (err instanceof SchemaError) {
      const { param, path } = 'locate' in constraint && constraint.locate ? constraint.locate(err.path) : { param: constraint.param, path: err.path };
      const at = path === '' ? '' : ` (at ${path})`;
      throw badRequest(`${param}: ${err.message}${at}`, param, 'invalid_value');
    }
    // The whitespace is the one option read as a regex inside the JSON's (a lazy quantifier, say, is not taken there).
    if (err instanceof WhitespaceError && whitespace) throw badRequest(`${whitespace.param}: ${err.message}`, whitespace.param, 'invalid_value');
    // The builder bounds its nesting and its regex's length; a stack or string that still runs out is the schema's size, not a fault here.
    if (err instanceof RangeError) throw badRequest(`${constraint.param}: the schema is too large or too deeply nested to follow; send a smaller one.`, constraint.param, 'invalid_value');
    throw err;
  }
}

/** Whether the constraint's regex with the default whitespace is one a pool takes (only asked where it failed with the request's). */
function fitsWithDefaultWhitespace(constraint: Exclude<Constraint, { choices: string[] } | { grammar: string }>): boolean {
  try {
    checkRegex(regexOf(constraint, null));
    return true;
  } catch {
    return false;
  }
}

function parsedSchema(param: string, schema: JsonSchemaField): unknown {
  if (typeof schema !== 'string') return schema;
  try {
    return JSON.parse(schema);
  } catch {
    throw badRequest(`${param}: a schema sent as a string must be JSON text.`, param, 'invalid_value');
  }
}

function checkPattern(param: string, pattern: string): void {
  try {
    checkRegex(pattern);
  } catch (err) {
    if (err instanceof RegexSyntaxError) throw badRequest(`${param}: ${err.message}`, param, 'invalid_value');
    throw err;
  }
}
