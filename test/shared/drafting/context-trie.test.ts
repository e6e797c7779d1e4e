import { describe, expect, it } from 'vitest';
import { ContextTrie } from '../../../shared/drafting/context-trie';
import { CountTrie } from '../../../shared/drafting/count-trie';
import { seededRandom, tokenStream } from './random-tokens';

function bruteCounts(tokens: number[], maxN: number): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < tokens.length; i++) {
    for (let n = 1; n <= maxN && i + n <= tokens.length; n++) {
      const k = tokens.slice(i, i + n).join(',');
      m.set(k, (m.get(k) ?? 0) + 1);
    }
  }
  return m;
}

/** Every n-gram in the trie, with its count, by walking it. */
function trieCounts(ct: ContextTrie): Map<string, number> {
  const t = ct.trie;
  const m = new Map<string, number>();
  const walk = (node: number, path: number[]): void => {
    for (let c = t.firstChild[node]; c >= 0; c = t.nextSibling[c]) {
      const p = [...path, t.tokens[c]];
      m.set(p.join(','), t.counts[c]);
      walk(c, p);
    }
  };
  walk(0, []);
  return m;
}

describe('ContextTrie', () => {
  it('counts every n-gram (n ≤ W) exactly like a brute-force count, appended in any chunking', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rand = seededRandom(seed);
      const W = 1 + Math.floor(rand() * 8);
      const tokens = tokenStream(rand, 50 + Math.floor(rand() * 300), 2 + Math.floor(rand() * 20));
      const ct = new ContextTrie({ window: W, maxNodes: 1 << 16 });
      // Prompt at once, then output in random chunks, as a request grows.
      const promptLen = Math.floor(rand() * tokens.length);
      ct.appendAll(tokens, 0, promptLen);
      for (let i = promptLen; i < tokens.length; ) {
        const n = 1 + Math.floor(rand() * 5);
        ct.appendAll(tokens, i, Math.min(tokens.length, i + n));
        i += n;
      }
      expect(trieCounts(ct)).toEqual(bruteCounts(tokens, W));
    }
  });

  it('keeps exact counts for the n-grams it holds once the node cap is reached, and never grows past it', () => {
    const rand = seededRandom(7);
    const tokens = tokenStream(rand, 3000, 50);
    const ct = new ContextTrie({ window: 8, maxNodes: 500 });
    ct.appendAll(tokens);
    expect(ct.trie.size).toBeLessThanOrEqual(500);
    const brute = bruteCounts(tokens, 8);
    const held = trieCounts(ct);
    expect(held.size).toBe(499);
    for (const [k, c] of held) expect(c).toBe(brute.get(k));
  });

  it('matches every suffix of the query, longest first', () => {
    const ct = new ContextTrie({ window: 4 });
    const tokens = [5, 6, 7, 8, 9, 6, 7, 8];
    ct.appendAll(tokens);
    const out = new Int32Array(5);
    const longest = ct.matchSuffixes([1, 2, 6, 7, 8], 5, 4, out);
    expect(longest).toBe(3);
    expect(out[4]).toBe(-1);
    expect(ct.trie.counts[out[3]]).toBe(2); // 6,7,8 twice
    expect(ct.trie.counts[out[1]]).toBe(2); // 8 twice
    // Children of the longest match: what followed 6,7,8.
    const t = ct.trie;
    const kids: number[] = [];
    for (let c = t.firstChild[out[3]]; c >= 0; c = t.nextSibling[c]) kids.push(t.tokens[c]);
    expect(kids).toEqual([9]);
  });

  it('indexes a 20,000-token prompt quickly within its node cap', () => {
    const rand = seededRandom(3);
    const tokens = tokenStream(rand, 20_000, 4000);
    const ct = new ContextTrie({ window: 8, maxNodes: 100_000 });
    const t0 = performance.now();
    ct.appendAll(tokens);
    const ms = performance.now() - t0;
    expect(ct.trie.size).toBeLessThanOrEqual(100_000);
    expect(ct.tokenCount).toBe(20_000);
    expect(ms).toBeLessThan(2000);
  });
  it('clears a sparsely used count trie node by node, and a full one at once, to the same state', () => {
    const rand = seededRandom(23);
    for (const used of [5, 40, 3000]) {
      const t = new CountTrie({ initialNodes: 4096, maxNodes: 4096 });
      for (let round = 0; round < 3; round++) {
        const seen = new Map<string, number>();
        for (let i = 0; i < used; i++) {
          const parent = Math.floor(rand() * t.size);
          const token = Math.floor(rand() * 50);
          const n = t.child(parent, token);
          seen.set(`${parent}:${token}`, n);
        }
        for (const [k, n] of seen) {
          const [parent, token] = k.split(':').map(Number);
          expect(t.find(parent, token)).toBe(n);
        }
        t.clear();
        expect(t.size).toBe(1);
        for (const k of seen.keys()) {
          const [parent, token] = k.split(':').map(Number);
          expect(t.find(parent, token)).toBe(-1);
        }
      }
    }
  });
});
