/**
 * A JSON Schema `pattern` as a regex over a JSON string's *encoded* content:
 * the pattern speaks of the decoded value, but the model writes the encoding,
 * so a `"` or `\` or control character the pattern allows is written as its
 * escape (the one JSON.stringify writes), and `.` or a class never lets a raw
 * `"` end the string early. Only the structured-output regex subset is
 * accepted (literals, escaped metacharacters, \d \w \s and \D \W \S, \n \r \t \f \v, \xHH,
 * \uHHHH, `.`, classes, groups, `|`, * + ? {n} {n,} {n,m} with counts ≤ 1000);
 * anything else is a PatternError, never a guess.
 */

export class PatternError extends Error {}

/** The characters the regex subset spells only escaped. */
const META = '\\.*+?()[]{}|^$/';
/** Escapes a pattern may use besides META's (outside a class JS's `u` mode refuses `\-` and `\"`, so none is written). */
const ESCAPABLE = META + '-"';
const MAX_COUNT = 1000;
/** As the regex engine's parser (regex-syntax.ts): deeper overflows the stack. */
const MAX_GROUP_DEPTH = 200;
const MAX_CODE_POINT = 0x10ffff;

type Range = [number, number];

const DIGIT: Range[] = [[0x30, 0x39]];
const WORD: Range[] = [[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]];
// ASCII \s, as the engine reads it: \t \n \v \f \r and space.
const SPACE: Range[] = [[0x09, 0x0d], [0x20, 0x20]];
// ECMA `.`: anything but a line terminator.
const DOT_EXCLUDED: Range[] = [[0x0a, 0x0a], [0x0d, 0x0d], [0x2028, 0x2029]];
/**
 * Every space any common reader of a pattern counts in \s: ECMA's (JS, ajv),
 * Python's `re` and Rust's `regex` (Pydantic) on Unicode text.
 */
const ANY_SPACE: Range[] = [[0x09, 0x0d], [0x1c, 0x20], [0x85, 0x85], [0xa0, 0xa0], [0x1680, 0x1680], [0x2000, 0x200a], [0x2028, 0x2029], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000], [0xfeff, 0xfeff]];
const ASCII: Range[] = [[0x00, 0x7f]];
/**
 * \D \W \S, as a part of every such reader's: \S is what no reader counts
 * as a space; \D and \W are ASCII's non-digits and non-word characters,
 * since Python and Rust count Unicode digits and letters in \d and \w (a
 * "é" matches \W in JS and not in Pydantic). A JSON string's specials are
 * then written as their escapes.
 */
const NEGATED_SETS: Readonly<Record<string, Range[]>> = {
  D: intersect(complement(DIGIT), ASCII),
  W: intersect(complement(WORD), ASCII),
  S: complement(ANY_SPACE),
};
/** What a JSON string never holds raw: controls, `"` and `\`. */
const JSON_SPECIAL: Range[] = [[0x00, 0x1f], [0x22, 0x22], [0x5c, 0x5c]];

/** A literal code point for the regex (outside a class), escaped where it is a metacharacter. */
export function regexLiteral(text: string): string {
  let out = '';
  for (const ch of text) out += META.includes(ch) ? `\\${ch}` : ch;
  return out;
}

/** The regex for the JSON encoding of one code point (JSON.stringify's). */
function encodedChar(cp: number): string {
  switch (cp) {
    case 0x22: return '\\\\"';
    case 0x5c: return '\\\\\\\\';
    case 0x08: return '\\\\b';
    case 0x09: return '\\\\t';
    case 0x0a: return '\\\\n';
    case 0x0c: return '\\\\f';
    case 0x0d: return '\\\\r';
  }
  if (cp < 0x20) return `\\\\u00${cp.toString(16).padStart(2, '0')}`;
  return regexLiteral(String.fromCodePoint(cp));
}

function classChar(cp: number): string {
  return cp <= 0xffff ? `\\u${cp.toString(16).padStart(4, '0')}` : String.fromCodePoint(cp);
}

function classBody(ranges: readonly Range[]): string {
  return ranges.map(([lo, hi]) => (lo === hi ? classChar(lo) : `${classChar(lo)}-${classChar(hi)}`)).join('');
}

function normalise(ranges: readonly Range[]): Range[] {
  const sorted = ranges.map((r): Range => [r[0], r[1]]).sort((a, b) => a[0] - b[0]);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push(r);
  }
  return out;
}

function complement(ranges: readonly Range[]): Range[] {
  const out: Range[] = [];
  let next = 0;
  for (const [lo, hi] of normalise(ranges)) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= MAX_CODE_POINT) out.push([next, MAX_CODE_POINT]);
  return out;
}

function intersect(a: readonly Range[], b: readonly Range[]): Range[] {
  const out: Range[] = [];
  for (const [alo, ahi] of a) {
    for (const [blo, bhi] of b) {
      const lo = Math.max(alo, blo);
      const hi = Math.min(ahi, bhi);
      if (lo <= hi) out.push([lo, hi]);
    }
  }
  return normalise(out);
}

/**
 * The encoded form of a set of code points: the ones JSON writes raw as one
 * class, each special one as its escape. A set that reaches past the BMP is
 * written as a negated class (\uHHHH cannot name what lies above it).
 */
function encodedSet(set: readonly Range[]): string {
  const norm = normalise(set);
  const specials = intersect(norm, JSON_SPECIAL);
  const parts: string[] = [];
  const top = norm[norm.length - 1];
  if (top && top[1] > 0xffff) {
    const excluded = normalise([...complement(norm), ...JSON_SPECIAL]);
    if (excluded.length > 0) parts.push(`[^${classBody(excluded)}]`);
    else parts.push('.');
  } else {
    const raw = intersect(norm, complement(JSON_SPECIAL));
    if (raw.length > 0) parts.push(`[${classBody(raw)}]`);
  }
  // Controls without a short escape share one \u00 prefix (`.` holds 27 of them).
  const hex: string[] = [];
  for (const [lo, hi] of specials) {
    for (let cp = lo; cp <= hi; cp++) {
      const enc = encodedChar(cp);
      if (enc.startsWith('\\\\u00')) hex.push(enc.slice(5));
      else parts.push(enc);
    }
  }
  if (hex.length > 0) parts.push(hex.length === 1 ? `\\\\u00${hex[0]}` : `\\\\u00(?:${hex.join('|')})`);
  if (parts.length === 0) throw new PatternError('a class that matches nothing');
  return parts.length === 1 ? parts[0] : `(?:${parts.join('|')})`;
}

class PatternParser {
  private i = 0;
  private depth = 0;
  constructor(private readonly src: string) {}

  parse(): string {
    const out = this.alternatives();
    if (this.i < this.src.length) throw this.error(`unexpected "${this.src[this.i]}"`);
    return out;
  }

  private error(what: string): PatternError {
    return new PatternError(`${what} at ${this.i} in pattern ${JSON.stringify(this.src)}`);
  }

  private alternatives(): string {
    const parts = [this.sequence()];
    while (this.src[this.i] === '|') {
      this.i++;
      parts.push(this.sequence());
    }
    return parts.join('|');
  }

  private sequence(): string {
    // Read whole, a top-level alternative's own `^` and `$` anchor nothing more (zod's z.mac() writes `^a$|^b$`).
    if (this.depth === 0 && this.src[this.i] === '^') this.i++;
    let out = '';
    while (this.i < this.src.length && this.src[this.i] !== '|' && this.src[this.i] !== ')') {
      if (this.depth === 0 && this.src[this.i] === '$' && (this.i + 1 === this.src.length || this.src[this.i + 1] === '|')) {
        this.i++;
        break;
      }
      out += this.quantified();
    }
    return out;
  }

  private quantified(): string {
    const atom = this.atom();
    const q = this.quantifier();
    return q === '' ? atom : `(?:${atom})${q}`;
  }

  private quantifier(): string {
    const c = this.src[this.i];
    let q = '';
    if (c === '*' || c === '+' || c === '?') {
      this.i++;
      q = c;
    } else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.i));
      if (!m) throw this.error('a "{" that is not a count');
      const lo = Number(m[1]);
      const hi = m[3] ? Number(m[3]) : undefined;
      if (lo > MAX_COUNT || (hi !== undefined && (hi > MAX_COUNT || hi < lo))) throw this.error('a count past 1000 or out of order');
      this.i += m[0].length;
      q = m[0];
    } else {
      return '';
    }
    const after = this.src[this.i];
    if (after === '?') throw this.error('a lazy quantifier');
    if (after === '*' || after === '+' || after === '{') throw this.error('a quantifier on a quantifier');
    return q;
  }

  private atom(): string {
    const c = this.src[this.i];
    if (c === '(') return this.group();
    if (c === '[') return this.characterClass();
    if (c === '.') {
      this.i++;
      return encodedSet(complement(DOT_EXCLUDED));
    }
    if (c === '\\') return this.escapeAtom();
    if ('*+?{}]^$'.includes(c)) throw this.error(`"${c}" where a character belongs`);
    return encodedChar(this.literalCodePoint());
  }

  /** The code point at `this.i`, written as itself (a pair of surrogates is one); a lone surrogate is refused. */
  private literalCodePoint(): number {
    const cp = this.src.codePointAt(this.i)!;
    this.refuseSurrogate(cp);
    this.i += cp > 0xffff ? 2 : 1;
    return cp;
  }

  /**
   * UTF-8 text has no surrogates: a pattern naming one alone (a class of
   * them is JavaScript's way without the u flag to match astral characters)
   * was refused by the engine later as a schema "too large" (review h142).
   */
  private refuseSurrogate(cp: number, at = this.i): void {
    if (cp >= 0xd800 && cp <= 0xdfff) {
      this.i = at;
      throw this.error(`a lone surrogate (U+${cp.toString(16).toUpperCase()}), which UTF-8 text never holds; name the characters themselves (astral ones as [\\u{10000}-\\u{10FFFF}], or a pair of escapes \\uD83D\\uDE00 for one)`);
    }
  }

  private group(): string {
    if (++this.depth > MAX_GROUP_DEPTH) throw this.error(`groups nested deeper than ${MAX_GROUP_DEPTH}`);
    this.i++;
    if (this.src[this.i] === '?') {
      const next = this.src[this.i + 1];
      if (next !== ':') throw this.error(next === '=' || next === '!' || next === '<' ? 'a lookaround or named group' : 'an inline flag (such as (?i))');
      this.i += 2;
    }
    const inner = this.alternatives();
    if (this.src[this.i] !== ')') throw this.error('an unclosed group');
    this.i++;
    this.depth--;
    return `(?:${inner})`;
  }

  private escapeAtom(): string {
    const c = this.src[this.i + 1];
    if (c === 'd' || c === 'w') {
      this.i += 2;
      return `\\${c}`;
    }
    if (c === 's') {
      this.i += 2;
      return encodedSet(SPACE);
    }
    const negated = c === undefined ? undefined : NEGATED_SETS[c];
    if (negated) {
      this.i += 2;
      return encodedSet(negated);
    }
    return encodedChar(this.escapedCodePoint());
  }

  /** One escape naming one character (\n, \xHH, \uHHHH, an escaped metacharacter); `this.i` on the backslash. */
  private escapedCodePoint(): number {
    const at = this.i;
    const c = this.src[this.i + 1];
    const simple: Record<string, number> = { n: 0x0a, r: 0x0d, t: 0x09, f: 0x0c, v: 0x0b };
    if (c !== undefined && c in simple) {
      this.i += 2;
      return simple[c];
    }
    if (c === 'u' && this.src[this.i + 2] === '{') {
      // ECMA-262's \u{...} (under the u flag): any code point, astral ones included.
      const m = /^\{([0-9a-fA-F]{1,6})\}/.exec(this.src.slice(this.i + 2, this.i + 11));
      const cp = m ? parseInt(m[1], 16) : NaN;
      if (!m || cp > 0x10ffff) throw this.error('a malformed \\u{...} escape (1 to 6 hex digits, at most 10FFFF)');
      this.refuseSurrogate(cp);
      this.i += 4 + m[1].length;
      return cp;
    }
    if (c === 'x' || c === 'u') {
      const len = c === 'x' ? 2 : 4;
      const hex = this.src.slice(this.i + 2, this.i + 2 + len);
      if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(hex)) throw this.error(`a malformed \\${c} escape`);
      this.i += 2 + len;
      let cp = parseInt(hex, 16);
      // A high surrogate's escape followed by a low one's is the one character the pair stands for.
      const low = cp >= 0xd800 && cp <= 0xdbff ? /^\\u(d[c-f][0-9a-f]{2})/i.exec(this.src.slice(this.i, this.i + 6)) : null;
      if (low) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (parseInt(low[1], 16) - 0xdc00);
        this.i += 6;
      }
      this.refuseSurrogate(cp, at);
      return cp;
    }
    if (c !== undefined && ESCAPABLE.includes(c)) {
      this.i += 2;
      return c.charCodeAt(0);
    }
    throw this.error(`the escape \\${c ?? ''}, outside the subset`);
  }

  private characterClass(): string {
    this.i++;
    const negated = this.src[this.i] === '^';
    if (negated) this.i++;
    const ranges: Range[] = [];
    while (this.src[this.i] !== ']') {
      if (this.i >= this.src.length) throw this.error('an unclosed class');
      const set = this.classAtom();
      if (typeof set !== 'number') {
        ranges.push(...set);
        continue;
      }
      if (this.src[this.i] === '-' && this.src[this.i + 1] !== ']' && this.i + 1 < this.src.length) {
        this.i++;
        const hi = this.classAtom();
        if (typeof hi !== 'number' || hi < set) throw this.error('a malformed range');
        ranges.push([set, hi]);
      } else {
        ranges.push([set, set]);
      }
    }
    this.i++;
    if (ranges.length === 0) throw this.error('an empty class');
    return encodedSet(negated ? complement(ranges) : ranges);
  }

  /** A class member: one code point, or the set \d \w \s stand for. */
  private classAtom(): number | Range[] {
    const c = this.src[this.i];
    if (c === '\\') {
      const e = this.src[this.i + 1];
      const sets: Record<string, Range[]> = { d: DIGIT, w: WORD, s: SPACE, ...NEGATED_SETS };
      if (e !== undefined && e in sets) {
        this.i += 2;
        return sets[e];
      }
      return this.escapedCodePoint();
    }
    if (c === '[') throw this.error('a "[" inside a class');
    return this.literalCodePoint();
  }
}

/**
 * The regex (subset) matching the encoded contents (between the quotes) of
 * the JSON strings whose value fully matches `pattern`. A leading `^` and a
 * trailing `$` are dropped, the pattern's and each top-level alternative's:
 * the match is whole either way (outlines' reading).
 */
export function jsonStringPattern(pattern: string): string {
  let body = pattern.startsWith('^') ? pattern.slice(1) : pattern;
  if (body.endsWith('$') && !/(^|[^\\])(\\\\)*\\\$$/.test(body)) body = body.slice(0, -1);
  return new PatternParser(body).parse();
}
