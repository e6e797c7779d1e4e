/**
 * A grammar's trees written back as GBNF text that grammar-syntax.ts reads
 * to the same languages: one rule a line, literals quoted, classes
 * bracketed (negated where that is shorter), groups where precedence needs
 * them. Everything but printable ASCII is escaped, so no rule spans lines
 * and no character is read two ways.
 */

import { type CodePointSet, MAX_CODE_POINT, complementSet } from './code-point-set';
import type { GrammarNode } from './grammar-syntax';

export interface PrintedRule {
  /** `[a-zA-Z0-9_-]+`; the start rule is `root`. */
  readonly name: string;
  readonly body: GrammarNode;
}

/** The GBNF text of `rules`; a `ref` node names `rules[ref.rule]`. An empty class (a rule that derives nothing), or a JSON-length group, has no GBNF: a RangeError. */
export function printGrammar(rules: readonly PrintedRule[]): string {
  const names = rules.map((r) => r.name);
  return rules.map((r) => `${r.name} ::= ${printNode(r.body, names, Place.Alternative)}\n`).join('');
}

/** Where a node stands, for the parentheses it needs: an alternative of its own, an item of a sequence, or a repeat's operand. */
const Place = { Alternative: 0, Item: 1, Operand: 2 } as const;
type Place = (typeof Place)[keyof typeof Place];

function printNode(node: GrammarNode, names: readonly string[], place: Place): string {
  switch (node.kind) {
    case 'empty':
      return '""';
    case 'ref':
      return names[node.rule];
    case 'chars':
      return single(node.set) ? `"${literalChar(node.set[0])}"` : printClass(node.set);
    case 'alternation': {
      const text = node.items.map((item) => printNode(item, names, Place.Alternative)).join(' | ');
      return place === Place.Alternative ? text : `(${text})`;
    }
    case 'concat': {
      const text = concatItems(node.items, names).join(' ');
      return place === Place.Operand ? `(${text})` : text;
    }
    case 'jsonLength':
      // GBNF has no counted intersection; the JSON grammar's writer sends the regex form for one (json-schema-grammar.ts).
      throw new RangeError('a JSON-length group has no GBNF');
    case 'anyTail':
      throw new RangeError('(?any-tail) has no GBNF');
    case 'repeat': {
      const text = `${printNode(node.item, names, Place.Operand)}${repeatSuffix(node.min, node.max)}`;
      // A repeat of a repeat: the inner one grouped (`x{2}*` is no GBNF llama.cpp takes).
      return place === Place.Operand ? `(${text})` : text;
    }
  }
}

/** A sequence's items, runs of single characters joined into one literal. */
function concatItems(items: readonly GrammarNode[], names: readonly string[]): string[] {
  const out: string[] = [];
  let run = '';
  for (const item of items) {
    if (item.kind === 'chars' && single(item.set)) {
      run += literalChar(item.set[0]);
      continue;
    }
    if (run !== '') out.push(`"${run}"`);
    run = '';
    out.push(printNode(item, names, Place.Item));
  }
  if (run !== '') out.push(`"${run}"`);
  return out;
}

function repeatSuffix(min: number, max: number): string {
  if (max === Infinity) return min === 0 ? '*' : min === 1 ? '+' : `{${min},}`;
  if (min === 0 && max === 1) return '?';
  return min === max ? `{${min}}` : `{${min},${max}}`;
}

function single(set: CodePointSet): boolean {
  return set.length === 2 && set[0] === set[1];
}

function hex(cp: number): string {
  if (cp <= 0xff) return `\\x${cp.toString(16).toUpperCase().padStart(2, '0')}`;
  if (cp <= 0xffff) return `\\u${cp.toString(16).toUpperCase().padStart(4, '0')}`;
  return `\\U${cp.toString(16).toUpperCase().padStart(8, '0')}`;
}

function literalChar(cp: number): string {
  if (cp === 0x22) return '\\"';
  if (cp === 0x5c) return '\\\\';
  return cp >= 0x20 && cp <= 0x7e ? String.fromCharCode(cp) : hex(cp);
}

/** Inside a class, `]`, `[`, `\`, `^` and `-` are escaped too (hex for the last two: GBNF has no \^ or \-). */
function classChar(cp: number): string {
  if (cp === 0x5d) return '\\]';
  if (cp === 0x5b) return '\\[';
  if (cp === 0x5e || cp === 0x2d) return hex(cp);
  return literalChar(cp);
}

function printClass(set: CodePointSet): string {
  if (set.length === 0) throw new RangeError('an empty class has no GBNF');
  // A set reaching both ends of the code points is written as the complement of what it leaves out.
  const left = set[0] === 0 && set[set.length - 1] === MAX_CODE_POINT ? complementSet(set) : [];
  const negate = left.length > 0;
  const ranges = negate ? left : set;
  let text = '';
  for (let i = 0; i < ranges.length; i += 2) {
    const lo = ranges[i];
    const hi = ranges[i + 1];
    text += lo === hi ? classChar(lo) : hi === lo + 1 ? classChar(lo) + classChar(hi) : `${classChar(lo)}-${classChar(hi)}`;
  }
  return negate ? `[^${text}]` : `[${text}]`;
}
