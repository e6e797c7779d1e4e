import { describe, expect, it } from 'vitest';
import { normalizeSet, setOf } from '../../../shared/structured/code-point-set';
import { printGrammar } from '../../../shared/structured/gbnf-printer';
import { type GrammarNode, parseGrammar } from '../../../shared/structured/grammar-syntax';
import { seededRandom } from '../../support/seeded-random';

const chars = (...cps: number[]): GrammarNode => ({ kind: 'chars', set: normalizeSet(cps.flatMap((cp) => [cp, cp])) });
const text = (s: string): GrammarNode => ({ kind: 'concat', items: [...s].map((c) => ({ kind: 'chars', set: setOf(c.codePointAt(0)!) })) });

/** The code points of a parsed literal or class sequence, flattened (a literal parses to a concat of single characters). */
function flatten(node: GrammarNode): GrammarNode[] {
  return node.kind === 'concat' ? node.items.flatMap(flatten) : [node];
}

describe('printGrammar', () => {
  it('writes classes and literals that GBNF reads back as the same characters, the ones it escapes included', () => {
    const special = [0x00, 0x09, 0x0a, 0x0d, 0x1f, 0x20, 0x22, 0x2d, 0x5b, 0x5c, 0x5d, 0x5e, 0x7f, 0x80, 0xe9, 0x2028, 0xfeff, 0x1f600, 0x10ffff];
    const rng = seededRandom(42);
    for (let i = 0; i < 300; i++) {
      const pairs: number[] = [];
      for (let k = 0; k < 1 + Math.floor(rng() * 4); k++) {
        const lo = special[Math.floor(rng() * special.length)];
        const hi = rng() < 0.5 ? lo : special[Math.floor(rng() * special.length)];
        pairs.push(Math.min(lo, hi), Math.max(lo, hi));
      }
      const set = normalizeSet(pairs);
      if (set.length === 0) continue;
      const printed = printGrammar([{ name: 'root', body: { kind: 'chars', set } }]);
      expect(parseGrammar(printed).rules[0].body, printed).toEqual({ kind: 'chars', set });
    }
    const literal = String.fromCodePoint(...special);
    const printed = printGrammar([{ name: 'root', body: text(literal) }]);
    expect(printed.split('\n')).toHaveLength(2);
    expect(flatten(parseGrammar(printed).rules[0].body)).toEqual(flatten(text(literal)));
    // A class of all but a few is written negated.
    expect(printGrammar([{ name: 'root', body: { kind: 'chars', set: normalizeSet([0, 0x21, 0x23, 0x10ffff]) } }])).toBe('root ::= [^\\"]\n');
  });

  it('groups where precedence needs it: alternatives in a sequence, sequences and repeats under a repeat', () => {
    const a = chars(0x61);
    const b = chars(0x62);
    const body: GrammarNode = {
      kind: 'concat',
      items: [
        { kind: 'alternation', items: [a, b] },
        { kind: 'repeat', item: { kind: 'concat', items: [a, { kind: 'ref', rule: 1 }] }, min: 0, max: Infinity },
        { kind: 'repeat', item: { kind: 'repeat', item: b, min: 2, max: 2 }, min: 1, max: 3 },
        { kind: 'repeat', item: a, min: 0, max: 1 },
        { kind: 'empty' },
      ],
    };
    const printed = printGrammar([{ name: 'root', body }, { name: 'x-1', body: a }]);
    expect(printed).toBe('root ::= ("a" | "b") ("a" x-1)* ("b"{2}){1,3} "a"? ""\nx-1 ::= "a"\n');
    expect(parseGrammar(printed).rules[0].body).toEqual(body);
  });
});
