/**
 * A JSON Schema as a regular expression whose full matches are the JSON
 * texts valid under it, in one fixed layout: vLLM's `structured_outputs.json`
 * / `guided_json` and OpenAI's `json_schema` and `json_object` response
 * formats, checked byte by byte through the regex automaton.
 *
 * The layout is outlines' (outlines/fsm/json_schema.py, `to_regex`): the
 * whitespace pattern (default `[ ]?`) between tokens, object properties in
 * the schema's order, required ones present and optional ones free to be
 * left out. What the schema leaves open (`{}`, `true`, an absent `items`) and
 * recursion through `$ref` are bounded by `maxDepth` nested containers; or,
 * written as rules (jsonSchemaRules, for json-schema-grammar.ts), call a rule
 * (`value`, or the `$ref`'s own), nested to any depth.
 *
 * The regex uses only the structured-output subset (literals, escaped
 * metacharacters, \d \w \s, \xHH, \uHHHH, `.`, classes, non-capturing
 * groups, `|`, * + ? {n} {n,} {n,m} with counts ≤ 1000), which is also JS
 * with the `u` flag; but for a string's minLength or maxLength beside its
 * pattern or format, written as this server's `(?json-length{m,n}:...)`
 * (regex-syntax.ts: the pattern's texts whose decoded value has m to n code
 * points), which only pools with the feature `regexJsonLength` read. A
 * keyword that constrains values and that the regex cannot hold exactly is
 * a SchemaError naming it: a constraint is never dropped silently.
 *
 * A schema is untrusted input: its nesting, the sub-schemas visited (each
 * `$ref` followed counts) and the regex's length are bounded, each past its
 * bound a SchemaError, so no schema costs more than some tens of milliseconds.
 */

import { MAX_OUTPUT_REGEX_CHARS } from '../protocol';
import { buildByteNfa, DEFAULT_MAX_NFA_STATES, RegexTooLargeError } from './byte-nfa';
import { integerRangeRegex } from './integer-range-regex';
import { jsonStringPattern, PatternError, regexLiteral } from './json-string-pattern';
import { checkWhitespace } from './json-whitespace';
import { type NumberBound, numberRangeRegex } from './number-range-regex';
import { JSON_LENGTH_OPENING, MAX_JSON_LENGTH, parseRegex, RegexSyntaxError } from './regex-syntax';
import { textLengthBounds, type LengthBounds } from './text-length-bounds';

export { WhitespaceError } from './json-whitespace';

export class SchemaError extends Error {
  /** A JSON Pointer to the offending keyword in the schema given ("" for the whole schema). */
  readonly path: string;
  /** `message` says what is wrong, `path` where: a caller shows both. */
  constructor(path: string, message: string) {
    super(message);
    this.name = 'SchemaError';
    this.path = path;
  }
}

export interface JsonSchemaRegexOptions {
  /** The whitespace allowed between tokens, a regex of the subset (default outlines' `[ ]?`). */
  whitespace?: string;
  /** How deep containers may nest where the schema leaves values open or recurses (default 3). */
  maxDepth?: number;
  /** The longest regex built, in characters (default MAX_OUTPUT_REGEX_CHARS, what a pool takes). */
  maxLength?: number;
}

/**
 * A schema as rules: regexes with subroutine calls `(?&name)` (regex-syntax.ts,
 * parseRegexWithCalls), which are not bounded in depth. `root` is the
 * document's; `rules` the bodies called: `value` (any JSON value) and one
 * per `$ref` target met recursively. A body may call a rule that derives no
 * text (a recursion that never ends): the reader drops such calls.
 */
export interface JsonSchemaRules {
  readonly root: string;
  readonly rules: ReadonlyMap<string, string>;
}

/** The rule any JSON value calls (open values, JSON mode's members). */
export const ANY_VALUE_RULE = 'value';

export const DEFAULT_WHITESPACE = '[ ]?';
export const DEFAULT_MAX_DEPTH = 3;
/** How deep sub-schemas may nest, `$ref`s followed included (deeper overflows the stack long before it is useful). */
export const MAX_SCHEMA_NESTING = 128;
/** How many sub-schemas one regex may visit, each `$ref` followed counted again. */
export const MAX_SCHEMA_VISITS = 20_000;

const STRING_CHAR = '(?:[^"\\\\\\x00-\\x1F\\x7F]|\\\\["\\\\/bfnrt]|\\\\u[0-9a-fA-F]{4})';
const STRING = `"${STRING_CHAR}*"`;
// One code point, as minLength and maxLength count: a character written raw,
// or one of the few escapes a string needs (\" \\ \n \t, and \u00XX for the
// other controls, lower-case hex as JSON.stringify writes it). Surrogate
// escapes are left out, so a pair is never counted as two. The narrow escape
// set keeps the regex engine's NFA at 46 states a code point (the full
// escape set, surrogate pairs included, cost 127), so maxLength 2,000 fits.
const CODE_POINT = '(?:[^"\\\\\\x00-\\x1F\\x7F]|\\\\(?:["\\\\nt]|u00[01][0-9a-f]))';
const INTEGER = '-?(?:0|[1-9][0-9]*)';
const FRACTION_EXPONENT = '(?:\\.[0-9]+)?(?:[eE][+\\-]?[0-9]+)?';
const NUMBER = `${INTEGER}${FRACTION_EXPONENT}`;
const BOOLEAN = '(?:true|false)';
const NULL = 'null';
const SCALAR = `${STRING}|${NUMBER}|true|false|null`;

// RFC 3339's, less what common validators refuse of it: year 0000 and second 60 (Pydantic refuses both, zod the
// second), and fractions past 6 digits (Pydantic's microseconds; unbounded, a model wrote zeros to max_tokens).
const YEAR = '(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)';
const DATE = `${YEAR}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-9])|(?:0[13-9]|1[0-2])-30|(?:0[13578]|1[02])-31)`;
const TIME = '(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,6})?(?:[Zz]|[+\\-](?:[01][0-9]|2[0-3]):[0-5][0-9])';
// The formats OpenAI's structured outputs take, and `uri` (Pydantic's HttpUrl, zod's z.url()). Each is a part of its
// format's texts that the common validators all take (ajv-formats, Pydantic with email-validator, WHATWG's URL
// parser), bounded so that the model cannot run on in one (a number's digits, a label's, a path's segments).
const OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])';
const HEX4 = '[0-9a-fA-F]{1,4}';
const IPV6 = [
  `(?:${HEX4}:){7}${HEX4}`,
  `(?:${HEX4}:){1,7}:`,
  `(?:${HEX4}:){1,6}:${HEX4}`,
  `(?:${HEX4}:){1,5}(?::${HEX4}){1,2}`,
  `(?:${HEX4}:){1,4}(?::${HEX4}){1,3}`,
  `(?:${HEX4}:){1,3}(?::${HEX4}){1,4}`,
  `(?:${HEX4}:){1,2}(?::${HEX4}){1,5}`,
  `${HEX4}:(?::${HEX4}){1,6}`,
  `:(?:(?::${HEX4}){1,7}|:)`,
].join('|');
/**
 * A DNS label of 1 to 62 characters, hyphens only single and between others (`ab--cd` is refused by
 * email-validator, and `xn--` by IDNA in WHATWG's and Rust's URL parsers); four at most, so a name keeps to 253.
 */
const LABEL = '[A-Za-z0-9]{1,20}(?:-[A-Za-z0-9]{1,20}){0,2}';
const LOWER_LABEL = '[a-z0-9]{1,20}(?:-[a-z0-9]{1,20}){0,2}';
/** A URL's last label starts with a letter: one of digits (`a.1`) is read as an IPv4 address by WHATWG's parser, and refused. */
const LAST_LABEL = '[a-z][a-z0-9]{0,19}(?:-[a-z0-9]{1,20}){0,2}';
const HOSTNAME = `${LABEL}(?:\\.${LABEL}){0,3}`;
/**
 * Common top-level domains: email-validator (Pydantic's EmailStr) refuses the special-use ones (`test`, `local`,
 * `localhost`, `invalid`, `onion`, `arpa`), which a model writes readily, and a list is the regex subset's way to leave them out.
 */
const EMAIL_TLD = '(?:com|org|net|edu|gov|io|dev|ai|app|co|info|biz|uk|us|ca|au|de|fr|es|it|nl|se|ch|jp|cn|in|br)';
/** A local part of at most 64 characters, dots only between others; a domain of one or two labels and a common TLD. */
const EMAIL = `[A-Za-z0-9_+\\-]{1,32}(?:\\.[A-Za-z0-9_+\\-]{1,15}){0,2}@(?:${LOWER_LABEL}\\.){1,2}${EMAIL_TLD}`;
/** Six digits a part: Pydantic's timedelta (speedate) refuses past 999,999,999 days or u32 seconds. */
const DIGITS = '[0-9]{1,6}';
/** RFC 3339's duration (appendix A), each part's digits bounded (PT999999H999999M999999S is 3.66e9 seconds, within u32). */
const DURATION = (() => {
  const second = `${DIGITS}S`;
  const minute = `${DIGITS}M(?:${second})?`;
  const hour = `${DIGITS}H(?:${minute})?`;
  const time = `T(?:${hour}|${minute}|${second})`;
  const day = `${DIGITS}D`;
  const month = `${DIGITS}M(?:${day})?`;
  const year = `${DIGITS}Y(?:${month})?`;
  return `P(?:(?:${day}|${month}|${year})(?:${time})?|${time}|${DIGITS}W)`;
})();
/** A character of a path segment, query or fragment: unreserved, sub-delims, `:` `@`, or a percent-encoded byte. */
const URI_CHAR = "(?:[A-Za-z0-9._~!$&'()*+,;=:@\\-]|%[0-9A-F]{2})";
const PORT = '(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?';
/** An http(s) URL: a host of lower-case labels, a port, four path segments, a query and a fragment of 48 characters each: 1,135 at most. */
const URI = `https?://(?:${LOWER_LABEL}\\.){0,3}${LAST_LABEL}${PORT}(?:/${URI_CHAR}{0,48}){0,4}(?:\\?(?:${URI_CHAR}|[/?]){0,48})?(?:#(?:${URI_CHAR}|[/?]){0,48})?`;

const FORMATS: Record<string, string> = {
  'date-time': `${DATE}[Tt]${TIME}`,
  date: DATE,
  time: TIME,
  uuid: '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}',
  duration: DURATION,
  email: EMAIL,
  hostname: HOSTNAME,
  ipv4: `(?:${OCTET}\\.){3}${OCTET}`,
  ipv6: `(?:${IPV6})`,
  uri: URI,
  // RFC 4648's, padded as zod's z.base64() and Pydantic's Base64Bytes take it. base64url: Pydantic's Base64UrlBytes
  // wants its padding and zod's z.base64url() refuses it, so whole quads only, which both take (review h106).
  base64: '(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?',
  base64url: '(?:[A-Za-z0-9_-]{4})*',
};
/** The contentEncoding values followed: as their format. */
const CONTENT_ENCODINGS = ['base64', 'base64url'];
const FORMAT_NAMES = Object.keys(FORMATS).join(', ');
/**
 * The patterns zod 4 writes beside these formats (`z.hostname()`, `z.iso.duration()`), with lookaheads this
 * engine does not read: beside its own format such a pattern is zod's spelling of that format, and the format,
 * written as a part of what the pattern takes (the format tests check it with zod), is followed. A test holds
 * them to what the installed zod writes; any other pattern with a lookahead is still the pattern's 400.
 */
const ZOD_FORMAT_PATTERNS: Readonly<Record<string, string>> = {
  hostname: '^(?=.{1,253}\\.?$)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[-0-9a-zA-Z]{0,61}[0-9a-zA-Z])?)*\\.?$',
  duration: '^P(?:(\\d+W)|(?!.*W)(?=\\d|T\\d)(\\d+Y)?(\\d+M)?(\\d+D)?(T(?=\\d)(\\d+H)?(\\d+M)?(\\d+([.,]\\d+)?S)?)?)$',
};
/** Each format's fewest and most characters (plain ones: as many code points), read once. */
const formatBounds = new Map<string, LengthBounds>();
function boundsOfFormat(name: string): LengthBounds {
  let bounds = formatBounds.get(name);
  if (bounds === undefined) formatBounds.set(name, (bounds = textLengthBounds(parseRegex(FORMATS[name]))));
  return bounds;
}

/** OpenAPI's integer formats, as the bounds they stand for (int64's: the part within ±(2^53 - 1), see RegexBuilder.integer). */
const INTEGER_FORMATS: Readonly<Record<string, readonly [number, number]>> = {
  int32: [-(2 ** 31), 2 ** 31 - 1],
  int64: [-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  // Rust's schemars and OpenAPI generators write these (review h139: refused, they broke schemas that had compiled).
  int8: [-(2 ** 7), 2 ** 7 - 1],
  int16: [-(2 ** 15), 2 ** 15 - 1],
  uint8: [0, 2 ** 8 - 1],
  uint16: [0, 2 ** 16 - 1],
  uint32: [0, 2 ** 32 - 1],
  uint64: [0, Number.MAX_SAFE_INTEGER],
  uint: [0, Number.MAX_SAFE_INTEGER],
};

/** Keywords that say nothing about which values are valid. */
const ANNOTATIONS = new Set([
  'title', 'description', 'examples', 'default', '$schema', '$id', '$comment',
  'readOnly', 'writeOnly', 'deprecated', '$defs', 'definitions',
  // OpenAPI's, which Pydantic writes beside a discriminated union's oneOf: it names the property that tells the
  // branches apart, which oneOf's own check (checkExclusive) requires anyway.
  'discriminator',
]);
const TYPE_KEYWORDS: Record<string, readonly string[]> = {
  string: ['minLength', 'maxLength', 'pattern', 'format', 'contentEncoding'],
  integer: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'],
  number: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'],
  array: ['items', 'prefixItems', 'additionalItems', 'minItems', 'maxItems'],
  object: ['properties', 'required', 'additionalProperties', 'propertyNames'],
  boolean: [],
  null: [],
};
const TYPES = Object.keys(TYPE_KEYWORDS);
/** Keywords that combine with nothing but annotations (their intersection with siblings is not built). */
export const COMBINATORS: readonly string[] = ['enum', 'const', 'anyOf', 'oneOf', 'allOf', '$ref'];
const KNOWN = new Set([...ANNOTATIONS, ...COMBINATORS, 'type', ...Object.values(TYPE_KEYWORDS).flat()]);
const MAX_COUNT = 1000;

type Schema = Record<string, unknown>;

function pointer(path: string, key: string | number): string {
  return `${path}/${String(key).replace(/~/g, '~0').replace(/\//g, '~1')}`;
}

function isObject(v: unknown): v is Schema {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function alternation(parts: readonly (string | null)[]): string | null {
  const live = parts.filter((p): p is string => p !== null);
  if (live.length === 0) return null;
  return live.length === 1 ? live[0] : `(?:${live.join('|')})`;
}

/** `x{min,max}` in the subset (max Infinity for none); counts past 1000 nest. */
function repeat(x: string, min: number, max: number, path: string): string {
  if (max === Infinity) {
    if (min === 0) return `(?:${x})*`;
    return `${repeat(x, min, min, path)}(?:${x})*`;
  }
  if (max <= MAX_COUNT) {
    if (min === max) return min === 0 ? '' : min === 1 ? x : `(?:${x}){${min}}`;
    return `(?:${x}){${min},${max}}`;
  }
  const blocks = Math.floor(min / MAX_COUNT);
  if (blocks > MAX_COUNT || max > MAX_COUNT * MAX_COUNT) throw new SchemaError(path, 'a count past 1,000,000');
  const whole = blocks === 0 ? '' : `(?:(?:${x}){${MAX_COUNT}}){${blocks}}`;
  const left = min - blocks * MAX_COUNT;
  const spare = max - min;
  const spareBlocks = Math.floor(spare / MAX_COUNT);
  const spareWhole = spareBlocks === 0 ? '' : `(?:(?:${x}){0,${MAX_COUNT}}){0,${spareBlocks}}`;
  return `${whole}${repeat(x, left, left, path)}${spareWhole}${repeat(x, 0, spare - spareBlocks * MAX_COUNT, path)}`;
}

function nonNegativeInteger(schema: Schema, key: string, path: string): number | undefined {
  const v = schema[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new SchemaError(pointer(path, key), 'must be a non-negative integer');
  return v;
}

/** A value's JSON type as oneOf's check tells them apart: numbers split into integers and fractions (integer is within number). */
type JsonType = 'string' | 'integer' | 'fraction' | 'boolean' | 'null' | 'array' | 'object';
const JSON_TYPES: readonly JsonType[] = ['string', 'integer', 'fraction', 'boolean', 'null', 'array', 'object'];

/**
 * What a oneOf branch may be: its values' JSON types; where it lists its
 * values (const, enum), those, by canonical JSON; where its objects require
 * a property of listed values, those values by property; the properties its
 * objects require, and, where they are closed (additionalProperties false),
 * the ones they may hold; and where it is a union itself, its branches' shapes.
 */
interface Shape {
  types: ReadonlySet<string>;
  values: ReadonlyMap<string, unknown> | null;
  tags: ReadonlyMap<string, ReadonlySet<string>> | null;
  required?: ReadonlySet<string>;
  /** The properties a closed object may hold (null: any). */
  closedTo?: ReadonlySet<string> | null;
  /** A union's branches (anyOf, oneOf): apart from another shape where each is (zod's nested discriminated unions). */
  parts?: readonly Shape[];
}
const ANY_SHAPE: Shape = { types: new Set(JSON_TYPES), values: null, tags: null };
/** Sub-schemas one oneOf's check reads at most (a `$ref` back to `#` in each branch would double them a level): past it, any value. */
const MAX_SHAPE_STEPS = 2_000;
/** How deep that reading goes (its recursion is the stack's): past it, any value. */
const MAX_SHAPE_NESTING = 32;

function jsonTypeOf(v: unknown): JsonType {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'fraction';
  if (typeof v === 'boolean') return 'boolean';
  return typeof v === 'string' ? 'string' : 'object';
}

/** JSON text with object members in key order: two values JSON Schema calls equal write the same. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (isObject(v)) return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}

/** Whether no value can have both shapes. */
function apart(a: Shape, b: Shape): boolean {
  if (a.parts) return a.parts.every((part) => apart(part, b));
  if (b.parts) return b.parts.every((part) => apart(a, part));
  const common = [...a.types].filter((t) => b.types.has(t));
  if (common.length === 0) return true;
  if (a.values !== null && b.values !== null) return ![...a.values.keys()].some((k) => b.values!.has(k));
  if (a.values !== null || b.values !== null) {
    const [listed, other] = a.values !== null ? [a, b] : [b, a];
    return [...listed.values!.values()].every((v) => !other.types.has(jsonTypeOf(v)) || (isObject(v) && untagged(v, other)));
  }
  if (common.some((t) => t !== 'object')) return false;
  // Objects alone in common: one side requires a property the other's closed objects may not hold (zod's z.xor of
  // objects: review h138), or each requires one of values the other's leave out.
  if (requiresWhatTheOtherShuts(a, b) || requiresWhatTheOtherShuts(b, a)) return true;
  if (a.tags === null || b.tags === null) return false;
  return [...a.tags].some(([name, values]) => {
    const others = b.tags!.get(name);
    return others !== undefined && ![...values].some((v) => others.has(v));
  });
}

/** Whether `a`'s objects require a property that `b`'s, closed, may not hold. */
function requiresWhatTheOtherShuts(a: Shape, b: Shape): boolean {
  const shut = b.closedTo;
  if (shut === null || shut === undefined || a.required === undefined) return false;
  return [...a.required].some((name) => !shut.has(name));
}

/** Whether an object value lacks a property the shape's objects require, or holds one of a value they leave out. */
function untagged(v: Record<string, unknown>, shape: Shape): boolean {
  return [...(shape.tags ?? [])].some(([name, values]) => !Object.hasOwn(v, name) || !values.has(canonicalJson(v[name])));
}

class RegexBuilder {
  private readonly ws: string;
  private readonly maxDepth: number;
  /** Refs being expanded, with the container depth each was entered at. */
  private expanding = new Map<string, number[]>();
  /**
   * Where the output is rules (no depth bound): each rule's body by name
   * (null while it is being written), and the rule name of each `$ref`
   * target. Null where it is one regex.
   */
  private readonly rules: Map<string, string | null> | null;
  private readonly ruleNames = new Map<string, string>();
  private readonly anyCache = new Map<number, string>();
  /** The regex of a `$ref` at a container depth, where it met no reference being expanded (so it depends on nothing else). */
  private readonly refCache = new Map<string, string | null>();
  /** How many times a reference met one being expanded: a ref whose expansion raises it is not cached. */
  private recursions = 0;
  /** Inside a recursion met past maxDepth containers: its scalars are written, its containers not (the bound is on containers). */
  private scalarsOnly = 0;
  private readonly maxLength: number;
  /** Each length group's automaton states, and whether it matches anything, by its text: built once, however often used. */
  private readonly lengthStates = new Map<string, { states: number; matches: boolean }>();
  /**
   * The length groups' states, each use counted (past a pool's NFA bound the whole regex is too: each use is in it),
   * and the states of each group's pattern built apart, once.
   */
  private lengthStatesUsed = 0;
  private visits = 0;
  private nesting = 0;
  /** oneOf lists found exclusive (checkExclusive), by identity. */
  private readonly exclusiveChecked = new WeakSet<readonly unknown[]>();

  constructor(private readonly root: unknown, options: JsonSchemaRegexOptions, asRules = false) {
    this.rules = asRules ? new Map() : null;
    const ws = options.whitespace ?? DEFAULT_WHITESPACE;
    checkWhitespace(ws);
    this.maxLength = options.maxLength ?? MAX_OUTPUT_REGEX_CHARS;
    // Grouped only where an alternation would leak into its neighbours.
    this.ws = ws.includes('|') ? `(?:${ws})` : ws;
    this.maxDepth = options.maxDepth ?? DEFAULT_MAX_DEPTH;
    if (!Number.isInteger(this.maxDepth) || this.maxDepth < 0) throw new RangeError('maxDepth must be a non-negative integer');
  }

  /** The whole document's regex. */
  document(): string {
    // As rules, the document is `#` entered: a `$ref: "#"` inside calls its rule rather than writing it out once more.
    if (this.rules !== null) this.expanding.set('', [0]);
    const r = this.value(this.root, '', 0);
    if (r === null) throw new SchemaError('', this.rules !== null ? 'no JSON value satisfies the schema' : `no JSON value within ${this.maxDepth} nested containers satisfies the schema`);
    return r;
  }

  /** Any JSON object, containers nested at most `maxDepth` deep. */
  anyObjectDocument(): string {
    if (this.rules !== null) return this.objectOf(this.anyValue(this.maxDepth));
    return this.bounded(this.anyObject(this.maxDepth));
  }

  /** The rules written (after document() or anyObjectDocument()), each body whole. */
  writtenRules(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [name, body] of this.rules ?? []) out.set(name, body!);
    return out;
  }

  /** The regex for one value under `schema` at container depth `depth`; null where no value fits. */
  private value(schema: unknown, path: string, depth: number): string | null {
    if (++this.visits > MAX_SCHEMA_VISITS) throw new SchemaError('', `the schema is too large to follow: more than ${MAX_SCHEMA_VISITS} sub-schemas, each $ref followed counted again`);
    if (++this.nesting > MAX_SCHEMA_NESTING) throw new SchemaError(path, `the schema nests deeper than ${MAX_SCHEMA_NESTING} levels ($refs followed included)`);
    try {
      return this.bounded(this.valueOf(schema, path, depth));
    } finally {
      this.nesting--;
    }
  }

  /** `r`, unless it is past the length bound (checked as each part is built, so none grows far past it). */
  private bounded<T extends string | null>(r: T): T {
    if (r !== null && r.length > this.maxLength) throw new SchemaError('', `the schema's regular expression grows past ${this.maxLength} characters: simplify the schema (fewer optional properties, $refs or nested containers)`);
    return r;
  }

  private valueOf(schema: unknown, path: string, depth: number): string | null {
    if (schema === true) return this.anyValue(this.maxDepth - depth);
    if (schema === false) throw new SchemaError(path, 'the schema false admits no value');
    if (!isObject(schema)) throw new SchemaError(path, 'a schema must be an object or a boolean');
    for (const key of Object.keys(schema)) {
      if (!KNOWN.has(key)) throw new SchemaError(pointer(path, key), `the keyword ${key} is not supported`);
    }
    const combinator = COMBINATORS.find((k) => k in schema);
    if (combinator !== undefined) {
      const other = Object.keys(schema).find((k) => !ANNOTATIONS.has(k) && k !== combinator && !(k === 'type' && (combinator === 'enum' || combinator === 'const')));
      if (other !== undefined) throw new SchemaError(pointer(path, other), `${other} beside ${combinator} is not supported`);
      return this.combined(schema, combinator, path, depth);
    }
    const types = this.types(schema, path);
    if (types === null) return this.anyValue(this.maxDepth - depth);
    return alternation(types.map((t) => this.typed(t, schema, path, depth)));
  }

  /** The schema's types: its `type`, or those its keywords imply; null for any. */
  private types(schema: Schema, path: string): string[] | null {
    const t = schema.type;
    if (t === undefined) {
      const implied = TYPES.filter((type) => TYPE_KEYWORDS[type].some((k) => k in schema));
      // integer's keywords are number's: a bound alone means a number.
      const types = implied.filter((type) => type !== 'integer');
      return types.length === 0 ? null : types;
    }
    const list = Array.isArray(t) ? t : [t];
    list.forEach((type, i) => {
      if (typeof type !== 'string' || !TYPES.includes(type)) throw new SchemaError(Array.isArray(t) ? pointer(pointer(path, 'type'), i) : pointer(path, 'type'), `unknown type ${JSON.stringify(type)}`);
    });
    if (list.length === 0) throw new SchemaError(pointer(path, 'type'), 'an empty type list admits no value');
    // A type list naming both: integer is within number.
    return (list as string[]).filter((type) => !(type === 'integer' && list.includes('number')));
  }

  private combined(schema: Schema, keyword: string, path: string, depth: number): string | null {
    const at = pointer(path, keyword);
    const arg = schema[keyword];
    switch (keyword) {
      case 'const':
        return this.literal(arg, schema, path);
      case 'enum':
        if (!Array.isArray(arg) || arg.length === 0) throw new SchemaError(at, 'enum must be a non-empty array');
        return alternation(arg.map((v) => this.literal(v, schema, path)));
      case 'anyOf':
      case 'oneOf': {
        if (!Array.isArray(arg) || arg.length === 0) throw new SchemaError(at, `${keyword} must be a non-empty array`);
        // A false branch admits nothing: dropped.
        const written = alternation(arg.map((s, i) => (s === false ? null : this.value(s, pointer(at, i), depth))));
        // oneOf's "exactly one" has no regex between arbitrary branches: followed only where no value can match two.
        if (keyword === 'oneOf') this.checkExclusive(arg, at);
        return written;
      }
      case 'allOf':
        if (!Array.isArray(arg) || arg.length !== 1) throw new SchemaError(at, 'allOf is supported with exactly one schema');
        return this.value(arg[0], pointer(at, 0), depth);
      default:
        return this.reference(arg, at, depth);
    }
  }

  /** A const or enum value, as JSON.stringify writes it; one whose JSON type the schema's `type` excludes admits nothing. */
  private literal(v: unknown, schema: Schema, path: string): string | null {
    let text: string | undefined;
    try {
      // A number the body's JSON could not hold (1e400 read as Infinity, an integer past 2^53 rounded) would be
      // written as null or as another number, a value the schema does not admit (review h112): refused.
      text = JSON.stringify(v, (_key, value: unknown) => {
        if (typeof value === 'number' && !Number.isFinite(value)) throw new SchemaError(path, 'a const or enum number too large to be read');
        if (typeof value === 'number' && Number.isInteger(value) && !Number.isSafeInteger(value)) throw new SchemaError(path, 'a const or enum number past 2^53, which cannot be matched exactly as written (JSON read it as a double)');
        return value;
      });
    } catch (e) {
      // JSON.stringify recurses: a value nested thousands deep overflows its stack.
      if (e instanceof RangeError) throw new SchemaError(path, 'a const or enum value nested too deep');
      throw e;
    }
    if (text === undefined) throw new SchemaError(path, 'a const or enum value that is not JSON');
    if (schema.type !== undefined) {
      const types = this.types(schema, path) ?? TYPES;
      const own = v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v === 'number' ? (Number.isInteger(v) ? 'integer' : 'number') : typeof v;
      if (!types.includes(own) && !(own === 'integer' && types.includes('number'))) return null;
    }
    return regexLiteral(text);
  }

  private reference(ref: unknown, at: string, depth: number): string | null {
    const { target, schema } = this.resolve(ref, at);
    const entered = this.expanding.get(target) ?? [];
    // Recursion that came back without entering a container admits nothing (a value can't be its own part).
    if (entered.length > 0) {
      this.recursions++;
      if (entered[entered.length - 1] === depth) return null;
      if (this.rules !== null) return this.call(target, schema);
    }
    // Past maxDepth containers, recursion admits what it can without one more (`[[["x"]]]` of a
    // list-or-"x" schema, 3 deep): written with containers cut.
    const cut = entered.length > 0 && depth >= this.maxDepth;
    if (cut) this.scalarsOnly++;
    try {
      return this.expanded(target, schema, entered, depth);
    } finally {
      if (cut) this.scalarsOnly--;
    }
  }

  /**
   * The schema a `$ref` names, and its JSON pointer (the key it is expanded
   * under). The reference is a URI fragment: percent-decoded, then read as a
   * JSON pointer (RFC 6901: `~1` is `/`, `~0` is `~`), into `$defs` or
   * `definitions` by their own members only (`#/$defs/constructor` is no
   * inherited one).
   */
  private resolve(ref: unknown, at: string): { target: string; schema: unknown } {
    if (typeof ref !== 'string') throw new SchemaError(at, '$ref must be a string');
    const unsupported = (): SchemaError => new SchemaError(at, `only #, #/$defs/... and #/definitions/... references are supported, not ${ref}`);
    if (!ref.startsWith('#')) throw unsupported();
    let target: string;
    try {
      target = decodeURIComponent(ref.slice(1));
    } catch {
      throw new SchemaError(at, `${ref} is not a valid URI fragment (a % not followed by two hex digits of UTF-8)`);
    }
    const parts = target === '' ? [] : target.split('/');
    if (!(parts.length === 0 || (parts.length === 3 && parts[0] === '' && (parts[1] === '$defs' || parts[1] === 'definitions') && parts[2] !== ''))) throw unsupported();
    let schema: unknown = this.root;
    for (const part of parts.slice(1)) {
      // RFC 6901: ~1 first, so that ~01 is ~1.
      const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
      schema = isObject(schema) && Object.hasOwn(schema, key) ? schema[key] : undefined;
    }
    if (schema === undefined) throw new SchemaError(at, `${ref} names no schema`);
    return { target, schema };
  }

  /**
   * A 400 unless no value can match two of oneOf's branches, shown cheaply
   * (JSON Schema's "exactly one" is no regex between arbitrary branches, and
   * read as anyOf a value matching both, `-5` of integer-or-number, was let
   * through): their types are apart (integer is within number), their
   * const or enum values are, or they are objects told apart by a required
   * property whose const or enum values are (zod's discriminatedUnion,
   * Pydantic's discriminated unions).
   */
  private checkExclusive(branches: readonly unknown[], at: string): void {
    // A oneOf met again (a $ref used in many places, a recursion) was checked once.
    if (this.exclusiveChecked.has(branches)) return;
    const budget = { steps: MAX_SHAPE_STEPS };
    const shapes = branches.map((b, i) => this.shapeOf(b, pointer(at, i), budget));
    for (let i = 0; i < shapes.length; i++) {
      for (let j = i + 1; j < shapes.length; j++) {
        if (!apart(shapes[i], shapes[j])) {
          throw new SchemaError(at, `oneOf is followed only where no value can match two of its branches (distinct types, distinct const or enum values, or objects told apart by a required property of distinct const or enum values); branches ${i} and ${j} may both match a value: send anyOf where a value matching both is valid`);
        }
      }
    }
    this.exclusiveChecked.add(branches);
  }

  /** What values a schema may take, as far as checkExclusive reads it (`$ref`s followed; past its budget of steps, any). */
  private shapeOf(schema: unknown, at: string, budget: { steps: number }, nesting = 0): Shape {
    if (schema === false) return { types: new Set(), values: null, tags: null };
    if (!isObject(schema) || --budget.steps < 0 || nesting > MAX_SHAPE_NESTING) return ANY_SHAPE;
    if ('$ref' in schema) return this.shapeOf(this.resolve(schema.$ref, pointer(at, '$ref')).schema, at, budget, nesting + 1);
    if (Array.isArray(schema.allOf) && schema.allOf.length === 1) return this.shapeOf(schema.allOf[0], at, budget, nesting + 1);
    const typed = this.types(schema, at);
    const allowed = typed === null ? null : new Set(typed.flatMap((t) => (t === 'number' ? ['integer', 'fraction'] : [t])));
    const listed = 'const' in schema ? [schema.const] : Array.isArray(schema.enum) ? schema.enum : null;
    if (listed !== null) {
      const values = listed.filter((v) => allowed === null || allowed.has(jsonTypeOf(v)));
      return { types: new Set(values.map(jsonTypeOf)), values: new Map(values.map((v) => [canonicalJson(v), v])), tags: null };
    }
    for (const key of ['anyOf', 'oneOf']) {
      const list = schema[key];
      if (!Array.isArray(list)) continue;
      const parts = list.map((b, i) => this.shapeOf(b, pointer(pointer(at, key), i), budget, nesting + 1));
      const values = parts.every((p) => p.values !== null) ? new Map(parts.flatMap((p) => [...p.values!])) : null;
      return { types: new Set(parts.flatMap((p) => [...p.types])), values, tags: null, parts };
    }
    if (COMBINATORS.some((k) => k in schema)) return ANY_SHAPE;
    const types = allowed ?? new Set(JSON_TYPES);
    let tags: Map<string, Set<string>> | null = null;
    const props = schema.properties;
    if (types.has('object') && isObject(props) && Array.isArray(schema.required)) {
      for (const name of schema.required) {
        if (typeof name !== 'string' || !Object.hasOwn(props, name)) continue;
        const values = this.shapeOf(props[name], pointer(pointer(at, 'properties'), name), budget, nesting + 1).values;
        if (values !== null) (tags ??= new Map()).set(name, new Set(values.keys()));
      }
    }
    const required = Array.isArray(schema.required) ? new Set(schema.required.filter((n): n is string => typeof n === 'string')) : undefined;
    // Closed: no property beyond those listed (patternProperties are refused by the writer, so none hide elsewhere).
    const closedTo = schema.additionalProperties === false ? new Set(isObject(props) ? Object.keys(props) : []) : null;
    return { types, values: null, tags, required, closedTo };
  }

  private expanded(target: string, schema: unknown, entered: number[], depth: number): string | null {
    // Without recursion met inside, a ref's regex depends on its depth (and whether containers are cut) alone:
    // written once, however many places use it.
    const key = `${depth} ${this.scalarsOnly > 0} ${target}`;
    const cached = this.refCache.get(key);
    if (cached !== undefined) return cached;
    const recursionsBefore = this.recursions;
    entered.push(depth);
    this.expanding.set(target, entered);
    try {
      const r = this.value(schema, target, depth);
      if (this.recursions === recursionsBefore) this.refCache.set(key, r);
      return r;
    } finally {
      entered.pop();
    }
  }

  /**
   * A call of the rule for `target`, written on first use from a fresh
   * context (`target` alone entered, at depth 0), so its body does not
   * depend on where it was first met and one body serves every call.
   */
  private call(target: string, schema: unknown): string {
    const rules = this.rules!;
    let name = this.ruleNames.get(target);
    if (name === undefined) {
      name = `def-${this.ruleNames.size}`;
      this.ruleNames.set(target, name);
      rules.set(name, null);
      const outer = this.expanding;
      this.expanding = new Map([[target, [0]]]);
      try {
        // A body that admits nothing is written as a class of no character; its calls are then dropped.
        rules.set(name, this.value(schema, target, 0) ?? '[^\\x00-\\u{10FFFF}]');
      } finally {
        this.expanding = outer;
      }
    }
    return `(?&${name})`;
  }

  private typed(type: string, schema: Schema, path: string, depth: number): string | null {
    switch (type) {
      case 'string': return this.string(schema, path);
      case 'integer': return this.integer(schema, path);
      case 'number': return this.number(schema, path);
      case 'boolean': return BOOLEAN;
      case 'null': return NULL;
      case 'array': return this.scalarsOnly > 0 ? null : this.array(schema, path, depth);
      default: return this.scalarsOnly > 0 ? null : this.object(schema, path, depth);
    }
  }

  private string(schema: Schema, path: string): string | null {
    const min = nonNegativeInteger(schema, 'minLength', path);
    const max = nonNegativeInteger(schema, 'maxLength', path);
    // A contentEncoding (zod's z.base64() writes it beside its format and pattern) is followed as the format of its name.
    let format = schema.format;
    if ('contentEncoding' in schema) {
      const encoding = schema.contentEncoding;
      if (typeof encoding !== 'string' || !CONTENT_ENCODINGS.includes(encoding)) throw new SchemaError(pointer(path, 'contentEncoding'), `the contentEncoding ${JSON.stringify(encoding)} is not supported (${CONTENT_ENCODINGS.join(', ')} are)`);
      if (format !== undefined && format !== encoding) throw new SchemaError(pointer(path, 'contentEncoding'), `the contentEncoding ${encoding} beside the format ${JSON.stringify(format)} is not supported`);
      format = encoding;
    }
    // A format beside a pattern: the pattern is followed. zod writes its formats so (uuid, datetime, email: the
    // format named, its pattern beside it), and the two are one language there; as outlines, the pattern first.
    if ('pattern' in schema && typeof format !== 'string' && format !== undefined) throw new SchemaError(pointer(path, 'format'), 'format must be a string');
    let content: string | null = null;
    const zodSpelling = typeof format === 'string' && Object.hasOwn(ZOD_FORMAT_PATTERNS, format) && schema.pattern === ZOD_FORMAT_PATTERNS[format];
    if ('pattern' in schema && !zodSpelling) {
      const p = schema.pattern;
      if (typeof p !== 'string') throw new SchemaError(pointer(path, 'pattern'), 'pattern must be a string');
      try {
        content = `(?:${jsonStringPattern(p)})`;
      } catch (e) {
        if (e instanceof PatternError) throw new SchemaError(pointer(path, 'pattern'), e.message);
        throw e;
      }
    } else if (format !== undefined) {
      const f = format;
      const r = typeof f === 'string' && Object.hasOwn(FORMATS, f) ? FORMATS[f] : undefined;
      if (r === undefined) throw new SchemaError(pointer(path, 'format'), `the format ${JSON.stringify(f)} is not supported (${FORMAT_NAMES} are)`);
      content = r;
      // A length its texts already keep to says nothing (Pydantic's HttpUrl: a URI of at most 2,083); one none of them
      // keeps to, no value does.
      const bounds = boundsOfFormat(f as string);
      if (bounds.min >= (min ?? 0) && bounds.max <= (max ?? Infinity)) return `"${content}"`;
      if (bounds.max < (min ?? 0) || bounds.min > (max ?? Infinity)) return null;
    }
    if (min !== undefined && max !== undefined && min > max) return null;
    if (content === null) {
      if (min === undefined && max === undefined) return STRING;
      // The bound past what a count can say is named: a minLength of 1e8 was blamed on maxLength (review h135).
      const past = min !== undefined && min > MAX_COUNT * MAX_COUNT ? 'minLength' : 'maxLength';
      return `"${repeat(CODE_POINT, min ?? 0, max ?? Infinity, pointer(path, past))}"`;
    }
    if ((min ?? 0) === 0 && max === undefined) return `"${content}"`;
    const counted = this.lengthOf(content, min ?? 0, max ?? Infinity, path);
    return counted === null ? null : `"${counted}"`;
  }

  /**
   * `content` (a string's, between its quotes) with its decoded value's length
   * in code points within [min, max]: the product regex-syntax.ts's
   * `(?json-length...)` stands for, its automaton built here once so that one
   * past a pool's bounds is refused naming the length (maxLength, or
   * minLength where it stands alone), not the whole schema, and one no text
   * fits (a date of 9 characters) is no value (null).
   */
  private lengthOf(content: string, min: number, max: number, path: string): string | null {
    const at = pointer(path, max !== Infinity ? 'maxLength' : 'minLength');
    if (min > MAX_JSON_LENGTH) throw new SchemaError(pointer(path, 'minLength'), `a length past ${MAX_JSON_LENGTH} beside a pattern or format is not supported`);
    if (max !== Infinity && max > MAX_JSON_LENGTH) throw new SchemaError(at, `a length past ${MAX_JSON_LENGTH} beside a pattern or format is not supported`);
    const r = `${JSON_LENGTH_OPENING}${min}${max === min ? '' : `,${max === Infinity ? '' : max}`}}:${content})`;
    let built = this.lengthStates.get(r);
    if (built === undefined) {
      try {
        // Charged with the pattern's own states too, and where no text fits: such a group (maxLength 0 beside a
        // pattern of one large class) builds its pattern all the same, and many of them were free (review h95).
        const nfa = buildByteNfa(parseRegex(r));
        built = { states: nfa.stateCount, matches: nfa.matchesSomething };
        this.lengthStatesUsed += nfa.builtStates - nfa.stateCount;
      } catch (e) {
        if (e instanceof RegexTooLargeError) throw this.lengthTooLarge(at, 'this length beside the string\'s pattern or format needs');
        // What the pattern's own reading let through and the engine does not take (a lone surrogate in a class).
        if (e instanceof RegexSyntaxError) throw new SchemaError(pointer(path, 'pattern'), e.message);
        throw e;
      }
      this.lengthStates.set(r, built);
    }
    if (built.matches) this.lengthStatesUsed += built.states;
    if (this.lengthStatesUsed > DEFAULT_MAX_NFA_STATES) throw this.lengthTooLarge(at, "the schema's lengths beside patterns or formats need, with this one,");
    return built.matches ? r : null;
  }

  private lengthTooLarge(at: string, what: string): SchemaError {
    return new SchemaError(at, `${what} more than ${DEFAULT_MAX_NFA_STATES} automaton states (each code point counted is a copy of the pattern's): send a smaller maxLength or a simpler pattern`);
  }

  private bound(schema: Schema, key: string, path: string): number | undefined {
    const v = schema[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new SchemaError(pointer(path, key), `${key} must be a number`);
    return v;
  }

  private integer(schema: Schema, path: string): string | null {
    let lo = -Infinity;
    let hi = Infinity;
    const min = this.bound(schema, 'minimum', path);
    const xmin = this.bound(schema, 'exclusiveMinimum', path);
    const max = this.bound(schema, 'maximum', path);
    const xmax = this.bound(schema, 'exclusiveMaximum', path);
    if (min !== undefined) lo = Math.max(lo, Math.ceil(min));
    if (xmin !== undefined) lo = Math.max(lo, Math.floor(xmin) + 1);
    if (max !== undefined) hi = Math.min(hi, Math.floor(max));
    if (xmax !== undefined) hi = Math.min(hi, Math.ceil(xmax) - 1);
    // OpenAPI's integer formats (they were read past, unheeded): as the bounds they are, int64's within ±(2^53 - 1),
    // the most these bounds hold exactly (a part of int64, as other formats are written as a part of their texts).
    // Beside `type: [..., "string"]` a string's format is that string's.
    const stringsFormat = Array.isArray(schema.type) && schema.type.includes('string') && typeof schema.format === 'string' && Object.hasOwn(FORMATS, schema.format);
    if ('format' in schema && !stringsFormat) {
      // Any other (a generator's own name) is read past, as a number's `float` and `double` are and as all were before:
      // a 400 for it broke schemas that had compiled.
      const range = typeof schema.format === 'string' && Object.hasOwn(INTEGER_FORMATS, schema.format) ? INTEGER_FORMATS[schema.format] : undefined;
      if (range !== undefined) {
        lo = Math.max(lo, range[0]);
        hi = Math.min(hi, range[1]);
      }
    }
    if (lo === -Infinity && hi === Infinity) return INTEGER;
    for (const [v, key] of [[lo, min !== undefined ? 'minimum' : 'exclusiveMinimum'], [hi, max !== undefined ? 'maximum' : 'exclusiveMaximum']] as const) {
      if (Number.isFinite(v) && !Number.isSafeInteger(v)) throw new SchemaError(pointer(path, key), 'a bound past 2^53');
    }
    const r = integerRangeRegex(lo, hi);
    return r === null ? null : `(?:${r})`;
  }

  /** Integer bounds are held exactly (bounded numbers lose the exponent); a fractional bound is refused. */
  private number(schema: Schema, path: string): string | null {
    const bound = (key: string, exclusive: boolean): NumberBound | null => {
      const v = this.bound(schema, key, path);
      if (v === undefined) return null;
      if (!Number.isInteger(v)) throw new SchemaError(pointer(path, key), `${key} on a number is supported only as an integer`);
      if (!Number.isSafeInteger(v)) throw new SchemaError(pointer(path, key), `${key} on a number is supported only within ±2^53 (an integer bound past it is not held exactly)`);
      return { value: v, exclusive };
    };
    // Of two bounds on one side the tighter one holds (the exclusive one at a tie).
    const tighter = (a: NumberBound | null, b: NumberBound | null, sign: number): NumberBound | null =>
      a === null ? b : b === null ? a : sign * (a.value - b.value) > 0 || (a.value === b.value && a.exclusive) ? a : b;
    const lo = tighter(bound('minimum', false), bound('exclusiveMinimum', true), 1);
    const hi = tighter(bound('maximum', false), bound('exclusiveMaximum', true), -1);
    if (lo === null && hi === null) return NUMBER;
    const r = numberRangeRegex(lo, hi);
    return r === null ? null : `(?:${r})`;
  }

  /** `\[ ELEMENTS \]`, elements as `,`-separated whitespace-padded values. */
  private array(schema: Schema, path: string, depth: number): string | null {
    const min = nonNegativeInteger(schema, 'minItems', path) ?? 0;
    let max = nonNegativeInteger(schema, 'maxItems', path) ?? Infinity;
    if (min > max) return null;
    const tuple = Array.isArray(schema.items);
    const prefixKey = tuple ? 'items' : 'prefixItems';
    const prefixSchemas = schema[prefixKey] ?? [];
    if (!Array.isArray(prefixSchemas)) throw new SchemaError(pointer(path, prefixKey), `${prefixKey} must be an array`);
    const prefix: string[] = [];
    for (let i = 0; i < prefixSchemas.length && i < max; i++) {
      const r = this.value(prefixSchemas[i], pointer(pointer(path, prefixKey), i), depth + 1);
      if (r === null) {
        max = i;
        break;
      }
      prefix.push(r);
    }
    let rest: string | null = null;
    if (max > prefix.length) {
      // After a tuple (draft 7's items as an array), additionalItems says what may follow (anything, where absent);
      // beside items as one schema, or none, it says nothing (as JSON Schema has it).
      const itemSchema = tuple ? (schema.additionalItems ?? true) : schema.items === undefined ? true : schema.items;
      rest = itemSchema === false ? null : this.value(itemSchema, pointer(path, tuple ? 'additionalItems' : 'items'), depth + 1);
    }
    const restMax = rest === null ? 0 : max - prefix.length;
    if (prefix.length + restMax < min) return null;
    const sep = `${this.ws},${this.ws}`;
    // Built from the end: the items after the prefix, then each prefix item
    // before them, optional where min allows stopping there.
    const restMin = Math.max(0, min - prefix.length);
    let tail = rest === null || restMax === 0 ? '' : repeat(`${sep}${rest}`, restMin, restMax, pointer(path, 'maxItems'));
    let body: string;
    if (prefix.length === 0) {
      if (rest === null || restMax === 0) return `\\[${this.ws}\\]`;
      const more = repeat(`${sep}${rest}`, Math.max(0, min - 1), restMax - 1, pointer(path, 'maxItems'));
      body = min === 0 ? `(?:${rest}${more}${this.ws})?` : `${rest}${more}${this.ws}`;
      return `\\[${this.ws}${body}\\]`;
    }
    for (let i = prefix.length - 1; i >= 1; i--) {
      const item = `${sep}${prefix[i]}${tail}`;
      tail = i + 1 > min ? `(?:${item})?` : item;
    }
    body = `${prefix[0]}${tail}${this.ws}`;
    return `\\[${this.ws}${min === 0 ? `(?:${body})?` : body}\\]`;
  }

  private object(schema: Schema, path: string, depth: number): string | null {
    const props = schema.properties;
    const extra = schema.additionalProperties;
    // Every key is a string: zod writes propertyNames {type: "string"} for z.record(z.string(), ...). Other names are not followed.
    const keyNames = schema.propertyNames;
    if (keyNames !== undefined && keyNames !== true && !(isObject(keyNames) && Object.keys(keyNames).every((k) => ANNOTATIONS.has(k) || (k === 'type' && keyNames.type === 'string')))) {
      throw new SchemaError(pointer(path, 'propertyNames'), 'propertyNames other than {"type": "string"} is not supported');
    }
    if (props !== undefined && !isObject(props)) throw new SchemaError(pointer(path, 'properties'), 'properties must be an object');
    const required = schema.required ?? [];
    if (!Array.isArray(required) || required.some((r) => typeof r !== 'string')) throw new SchemaError(pointer(path, 'required'), 'required must be an array of strings');
    const listed = new Set(Object.keys(props ?? {}));
    const requiredSet = new Set(required as string[]);
    // A required name properties does not list is written after them, its value additionalProperties'.
    const names = [...listed, ...[...requiredSet].filter((r) => !listed.has(r))];
    if (names.length === 0) {
      if (extra === false) return `\\{${this.ws}\\}`;
      return this.objectOf(this.value(extra ?? true, pointer(path, 'additionalProperties'), depth + 1));
    }
    // With properties, only those are written (outlines' layout): additional
    // ones a schema allows are never needed to be valid, so none is offered.
    const members: { kv: string; required: boolean }[] = [];
    for (const name of names) {
      const isListed = listed.has(name);
      const sub = isListed ? props![name] : extra ?? true;
      const at = isListed ? pointer(pointer(path, 'properties'), name) : pointer(path, 'additionalProperties');
      // A false property may not appear: it admits no value.
      const v = sub === false ? null : this.value(sub, at, depth + 1);
      const isRequired = requiredSet.has(name);
      if (v === null) {
        if (isRequired) return null;
        continue;
      }
      members.push({ kv: `${regexLiteral(JSON.stringify(name))}${this.ws}:${this.ws}${v}`, required: isRequired });
    }
    return this.objectBody(members);
  }

  private objectBody(members: readonly { kv: string; required: boolean }[]): string {
    const sep = `${this.ws},${this.ws}`;
    if (members.length === 0) return `\\{${this.ws}\\}`;
    const last = members.map((m) => m.required).lastIndexOf(true);
    if (last < 0) return `\\{${this.ws}(?:${this.optionalMembers(members.map((m) => m.kv))}${this.ws})?\\}`;
    // Before the last required member each one present is followed by a
    // comma, after it each one is preceded by one.
    let body = '';
    members.forEach((m, i) => {
      const part = i < last ? `${m.kv}${sep}` : i > last ? `${sep}${m.kv}` : m.kv;
      body += m.required ? part : `(?:${part})?`;
    });
    return `\\{${this.ws}${body}${this.ws}\\}`;
  }

  /**
   * Any non-empty subsequence of `kvs`, comma-separated. Built left to right
   * as S(k+1) = S(k)(,p_k)? | p_k, each member written twice (outlines' one
   * alternative per first member is quadratic) -- or, where shorter, with the
   * longest member written once: present (those before it each followed by a
   * comma, those after preceded by one) or absent (S of the others). Nested
   * objects of optional members then grow by their own size a level, not twice it.
   */
  private optionalMembers(kvs: readonly string[]): string {
    const sep = `${this.ws},${this.ws}`;
    const twice = (list: readonly string[]): string => {
      let seq = list[0];
      for (let i = 1; i < list.length; i++) seq = `(?:${this.bounded(seq)}(?:${sep}${list[i]})?|${list[i]})`;
      return seq;
    };
    if (kvs.length === 1) return kvs[0];
    let pivot = 0;
    kvs.forEach((kv, i) => {
      if (kv.length > kvs[pivot].length) pivot = i;
    });
    const others = kvs.filter((_, i) => i !== pivot);
    const around = kvs.map((kv, i) => (i < pivot ? `(?:${kv}${sep})?` : i > pivot ? `(?:${sep}${kv})?` : kv)).join('');
    const once = `(?:${around}|${twice(others)})`;
    const plain = twice(kvs);
    return this.bounded(once.length < plain.length ? once : plain);
  }

  /** An object with any keys, each value matching `v` (null: only the empty object). */
  private objectOf(v: string | null): string {
    if (v === null) return `\\{${this.ws}\\}`;
    const kv = `${STRING}${this.ws}:${this.ws}${v}`;
    return `\\{${this.ws}(?:${kv}(?:${this.ws},${this.ws}${kv})*${this.ws})?\\}`;
  }

  private arrayOf(v: string | null): string {
    if (v === null) return `\\[${this.ws}\\]`;
    return `\\[${this.ws}(?:${v}(?:${this.ws},${this.ws}${v})*${this.ws})?\\]`;
  }

  /** Any JSON value with containers nested at most `budget` deep (as rules: any depth). */
  private anyValue(budget: number): string {
    if (this.rules !== null) {
      if (!this.rules.has(ANY_VALUE_RULE)) {
        const value = `(?&${ANY_VALUE_RULE})`;
        this.rules.set(ANY_VALUE_RULE, `(?:${SCALAR}|${this.arrayOf(value)}|${this.objectOf(value)})`);
      }
      return `(?&${ANY_VALUE_RULE})`;
    }
    if (budget <= 0) return `(?:${SCALAR})`;
    const cached = this.anyCache.get(budget);
    if (cached !== undefined) return cached;
    const inner = this.anyValue(budget - 1);
    const r = this.bounded(`(?:${SCALAR}|${this.arrayOf(inner)}|${this.objectOf(inner)})`);
    this.anyCache.set(budget, r);
    return r;
  }

  private anyObject(budget: number): string {
    return this.objectOf(this.anyValue(budget - 1));
  }
}

/** The regex whose full matches are the JSON texts (in the layout above) valid under `schema`. */
export function jsonSchemaRegex(schema: unknown, options: JsonSchemaRegexOptions = {}): string {
  return new RegexBuilder(schema, options).document();
}

/** The regex for any JSON object (`response_format: {"type": "json_object"}`), containers nested at most `maxDepth` deep (the object itself one of them). */
export function jsonObjectRegex(options: JsonSchemaRegexOptions = {}): string {
  return new RegexBuilder({}, options).anyObjectDocument();
}

/** jsonSchemaRegex's language with no depth bound (`maxDepth` unused), as rules. */
export function jsonSchemaRules(schema: unknown, options: JsonSchemaRegexOptions = {}): JsonSchemaRules {
  const builder = new RegexBuilder(schema, options, true);
  const root = builder.document();
  return { root, rules: builder.writtenRules() };
}

/** jsonObjectRegex's language with no depth bound, as rules. */
export function jsonObjectRules(options: JsonSchemaRegexOptions = {}): JsonSchemaRules {
  const builder = new RegexBuilder({}, options, true);
  const root = builder.anyObjectDocument();
  return { root, rules: builder.writtenRules() };
}
