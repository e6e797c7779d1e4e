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
