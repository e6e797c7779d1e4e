import { describe, expect, it } from 'vitest';
import { nestsDeeperThan } from '../../shared/json-nesting';

/** `depth` arrays, one in the next, around `inner`. */
const nested = (depth: number, inner = ''): string => '['.repeat(depth) + inner + ']'.repeat(depth);

describe('nestsDeeperThan', () => {
  it('passes a text nested exactly to the bound, and refuses one a level past it', () => {
    expect(nestsDeeperThan(nested(64), 64)).toBe(false);
    expect(nestsDeeperThan(nested(65), 64)).toBe(true);
    // Objects and arrays count alike, however they alternate.
    expect(nestsDeeperThan('{"a":[{"b":[1]}]}', 4)).toBe(false);
    expect(nestsDeeperThan('{"a":[{"b":[1]}]}', 3)).toBe(true);
    // Depth, not count: many containers side by side are as deep as one.
    expect(nestsDeeperThan(`[${Array(1000).fill(nested(3)).join(',')}]`, 4)).toBe(false);
    expect(nestsDeeperThan('1', 0)).toBe(false);
    expect(nestsDeeperThan('[]', 0)).toBe(true);
  });

  it('counts no bracket inside a string, whatever it escapes', () => {
    expect(nestsDeeperThan(JSON.stringify({ a: '[[[[[[{{{{' }), 1)).toBe(false);
    // An escaped quote ends no string: the brackets after it are still its text.
    expect(nestsDeeperThan(JSON.stringify({ a: 'say \\"[[[[\\" and "[[[["' }), 1)).toBe(false);
    expect(nestsDeeperThan('{"a":"\\"[[[["}', 1)).toBe(false);
    // An escaped backslash does end its string where a quote follows: the brackets after it count.
    expect(nestsDeeperThan('{"a":"\\\\",  "b":[[[1]]]}', 3)).toBe(true);
    expect(nestsDeeperThan('{"a":"\\\\",  "b":[[[1]]]}', 4)).toBe(false);
    // A key is a string too, and a \\u escape is text.
    expect(nestsDeeperThan('{"[[[[\\u005b":[1]}', 2)).toBe(false);
    // Every text JSON.stringify writes, checked against its depth as parsed.
    const value = { s: ']]]}}}"\\[', list: [[{ deep: ['"{[', [1, [2]]] }]], t: '\\' };
    expect(nestsDeeperThan(JSON.stringify(value), 7)).toBe(false);
    expect(nestsDeeperThan(JSON.stringify(value), 6)).toBe(true);
  });

  it('refuses deep nesting in a small part of what JSON.parse spends on it', () => {
    // 500,000 nested arrays (1 MB): ~0.3 s of JSON.parse on this machine's kind, each text built anew for each.
    const scanned = performance.now();
    expect(nestsDeeperThan(nested(500_000), 64)).toBe(true);
    const scanMs = performance.now() - scanned;
    const parsed = performance.now();
    JSON.parse(nested(500_000));
    const parseMs = performance.now() - parsed;
    expect(scanMs).toBeLessThan(parseMs / 5);
  });
});
