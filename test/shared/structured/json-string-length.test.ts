/**
 * A regex's `(?json-length{m,n}:...)`: the group's texts that are a JSON
 * string's content whose decoded value has m to n code points, as JSON
 * Schema counts them (JSON.parse's value, a surrogate pair one, an escape
 * one), through the regex engine the edge and the pools share.
 */
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../../shared/seeded-random';
import { RegexTooLargeError, checkRegex } from '../../../shared/structured/regex-automaton';
import { compileWithEngine, pick, type Rng } from '../../support/json-schema-cases';

/** Any JSON string content, every escape JSON has (surrogates included). */
const ANY_CONTENT = '(?:[^"\\\\\\x00-\\x1F]|\\\\["\\\\/bfnrt]|\\\\u[0-9a-fA-F]{4})*';

const codePoints = (text: string): number => [...(JSON.parse(text) as string)].length;

/** One code point of `value` written one of the ways JSON allows: raw where it may be, its short escape, \u (either case), a pair of \u for one past the BMP. */
function written(rng: Rng, cp: number): string {
  const hex = (unit: number): string => {
    const h = unit.toString(16).padStart(4, '0');
    return `\\u${rng() < 0.5 ? h : h.toUpperCase()}`;
  };
  const ways: string[] = [];
  const short: Record<number, string> = { 0x22: '\\"', 0x5c: '\\\\', 0x2f: '\\/', 0x08: '\\b', 0x0c: '\\f', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t' };
  const surrogate = cp >= 0xd800 && cp <= 0xdfff;
  if (cp >= 0x20 && cp !== 0x22 && cp !== 0x5c && !surrogate) ways.push(String.fromCodePoint(cp));
  if (short[cp] !== undefined) ways.push(short[cp]);
  if (cp <= 0xffff) ways.push(hex(cp));
  else {
    const unit = String.fromCodePoint(cp);
    ways.push(hex(unit.charCodeAt(0)) + hex(unit.charCodeAt(1)));
  }
  return pick(rng, ways);
}

// Raw, escaped, multi-byte and astral characters, and lone surrogates (as \u only: JSON.parse keeps them, one each).
const POOL = [0x61, 0x20, 0x22, 0x5c, 0x2f, 0x0a, 0x01, 0x7f, 0xe9, 0x4e2d, 0x1f600, 0x10ffff, 0xd83d, 0xde00];

describe('(?json-length{m,n}:...)', () => {
  it('counts code points of the decoded value however they are written: an escape one, a surrogate pair one, a lone surrogate one', () => {
    const rng = seededRandom(92);
    const bounds: [number, number][] = [[0, 0], [0, 3], [2, Infinity], [1, 4], [3, 3], [5, Infinity]];
    const automata = bounds.map(([min, max]) => compileWithEngine(`"(?json-length{${min},${max === Infinity ? '' : max}}:${ANY_CONTENT})"`));
    const seen = new Set<string>();
    for (let i = 0; i < 600; i++) {
      const cps = Array.from({ length: Math.floor(rng() * 7) }, () => pick(rng, POOL));
      const text = `"${cps.map((cp) => written(rng, cp)).join('')}"`;
      const n = codePoints(text);
      bounds.forEach(([min, max], k) => {
        const inside = n >= min && n <= max;
        seen.add(`${k}:${inside}`);
        expect(automata[k].test(text), `${text} (${n} code points) in [${min}, ${max}]`).toBe(inside);
      });
    }
    // Each bound both let through and refused something (length 0 only let through).
    expect(seen.size).toBe(bounds.length * 2);
  });

  it('reads the escapes named: \\n and \\u00e9 one each, an escaped pair one, a high one before a raw character or another high one one each', () => {
    const two = compileWithEngine(`"(?json-length{2}:${ANY_CONTENT})"`);
    for (const text of ['"\\n\\u00e9"', '"é\\u00E9"', '"a\\ud83d\\ude00"', '"😀😀"', '"\\ud83d\\ude00😀"', '"\\ud83da"', '"\\ud83d\\ud83d"', '"\\ude00\\ud83d"']) {
      expect(two.test(text), text).toBe(true);
    }
    for (const text of ['"\\ud83d\\ude00"', '"\\ud83d\\ud83d\\ude00\\ude00"', '"\\n\\u00e9a"', '"a"']) expect(two.test(text), text).toBe(false);
  });

  it('refuses what is no JSON string content, whatever the group inside allows', () => {
    const any = compileWithEngine('"(?json-length{0,9}:.*)"');
    expect(['"ab"', '"a\\"b"', '"\\\\"', '"\\u0041"'].map((t) => any.test(t))).toEqual([true, true, true, true]);
    expect(['"a"b"', '"\\q"', '"\\u12"', '"\\"', '"a\u0001"', '"\\u00e"'].map((t) => any.test(t))).toEqual([false, false, false, false, false, false]);
  });

  it('bounds the product by the NFA states as any regex: one count past what fits is too large', () => {
    expect(() => checkRegex('"(?json-length{0,2000}:[a-z]*)"')).not.toThrow();
    expect(() => checkRegex('"(?json-length{0,100000}:[a-z]*)"')).toThrow(RegexTooLargeError);
    // With no maximum, counts past the minimum are one: a large minimum costs as a large maximum does.
    expect(() => checkRegex('"(?json-length{100000,}:[a-z]*)"')).toThrow(RegexTooLargeError);
    // Inside a repeat each copy is a product of its own, all within the one bound.
    expect(() => checkRegex('(?:"(?json-length{0,50}:[a-z]*)"){1000}')).toThrow(RegexTooLargeError);
  });

  it("charges a group's own pattern where its product is tiny, and builds it once for a repeat's copies", () => {
    // maxLength 0 stops the product at the first byte; the class is built all the same (review h95: uncharged, copies
    // of such groups ran the pool's thread for minutes).
    let wide = '';
    for (let i = 0, cp = 0x4e00; i < 2000; i++, cp += 2) wide += String.fromCodePoint(cp);
    const group = `"(?json-length{0}:(?:a[${wide}])?)"`;
    const started = performance.now();
    expect(() => checkRegex(`(?:${group}){1000}`)).not.toThrow();
    // Copies written out are groups of their own, each built and charged: past the bound, the bound's own words.
    expect(() => checkRegex(group.repeat(40))).toThrow(/more than 100000 states/);
    expect(performance.now() - started).toBeLessThan(5_000);
    // A group past what is left names the regex's bound, not what was left of it.
    expect(() => checkRegex('"(?json-length{0,5}:(?:[a-z]{1000})?)"(?:[a-z]{1000}){99}')).toThrow(/more than 100000 states/);
  });
});
