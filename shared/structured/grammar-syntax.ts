/**
 * A structured output's context-free grammar (vLLM's
 * `structured_outputs.grammar` / `guided_grammar`) in GBNF, as llama.cpp's
 * grammars/README.md writes it and xgrammar reads it, parsed to one tree per
 * rule; rule references are `ref` nodes. What is not GBNF is refused with a
 * GrammarSyntaxError naming where (line:column), never read another way.
 *
 * Read as llama.cpp's parser reads it:
 * - rules `name ::= body`, names `[a-zA-Z0-9_-]+`, the start rule `root`;
 * - a body is alternatives `|` of sequences; a sequence is items, each a
 *   string literal `"..."`, a class `[...]` / `[^...]` (ranges `a-z`), `.`
 *   (any character), a rule name or a group `( ... )`, each optionally
 *   repeated: `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}`;
 * - escapes in literals and classes: `\n \t \r \\ \" \[ \] \xHH \uHHHH
 *   \UHHHHHHHH`;
 * - `#` starts a comment to the end of its line;
 * - a rule ends at the end of its line, except inside parentheses and right
 *   after `|` or `::=`, where a newline is space. A line that starts with
 *   `|` continues the rule before it too (xgrammar takes it; llama.cpp
 *   refuses it, so no grammar llama.cpp takes reads otherwise here).
 *
 * Refused: Lark (`name: ...`, `%import`), a rule defined twice, a
 * reference to a rule never defined, no `root`, an empty class, a range or
 * count whose start is above its end, escapes not listed. What the grammar
 * means (left recursion, rules that derive nothing) is checked on its
 * automaton (grammar-nfa.ts).
 */

import { type CodePointSet, MAX_CODE_POINT, complementSet, normalizeSet, setOf } from './code-point-set';
import type { ExpressionNode, RuleReference } from './expression-node';

/** A rule's body: a regex's tree with references to rules (RuleReference: an index into Grammar.rules). */
export type GrammarNode = ExpressionNode<RuleReference>;

interface GrammarRule {
  readonly name: string;
  readonly body: GrammarNode;
  /** Where the rule's name starts in the text (UTF-16 index): errors about the rule point there. */
  readonly offset: number;
}

export interface Grammar {
  readonly rules: readonly GrammarRule[];
  /** The index of `root` among the rules. */
  readonly root: number;
  /** The grammar's text: errors found later say line and column in it. */
  readonly source: string;
}

/** A grammar this server cannot take; `offset` is its index (UTF-16) in the text, also said as line:column. */
export class GrammarSyntaxError extends Error {
  readonly line: number;
  readonly column: number;
  constructor(
    message: string,
    source: string,
    readonly offset: number,
  ) {
    const { line, column } = lineAndColumn(source, offset);
    super(`${message} (at line ${line}, column ${column})`);
    this.name = 'GrammarSyntaxError';
    this.line = line;
    this.column = column;
  }
}

/**
 * Characters of a grammar's text, at most. A quarter of a regex's: a grammar
 * is compiled afresh for each text on the pool's one thread (a 240 KB one of
 * 9,000 rules took ~0.1 s to compile, and more to follow), and hand-written
 * GBNF is far smaller.
 */
export const MAX_GRAMMAR_CHARS = 65_536;
/** Rules a grammar may define (2,000 small ones compile in ~15-40 ms here). */
const MAX_GRAMMAR_RULES = 2_000;
/** Repeat counts up to llama.cpp's MAX_REPETITION_THRESHOLD; the automaton's state bound applies as well. */
const MAX_GRAMMAR_REPEAT = 2000;
/** Parentheses nest no deeper (the parser recurses). */
const MAX_GRAMMAR_NESTING = 200;

const ANY_CHARACTER: CodePointSet = complementSet([]);
const EMPTY: GrammarNode = { kind: 'empty' };
const LARK = 'this looks like a Lark grammar: only GBNF (`rule ::= ...`, as llama.cpp and xgrammar write it) is served';

export function parseGrammar(source: string): Grammar {
  if (source.length > MAX_GRAMMAR_CHARS) {
    throw new GrammarSyntaxError(`the grammar is ${source.length} characters, more than the ${MAX_GRAMMAR_CHARS} taken`, source, MAX_GRAMMAR_CHARS);
  }
  return new GrammarParser(source).parse();
}

function lineAndColumn(source: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(Math.max(offset, 0), source.length);
  for (let i = 0; i < end; i++) {
    if (source.charCodeAt(i) === 0x0a) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: end - lineStart + 1 };
}

const isNameChar = (c: string | undefined): boolean => c !== undefined && /[A-Za-z0-9_-]/.test(c);

class GrammarParser {
  private pos: number;
  private depth = 0;
  private readonly ids = new Map<string, number>();
  private readonly names: string[] = [];
  private readonly bodies: (GrammarNode | undefined)[] = [];
  private readonly defined: number[] = [];
  /** Where each rule was first referred to (for an undefined one's error). */
  private readonly firstUse: number[] = [];

  constructor(private readonly src: string) {
    // A file saved with a UTF-8 byte-order mark: the mark is not the grammar's first character.
    this.pos = src.charCodeAt(0) === 0xfeff ? 1 : 0;
  }

  parse(): Grammar {
    this.space(true);
    if (this.pos >= this.src.length) throw this.fail('the grammar is empty: define at least `root ::= ...`', 0);
    while (this.pos < this.src.length) this.rule();
    for (let id = 0; id < this.names.length; id++) {
      if (this.bodies[id] === undefined) throw this.fail(`undefined rule '${this.names[id]}': it is referred to but never defined`, this.firstUse[id]);
    }
    const root = this.ids.get('root');
    if (root === undefined) throw this.fail("no rule 'root': the grammar's start rule is `root ::= ...`", this.src.length);
    const rules = this.names.map((name, id) => ({ name, body: this.bodies[id]!, offset: this.defined[id] }));
    return { rules, root, source: this.src };
  }

  private fail(message: string, at: number): GrammarSyntaxError {
    return new GrammarSyntaxError(message, this.src, at);
  }

  private peek(offset = 0): string | undefined {
    return this.src[this.pos + offset];
  }

  /** Skips spaces, tabs and comments, and newlines where `newlines`. */
  private space(newlines: boolean): void {
    const src = this.src;
    while (this.pos < src.length) {
      const c = src[this.pos];
      if (c === ' ' || c === '\t' || (newlines && (c === '\n' || c === '\r'))) this.pos++;
      else if (c === '#') {
        while (this.pos < src.length && src[this.pos] !== '\n' && src[this.pos] !== '\r') this.pos++;
      } else break;
    }
  }

  private idOf(name: string, at: number): number {
    let id = this.ids.get(name);
    if (id === undefined) {
      if (this.names.length >= MAX_GRAMMAR_RULES) throw this.fail(`the grammar names more than ${MAX_GRAMMAR_RULES} rules`, at);
      id = this.names.length;
      this.ids.set(name, id);
      this.names.push(name);
      this.bodies.push(undefined);
      this.defined.push(-1);
      this.firstUse.push(at);
    }
    return id;
  }

  private rule(): void {
    const at = this.pos;
    if (this.peek() === '%') throw this.fail(`${LARK} (directives such as %import are Lark's)`, at);
    if (this.peek() === '|') throw this.fail('a rule starts with its name: `|` continues a rule only right after one', at);
    const name = this.name();
    this.space(false);
    if (!this.src.startsWith('::=', this.pos)) {
      if (this.peek() === ':' || (this.peek() === '.' && /^\.\d+\s*:/.test(this.src.slice(this.pos, this.pos + 12)))) throw this.fail(LARK, at);
      throw this.fail(`expected ::= after the rule name '${name}'`, this.pos);
    }
    const id = this.idOf(name, at);
    if (this.bodies[id] !== undefined) throw this.fail(`rule '${name}' is defined twice (first at line ${lineAndColumn(this.src, this.defined[id]).line})`, at);
    this.defined[id] = at;
    this.bodies[id] = EMPTY; // defined (its body follows): a reference to itself inside is no undefined one
    this.pos += 3;
    this.space(true);
    this.bodies[id] = this.alternates(false);
    const c = this.peek();
    if (c !== undefined && c !== '\n' && c !== '\r') {
      throw this.fail(c === ')' ? 'unbalanced ): no group is open here' : `unexpected ${JSON.stringify(c)}: expected the end of the rule (a newline)`, this.pos);
    }
    this.space(true);
  }

  private name(): string {
    const start = this.pos;
    while (isNameChar(this.peek())) this.pos++;
    if (this.pos === start) {
      const c = this.peek();
      throw this.fail(`expected a rule name (letters, digits, _ and -), found ${c === undefined ? 'the end' : JSON.stringify(c)}`, start);
    }
    return this.src.slice(start, this.pos);
  }

  private alternates(nested: boolean): GrammarNode {
    const items = [this.sequence(nested)];
    for (;;) {
      if (this.peek() === '|') {
        this.pos++;
        this.space(true);
        items.push(this.sequence(nested));
        continue;
      }
      // A top-level rule's line ends here; the next one continues it where it starts with `|`.
      if (!nested && (this.peek() === '\n' || this.peek() === '\r')) {
        const lineEnd = this.pos;
        this.space(true);
        if (this.peek() === '|') continue;
        this.pos = lineEnd;
      }
      break;
    }
    return items.length === 1 ? items[0] : { kind: 'alternation', items };
  }

  private sequence(nested: boolean): GrammarNode {
    const items: GrammarNode[] = [];
    for (;;) {
      const c = this.peek();
      const at = this.pos;
      if (c === '"') items.push(this.literal());
      else if (c === '[') items.push({ kind: 'chars', set: this.charClass() });
      else if (c === '.') {
        this.pos++;
        items.push({ kind: 'chars', set: ANY_CHARACTER });
      } else if (c === '(') items.push(this.group());
      else if (isNameChar(c)) {
        const name = this.name();
        if (this.peek() === ':' && !this.src.startsWith('::=', this.pos)) throw this.fail(LARK, at);
        items.push({ kind: 'ref', rule: this.idOf(name, at) });
      } else if (c === '*' || c === '+' || c === '?' || c === '{') {
        const last = items.pop();
        if (last === undefined) throw this.fail(`nothing to repeat: ${c} must follow a literal, class, rule name or group`, at);
        items.push(this.repeat(last));
      } else if (c === "'") throw this.fail("string literals are written in double quotes (\"...\") in GBNF", at);
      else break;
      this.space(nested);
    }
    if (items.length === 0) return EMPTY;
    return items.length === 1 ? items[0] : { kind: 'concat', items };
  }

  private literal(): GrammarNode {
    const open = this.pos;
    this.pos++;
    const items: GrammarNode[] = [];
    for (;;) {
      const c = this.peek();
      if (c === undefined) throw this.fail('unterminated string: this literal is never closed', open);
      if (c === '"') break;
      items.push({ kind: 'chars', set: setOf(this.char()) });
    }
    this.pos++;
    if (items.length === 0) return EMPTY;
    return items.length === 1 ? items[0] : { kind: 'concat', items };
  }

  private charClass(): CodePointSet {
    const open = this.pos;
    this.pos++;
    const negated = this.peek() === '^';
    if (negated) this.pos++;
    const pairs: number[] = [];
    for (;;) {
      const c = this.peek();
      if (c === undefined) throw this.fail('unbalanced [: this class is never closed', open);
      if (c === ']') break;
      const startAt = this.pos;
      const lo = this.char();
      if (this.peek() === '-' && this.peek(1) !== ']' && this.peek(1) !== undefined) {
        this.pos++;
        const hi = this.char();
        if (lo > hi) throw this.fail(`invalid range ${this.src.slice(startAt, this.pos)}: its start is above its end`, startAt);
        pairs.push(lo, hi);
      } else pairs.push(lo, lo);
    }
    this.pos++;
    if (pairs.length === 0) throw this.fail('an empty class matches no character', open);
    const set = normalizeSet(pairs);
    const result = negated ? complementSet(set) : set;
    // `[^\x00-\U0010FFFF]`: said as the class it is, not later as a rule that derives nothing.
    if (result.length === 0) throw this.fail('this class matches no character (it excludes them all)', open);
    return result;
  }

  /** One character of a literal or class, escapes read. */
  private char(): number {
    const at = this.pos;
    if (this.peek() !== '\\') {
      const cp = this.src.codePointAt(at)!;
      // Written as itself (a JSON \ud800 decoded), as escaped: it was a rule "that derives no finite text" (review h142).
      if (cp >= 0xd800 && cp <= 0xdfff) throw this.fail('a surrogate cannot appear in UTF-8 text', at);
      this.pos += cp > 0xffff ? 2 : 1;
      return cp;
    }
    const c = this.peek(1);
    this.pos += 2;
    switch (c) {
      case 'n': return 0x0a;
      case 't': return 0x09;
      case 'r': return 0x0d;
      case '\\':
      case '"':
      case '[':
      case ']':
        return c.charCodeAt(0);
      case 'x': return this.hex(2, at);
      case 'u': return this.hex(4, at);
      case 'U': return this.hex(8, at);
      case undefined: throw this.fail('the grammar ends with a lone backslash', at);
      default: throw this.fail(`unknown escape \\${c} (GBNF has \\n \\t \\r \\\\ \\" \\[ \\] \\xHH \\uHHHH \\UHHHHHHHH)`, at);
    }
  }

  private hex(count: number, at: number): number {
    const digits = this.src.slice(this.pos, this.pos + count);
    if (digits.length !== count || !/^[0-9A-Fa-f]+$/.test(digits)) throw this.fail(`\\${this.src[at + 1]} needs ${count} hex digits`, at);
    this.pos += count;
    const cp = parseInt(digits, 16);
    if (cp > MAX_CODE_POINT) throw this.fail(`\\${this.src[at + 1]}${digits} is above 10FFFF, the last code point`, at);
    if (cp >= 0xd800 && cp <= 0xdfff) throw this.fail('a surrogate cannot appear in UTF-8 text', at);
    return cp;
  }

  private group(): GrammarNode {
    const open = this.pos;
    if (++this.depth > MAX_GRAMMAR_NESTING) throw this.fail(`groups nest deeper than ${MAX_GRAMMAR_NESTING}`, open);
    this.pos++;
    this.space(true);
    const inner = this.alternates(true);
    if (this.peek() !== ')') throw this.fail('unbalanced (: this group is never closed', open);
    this.pos++;
    this.depth--;
    return inner;
  }

  private repeat(item: GrammarNode): GrammarNode {
    const c = this.peek();
    const at = this.pos;
    this.pos++;
    if (c === '*') return { kind: 'repeat', item, min: 0, max: Infinity };
    if (c === '+') return { kind: 'repeat', item, min: 1, max: Infinity };
    if (c === '?') return { kind: 'repeat', item, min: 0, max: 1 };
    this.space(false);
    const min = this.count(at);
    this.space(false);
    let max = min;
    if (this.peek() === ',') {
      this.pos++;
      this.space(false);
      max = /[0-9]/.test(this.peek() ?? '') ? this.count(at) : Infinity;
      this.space(false);
    }
    if (this.peek() !== '}') throw this.fail('a repeat count is {m}, {m,} or {m,n}: expected }', this.pos);
    this.pos++;
    if (max < min) throw this.fail(`repeat count has its minimum ${min} above its maximum ${max}`, at);
    return { kind: 'repeat', item, min, max };
  }

  private count(at: number): number {
    const m = /^[0-9]+/.exec(this.src.slice(this.pos, this.pos + 12));
    if (!m) throw this.fail('expected a number in the repeat count', this.pos);
    this.pos += m[0].length;
    const n = Number(m[0]);
    if (n > MAX_GRAMMAR_REPEAT) throw this.fail(`repeat counts above ${MAX_GRAMMAR_REPEAT} are not supported`, at);
    return n;
  }
}
