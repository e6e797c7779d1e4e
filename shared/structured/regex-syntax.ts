/**
 * A structured output's regex (vLLM's `structured_outputs.regex` /
 * `guided_regex`) parsed to a tree. The whole output must match it, so the
 * language must be regular: what cannot be decided byte by byte is refused
 * with a RegexSyntaxError naming where, never silently read another way.
 *
 * Supported:
 * - literals: any Unicode character (astral ones too); escaped ASCII
 *   punctuation (`\. \* \+ \? \( \) \[ \] \{ \} \| \\ \^ \$ \/ \- \"` ...)
 *   and escaped non-ASCII characters stand for themselves;
 * - `\d \D \w \W \s \S` in their ASCII meanings (\d = [0-9],
 *   \w = [A-Za-z0-9_], \s = [ \t\n\r\f\v]); `\n \r \t \f \v \0`, `\xHH`,
 *   `\uHHHH` (a surrogate pair of them is one character), `\u{H...}`;
 * - `.`: any character but \n;
 * - classes `[...]`, `[^...]`: ranges, the escapes above (and `\b` =
 *   backspace), `-` first or last and `]` first stand for themselves;
 * - groups `(...)`, `(?:...)`, `(?<name>...)`, `(?P<name>...)` (nothing is
 *   captured: only the language counts); alternation `|`, empty
 *   alternatives included;
 * - `* + ? {n} {n,} {n,m}` (counts up to 1000), each optionally lazy
 *   (`*?`: the same language);
 * - `^` first and `$` last in the pattern (no-ops: the whole text matches);
 * - `(?json-length{m,n}:...)` (also `{m}`, `{m,}`; counts up to 1,000,000),
 *   this server's own: the group's texts that are a JSON string's content
 *   whose decoded value has m to n code points (json-string-length.ts), how
 *   a JSON schema's string length beside its pattern is written
 *   (json-schema-regex.ts). No rule call inside it.
 * - `(?any-tail)`, this server's own, only at the pattern's end (nothing
 *   may follow it, and not inside a JSON-length group): the rest of the
 *   output, whatever it is, any bytes, and to the pool any tokens (those
 *   that print nothing included): how tool_choice "auto" lets a reply that
 *   starts as text go on as it would with no constraint (edge/tool-calls.ts).
 *
 * Refused: lookarounds, backreferences, `\b \B` outside classes, inline
 * flags, atomic groups, possessive quantifiers, `\p{..}`, `\cX`, octal
 * escapes, a lone `{` or `}` (escape it), unbalanced parentheses or
 * brackets, a quantifier with nothing (or another quantifier) before it,
 * `{m,n}` with m > n, ranges whose start is above their end.
 */

import type { ExpressionNode, RuleReference } from './expression-node';
import { type CodePointSet, MAX_CODE_POINT, complementSet, normalizeSet, setOf } from './code-point-set';

export type RegexNode = ExpressionNode;

/** A pattern the regex language cannot take; `position` is its index (UTF-16) in the pattern. */
export class RegexSyntaxError extends Error {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(`${message} (at ${position})`);
    this.name = 'RegexSyntaxError';
  }
}

export const MAX_REPEAT_COUNT = 1000;
/** The largest count of a `(?json-length{m,n}:...)` group (its automaton's states bound it far below, for most groups). */
export const MAX_JSON_LENGTH = 1_000_000;
const JSON_LENGTH_GROUP = '(?json-length';
/** This server's group for the rest of the output, whatever it is. */
export const ANY_TAIL = '(?any-tail)';
/** How a JSON-length group opens, its counts after. */
export const JSON_LENGTH_OPENING = `${JSON_LENGTH_GROUP}{`;
/** Deeper nesting is refused before it could overflow the parser's stack. */
export const MAX_GROUP_DEPTH = 200;

const NOT_REGULAR = "a structured output's regex must be a regular language";

const DIGIT: CodePointSet = [0x30, 0x39];
const WORD: CodePointSet = normalizeSet([0x30, 0x39, 0x41, 0x5a, 0x5f, 0x5f, 0x61, 0x7a]);
const SPACE: CodePointSet = normalizeSet([0x09, 0x0d, 0x20, 0x20]); // \t \n \v \f \r and space
const ANY_BUT_NEWLINE: CodePointSet = complementSet(setOf(0x0a));

const EMPTY: RegexNode = { kind: 'empty' };

export function parseRegex(pattern: string): RegexNode {
  return new RegexParser<never>(pattern, null).parse();
}

/**
 * A regex with subroutine calls `(?&name)` (PCRE's), each a RuleReference
 * to `rule(name)`'s number: how a JSON schema's recursive parts are written
 * as a grammar's rules (json-schema-grammar.ts). Never a request's regex.
 */
export function parseRegexWithCalls(pattern: string, rule: (name: string) => number): ExpressionNode<RuleReference> {
  return new RegexParser<RuleReference>(pattern, (name) => ({ kind: 'ref', rule: rule(name) })).parse();
}

type Node<Extra> = ExpressionNode<Extra>;

class RegexParser<Extra> {
  private pos = 0;
  private depth = 0;
  /** JSON-length groups open around the cursor: no call may stand inside one (its product reads bytes only). */
  private inLength = 0;

  /** `call`: what `(?&name)` stands for; null where calls are refused (a request's regex). */
  constructor(
    private readonly src: string,
    private readonly call: ((name: string) => Extra) | null,
  ) {}

  parse(): Node<Extra> {
    if (this.src.startsWith('^')) this.pos = 1;
    const node = this.alternation();
    if (this.pos < this.src.length) throw this.fail('unbalanced ): no group is open here', this.pos);
    return node;
  }

  private fail(message: string, at: number): RegexSyntaxError {
    return new RegexSyntaxError(message, at);
  }

  private peek(offset = 0): string | undefined {
    return this.src[this.pos + offset];
  }

  private alternation(): Node<Extra> {
    const items = [this.concat()];
    while (this.peek() === '|') {
      this.pos++;
      items.push(this.concat());
    }
    return items.length === 1 ? items[0] : { kind: 'alternation', items };
  }

  private concat(): Node<Extra> {
    const items: Node<Extra>[] = [];
    for (;;) {
      const c = this.peek();
      if (c === undefined || c === '|' || c === ')') break;
      if (c === '$') {
        if (this.pos !== this.src.length - 1) {
          throw this.fail('$ is only supported at the very end of the pattern (the whole output matches anyway)', this.pos);
        }
        this.pos++;
        break;
      }
      if (this.quantifierHere()) throw this.fail(`nothing to repeat: ${c} must follow a character, class or group`, this.pos);
      const atom = this.atom();
      items.push(this.quantified(atom));
    }
    if (items.length === 0) return EMPTY;
    return items.length === 1 ? items[0] : { kind: 'concat', items };
  }

  /** Whether a quantifier starts at the cursor (a `{` only when a whole count follows). */
  private quantifierHere(): boolean {
    const c = this.peek();
    return c === '*' || c === '+' || c === '?' || (c === '{' && this.braceCount() !== undefined);
  }

  private braceCount(): { min: number; max: number; length: number; minText: string; maxText: string } | undefined {
    const m = /^\{(\d+)(?:(,)(\d*))?\}/.exec(this.src.slice(this.pos, this.pos + 24));
    if (!m) return undefined;
    const minText = m[1];
    const maxText = m[2] === undefined ? minText : m[3];
    const min = Number(minText);
    const max = maxText === '' ? Infinity : Number(maxText);
    return { min, max, length: m[0].length, minText, maxText };
  }

  private quantified(atom: Node<Extra>): Node<Extra> {
    if (!this.quantifierHere()) return atom;
    const at = this.pos;
    const c = this.peek();
    let min = 0;
    let max = Infinity;
    if (c === '{') {
      const count = this.braceCount()!;
      if (count.min > MAX_REPEAT_COUNT || count.max !== Infinity && count.max > MAX_REPEAT_COUNT) {
        throw this.fail(`repeat counts above ${MAX_REPEAT_COUNT} are not supported`, at);
      }
      if (count.max < count.min) {
        throw this.fail(`repeat count {${count.minText},${count.maxText}} has its minimum above its maximum`, at);
      }
      ({ min, max } = count);
      this.pos += count.length;
    } else {
      if (c === '+') min = 1;
      if (c === '?') max = 1;
      this.pos++;
    }
    if (this.peek() === '?') this.pos++; // lazy: the same language
    else if (this.peek() === '+') throw this.fail('possessive quantifiers are not supported', this.pos);
    if (this.quantifierHere()) {
      throw this.fail('a quantifier cannot follow another: wrap the first in a group (?:...)', this.pos);
    }
    return { kind: 'repeat', item: atom, min, max };
  }

  private atom(): Node<Extra> {
    const at = this.pos;
    const c = this.peek()!;
    switch (c) {
      case '(':
        return this.group();
      case '[':
        return { kind: 'chars', set: this.charClass() };
      case '.':
        this.pos++;
        return { kind: 'chars', set: ANY_BUT_NEWLINE };
      case '\\': {
        const escaped = this.escape(false);
        return { kind: 'chars', set: typeof escaped === 'number' ? setOf(escaped) : escaped };
      }
      case ']':
        throw this.fail('unbalanced ]: write \\] for a literal bracket', at);
      case '{':
        throw this.fail('{ starts a repeat count {n}, {n,} or {n,m}: write \\{ for a literal brace', at);
      case '}':
        throw this.fail('unbalanced }: write \\} for a literal brace', at);
      case '^':
        throw this.fail('^ is only supported at the very start of the pattern (the whole output matches anyway)', at);
      default: {
        const cp = this.src.codePointAt(at)!;
        this.pos += cp > 0xffff ? 2 : 1;
        return { kind: 'chars', set: setOf(cp) };
      }
    }
  }

  private group(): Node<Extra> {
    const open = this.pos;
    this.pos++;
    const called = this.call === null ? null : /^\?&([A-Za-z0-9_-]+)\)/.exec(this.src.slice(this.pos, this.pos + 104));
    if (called && this.call !== null) {
      if (this.inLength > 0) throw this.fail('a rule call inside (?json-length...) is not supported', open);
      this.pos += called[0].length;
      return this.call(called[1]);
    }
    if (this.src.startsWith(ANY_TAIL, open)) {
      if (this.inLength > 0) throw this.fail(`${ANY_TAIL} inside (?json-length...) is not supported`, open);
      this.pos = open + ANY_TAIL.length;
      return { kind: 'anyTail', at: open };
    }
    const length = this.src.startsWith(JSON_LENGTH_GROUP, open) ? this.jsonLengthCounts(open) : null;
    if (length === null && this.peek() === '?') this.groupKind(open);
    if (++this.depth > MAX_GROUP_DEPTH) throw this.fail(`groups nest deeper than ${MAX_GROUP_DEPTH}`, open);
    if (length !== null) this.inLength++;
    const inner = this.alternation();
    if (length !== null) this.inLength--;
    this.depth--;
    if (this.peek() !== ')') throw this.fail('unbalanced (: this group is never closed', open);
    this.pos++;
    return length === null ? inner : { kind: 'jsonLength', item: inner, min: length.min, max: length.max };
  }

  /** The counts of `(?json-length{m,n}:` at `open`, the cursor left after its colon. */
  private jsonLengthCounts(open: number): { min: number; max: number } {
    const from = open + JSON_LENGTH_GROUP.length;
    const m = /^\{(\d{1,7})(?:(,)(\d{0,7}))?\}:/.exec(this.src.slice(from, from + 20));
    if (!m) throw this.fail('(?json-length needs counts {m}, {m,} or {m,n} and a colon: (?json-length{m,n}:...)', open);
    const min = Number(m[1]);
    const max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
    if (min > MAX_JSON_LENGTH || (max !== Infinity && max > MAX_JSON_LENGTH)) throw this.fail(`(?json-length counts above ${MAX_JSON_LENGTH} are not supported`, open);
    if (max < min) throw this.fail(`(?json-length{${min},${max}} has its minimum above its maximum`, open);
    this.pos = from + m[0].length;
    return { min, max };
  }

  /** Steps past `?:`, `?<name>`, `?P<name>`; refuses every other `(?`. */
  private groupKind(open: number): void {
    const rest = this.src.slice(this.pos, this.pos + 3);
    if (rest.startsWith('?:')) {
      this.pos += 2;
      return;
    }
    if (rest.startsWith('?=') || rest.startsWith('?!')) throw this.fail(`lookahead is not supported: ${NOT_REGULAR}`, open);
    if (rest.startsWith('?<=') || rest.startsWith('?<!')) throw this.fail(`lookbehind is not supported: ${NOT_REGULAR}`, open);
    if (rest.startsWith('?P=')) throw this.fail(`backreferences are not supported: ${NOT_REGULAR}`, open);
    if (rest.startsWith('?>')) throw this.fail('atomic groups are not supported', open);
    if (rest.startsWith('?#')) throw this.fail('comment groups are not supported', open);
    const named = /^\?P?<([A-Za-z_][A-Za-z0-9_]*)>/.exec(this.src.slice(this.pos, this.pos + 260));
    if (named) {
      this.pos += named[0].length;
      return;
    }
    if (rest.startsWith('?<') || rest.startsWith('?P<')) throw this.fail('a group name is letters, digits and _, not starting with a digit', open);
    throw this.fail('inline flags and other (? groups are not supported', open);
  }

  /** A class `[...]` with the cursor on its `[`; the set it matches. */
  private charClass(): CodePointSet {
    const open = this.pos;
    this.pos++;
    const negated = this.peek() === '^';
    if (negated) this.pos++;
    const pairs: number[] = [];
    let first = true;
    for (;;) {
      const c = this.peek();
      if (c === undefined) throw this.fail('unbalanced [: this class is never closed', open);
      if (c === ']' && !first) break;
      first = false;
      const startAt = this.pos;
      const lo = this.classAtom();
      if (this.peek() === '-' && this.peek(1) !== ']' && this.peek(1) !== undefined) {
        this.pos++;
        const endAt = this.pos;
        const hi = this.classAtom();
        if (typeof lo !== 'number' || typeof hi !== 'number') {
          throw this.fail('a class escape such as \\d cannot bound a range', typeof lo !== 'number' ? startAt : endAt);
        }
        if (lo > hi) throw this.fail(`invalid range ${this.src.slice(startAt, this.pos)}: its start is above its end`, startAt);
        pairs.push(lo, hi);
      } else if (typeof lo === 'number') pairs.push(lo, lo);
      else pairs.push(...lo);
    }
    this.pos++;
    const set = normalizeSet(pairs);
    return negated ? complementSet(set) : set;
  }

  private classAtom(): number | CodePointSet {
    if (this.peek() === '\\') return this.escape(true);
    const cp = this.src.codePointAt(this.pos)!;
    this.pos += cp > 0xffff ? 2 : 1;
    return cp;
  }

  /** An escape with the cursor on its backslash: one code point, or a set (\d ...). */
  private escape(inClass: boolean): number | CodePointSet {
    const at = this.pos;
    const c = this.peek(1);
    if (c === undefined) throw this.fail('the pattern ends with a lone backslash', at);
    this.pos += 2;
    switch (c) {
      case 'd': return DIGIT;
      case 'D': return complementSet(DIGIT);
      case 'w': return WORD;
      case 'W': return complementSet(WORD);
      case 's': return SPACE;
      case 'S': return complementSet(SPACE);
      case 'n': return 0x0a;
      case 'r': return 0x0d;
      case 't': return 0x09;
      case 'f': return 0x0c;
      case 'v': return 0x0b;
      case '0':
        if (/[0-9]/.test(this.peek() ?? '')) throw this.fail('octal escapes are not supported', at);
        return 0;
      case 'x': return this.hexDigits(2, at, '\\x needs two hex digits');
      case 'u': return this.unicodeEscape(at);
      case 'b':
        if (inClass) return 0x08;
        throw this.fail(`word boundaries (\\b) are not supported: ${NOT_REGULAR}`, at);
      case 'B': throw this.fail(`word boundaries (\\B) are not supported: ${NOT_REGULAR}`, at);
      case 'k': throw this.fail(`backreferences are not supported: ${NOT_REGULAR}`, at);
      case 'p':
      case 'P': throw this.fail('Unicode property escapes (\\p{...}) are not supported', at);
      case 'c': throw this.fail('control escapes (\\cX) are not supported', at);
      default:
        break;
    }
    if (c >= '1' && c <= '9') throw this.fail(`backreferences are not supported: ${NOT_REGULAR}`, at);
    if (/[A-Za-z0-9]/.test(c)) throw this.fail(`unknown escape \\${c}`, at);
    const cp = this.src.codePointAt(at + 1)!;
    if (cp > 0xffff) this.pos++;
    return cp;
  }

  private hexDigits(count: number, at: number, message: string): number {
    const digits = this.src.slice(this.pos, this.pos + count);
    if (digits.length !== count || !/^[0-9A-Fa-f]+$/.test(digits)) throw this.fail(message, at);
    this.pos += count;
    return parseInt(digits, 16);
  }

  private unicodeEscape(at: number): number {
    if (this.peek() === '{') {
      const m = /^\{([0-9A-Fa-f]{1,8})\}/.exec(this.src.slice(this.pos, this.pos + 10));
      if (!m) throw this.fail('\\u{...} needs 1 to 6 hex digits and a closing }', at);
      const cp = parseInt(m[1], 16);
      if (cp > MAX_CODE_POINT) throw this.fail('\\u{...} is above 10FFFF, the last code point', at);
      this.pos += m[0].length;
      return this.notSurrogate(cp, at);
    }
    const unit = this.hexDigits(4, at, '\\u needs four hex digits (or \\u{...})');
    if (unit >= 0xd800 && unit <= 0xdbff && /^\\u[dD][c-fC-F][0-9A-Fa-f]{2}/.test(this.src.slice(this.pos, this.pos + 6))) {
      const low = parseInt(this.src.slice(this.pos + 2, this.pos + 6), 16);
      this.pos += 6;
      return 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
    }
    return this.notSurrogate(unit, at);
  }

  private notSurrogate(cp: number, at: number): number {
    if (cp >= 0xd800 && cp <= 0xdfff) throw this.fail('a lone surrogate cannot appear in UTF-8 text', at);
    return cp;
  }
}
