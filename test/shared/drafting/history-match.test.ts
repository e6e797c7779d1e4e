import { describe, expect, it } from 'vitest';
import { MAX_CHAIN_MATCH, MIN_CHAIN_MATCH, chainTrust, longestHistoryMatch } from '../../../shared/drafting/history-match';
import { HISTORY_SEPARATOR as SEP } from '../../../shared/drafting/user-cache';

const match = () => ({ length: 0, next: -1 });

describe('longestHistoryMatch', () => {
  it('finds the longest run of history equal to the context tail, and what followed it', () => {
    const history = Uint32Array.from([1, 5, 6, 7, 8, SEP, 1, 9, 6, 7, 3]);
    const m = match();
    expect(longestHistoryMatch(history, [2, 5, 6, 7], 64, m)).toBe(true);
    expect(m).toEqual({ length: 3, next: 4 }); // 5 6 7 -> 8, not 6 7 -> 3
    expect(longestHistoryMatch(history, [4, 6, 7], 64, m)).toBe(true);
    expect(m).toEqual({ length: 2, next: 10 }); // ties: the latest request wins
    expect(longestHistoryMatch(history, [4, 2], 64, m)).toBe(false);
    expect(m.length).toBe(0);
  });

  it('never crosses into another request, and never matches a run with nothing after it', () => {
    const history = Uint32Array.from([3, 4, SEP, 3, 4, 5]);
    const m = match();
    // "4" ends the first request (a separator follows) and the second (the end).
    expect(longestHistoryMatch(history, [3, 4, 5], 64, m)).toBe(false);
    expect(longestHistoryMatch(history, [9, 3, 4], 64, m)).toBe(true);
    expect(m).toEqual({ length: 2, next: 5 });
    // The run does not extend backwards across a separator.
    expect(longestHistoryMatch(Uint32Array.from([7, 4, SEP, 4, 6]), [7, 4], 64, m)).toBe(true);
    expect(m).toEqual({ length: 1, next: 4 });
  });

  it('compares at most maxLength tokens, and copes with an empty history or context', () => {
    const run = Array.from({ length: 100 }, (_, i) => 10 + i);
    const history = Uint32Array.from([...run, 500]);
    const m = match();
    expect(longestHistoryMatch(history, run, 16, m)).toBe(true);
    expect(m).toEqual({ length: 16, next: 100 });
    expect(longestHistoryMatch(new Uint32Array(0), run, 16, m)).toBe(false);
    expect(longestHistoryMatch(history, [], 16, m)).toBe(false);
  });
});

/** The definition, by brute force: the longest run (latest on ties) ending at i with a token after it in the same request. */
function bruteForce(history: Uint32Array, context: number[], maxLength: number): { length: number; next: number } {
  let best = { length: 0, next: -1 };
  for (let i = history.length - 2; i >= 0; i--) {
    if (history[i + 1] === SEP) continue;
    let m = 0;
    while (m < Math.min(maxLength, context.length) && i - m >= 0 && history[i - m] === context[context.length - 1 - m]) m++;
    if (m > best.length) best = { length: m, next: i + 1 };
  }
  return best;
}

describe('longestHistoryMatch against its definition', () => {
  it('finds what brute force finds, on random histories over a few tokens (long runs and many ties)', () => {
    let seed = 7;
    const rand = (k: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) % k);
    for (let round = 0; round < 2000; round++) {
      const history = Uint32Array.from({ length: 1 + rand(120) }, () => (rand(12) === 0 ? SEP : rand(3)));
      const context = Array.from({ length: 1 + rand(20) }, () => rand(3));
      const maxLength = 1 + rand(24);
      const m = match();
      longestHistoryMatch(history, context, maxLength, m);
      expect(m, `round ${round}`).toEqual(bruteForce(history, context, maxLength));
    }
  });

  it('stays one pass over a history of one token repeated (the longest allowed history took 165-230 ms a draft)', () => {
    const history = new Uint32Array(1 << 20).fill(7);
    const context = [9, ...Array.from({ length: 63 }, () => 7)];
    const m = match();
    // The fastest of three: a neighbour on the machine (CI's other test files) slows one run, not all three.
    let fastest = Infinity;
    for (let run = 0; run < 3; run++) {
      const t0 = performance.now();
      longestHistoryMatch(history, context, 64, m);
      fastest = Math.min(fastest, performance.now() - t0);
    }
    expect(fastest).toBeLessThan(60);
    expect(m).toEqual({ length: 63, next: history.length - 1 });
  });
});

describe('chainTrust', () => {
  it('is 0 below the shortest match worth a chain, then grows with the match and stays below 1', () => {
    expect(chainTrust(MIN_CHAIN_MATCH - 1)).toBe(0);
    expect(chainTrust(MIN_CHAIN_MATCH)).toBeGreaterThan(0.8);
    let last = 0;
    for (let k = MIN_CHAIN_MATCH; k <= MAX_CHAIN_MATCH + 10; k++) {
      expect(chainTrust(k)).toBeGreaterThanOrEqual(last);
      expect(chainTrust(k)).toBeLessThan(1);
      last = chainTrust(k);
    }
    expect(chainTrust(1000)).toBe(chainTrust(MAX_CHAIN_MATCH));
  });
});
