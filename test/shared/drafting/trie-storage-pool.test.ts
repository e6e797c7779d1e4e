// Context-trie arrays handed from finished requests to new ones: the next
// trie of the same size class takes them, behaves as a fresh trie does, and a
// released trie can no longer write into them.
import { describe, expect, it } from 'vitest';
import { CountTrie } from '../../../shared/drafting/count-trie';
import { ContextTrie } from '../../../shared/drafting/context-trie';
import { RequestDrafter } from '../../../shared/drafting/request-drafter';
import { pathTokens } from '../../../shared/drafting/draft-tree';
import { contextTriePool, trieCapacityClass, trieStorageBytes, trieStoragePool } from '../../../shared/drafting/trie-storage-pool';
import { seededRandom, tokenStream } from './random-tokens';

function snapshot(t: CountTrie, tokens: number[]): number[] {
  // Counts of every prefix of `tokens` under each start, as the trie answers them.
  const out: number[] = [];
  for (let from = 0; from < tokens.length; from++) {
    for (let to = from + 1; to <= Math.min(tokens.length, from + 6); to++) {
      const node = t.walk(tokens, from, to);
      out.push(node < 0 ? -1 : t.counts[node]);
    }
  }
  return out;
}

describe('trie storage pool', () => {
  it('rounds capacities to four classes per doubling, at most a quarter more from 64 nodes on', () => {
    expect([1, 16, 17, 64, 65, 100, 4400].map((n) => trieCapacityClass(n, 1 << 20))).toEqual([16, 16, 32, 64, 80, 112, 5120]);
    expect(trieCapacityClass(5000, 3000)).toBe(3000);
    for (let n = 64; n < 5000; n += 7) expect(trieCapacityClass(n, 1 << 20) / n).toBeLessThanOrEqual(1.25);
  });

  it('gives a released trie\'s arrays to the next trie of its class, which counts like a fresh one', () => {
    const pool = trieStoragePool(1 << 20);
    const rand = seededRandom(5);
    // 200 tokens in windows of 4 make at most 800 nodes: no growth.
    const first = new ContextTrie({ window: 4, initialNodes: 1000, pool });
    first.appendAll(tokenStream(rand, 200, 20));
    const arrays = first.trie.tokens;
    first.release();
    expect(pool.kept).toBe(trieStorageBytes(trieCapacityClass(1000, 1 << 20)));
    const text = tokenStream(rand, 150, 20);
    const reused = new ContextTrie({ window: 4, initialNodes: 980, pool });
    expect(reused.trie.tokens).toBe(arrays);
    expect(pool.reused).toBe(1);
    const fresh = new ContextTrie({ window: 4, initialNodes: 980 });
    reused.appendAll(text);
    fresh.appendAll(text);
    expect(reused.trie.size).toBe(fresh.trie.size);
    expect(snapshot(reused.trie, text)).toEqual(snapshot(fresh.trie, text));
  });

  it('keeps a released trie away from the arrays it gave back, and keeps no more than its bound', () => {
    const pool = trieStoragePool(trieStorageBytes(64) + 1);
    const a = new CountTrie({ initialNodes: 64, pool });
    a.child(0, 7);
    a.release();
    const b = new CountTrie({ initialNodes: 64, pool });
    const n = b.child(0, 9);
    b.counts[n] = 5;
    // A late call on the released trie writes into its own small arrays, not b's.
    const late = a.child(0, 9);
    a.counts[late] = 1;
    expect(b.counts[b.find(0, 9)]).toBe(5);
    expect(b.find(0, 7)).toBe(-1);
    // Two 64-node storages do not fit the bound: the second is dropped.
    const c = new CountTrie({ initialNodes: 64, pool });
    b.release();
    c.release();
    expect(pool.kept).toBe(trieStorageBytes(64));
    // A take of another class drops what is kept.
    new CountTrie({ initialNodes: 200, pool });
    expect(pool.kept).toBe(0);
  });

  it('grows a pooled trie by classes, handing the smaller arrays back', () => {
    const pool = trieStoragePool(1 << 22);
    const t = new CountTrie({ initialNodes: 16, pool });
    for (let i = 0; i < 40; i++) t.child(0, i);
    expect(t.capacity).toBe(64);
    // 16 → 32 → 64: the 32-node arrays are kept; taking the 64-node ones (none kept) dropped the 16-node ones.
    expect(pool.kept).toBe(trieStorageBytes(32));
    for (let i = 0; i < 40; i++) expect(t.tokens[t.find(0, i)]).toBe(i);
  });
});

describe('a request\'s context trie', () => {
  it('goes back to the process pool when the request is released, and the next request drafts as a fresh one would', () => {
    const rand = seededRandom(17);
    const story = tokenStream(rand, 120, 30);
    const prompt = [1, ...story.slice(0, 40)];
    const done = new RequestDrafter({ method: 'context', promptIds: prompt, expectedLength: 200 });
    done.accept(story.slice(40));
    done.draft(8);
    const before = contextTriePool.reused;
    done.release();
    const next = new RequestDrafter({ method: 'context', promptIds: prompt, expectedLength: 200 });
    expect(contextTriePool.reused).toBe(before + 1);
    const reference = new RequestDrafter({ method: 'context', promptIds: prompt, expectedLength: 200 });
    for (let i = 40; i < story.length; i += 4) {
      const a = next.draft(12);
      const b = reference.draft(12);
      const paths = (t: typeof a) => Array.from({ length: t.size - 1 }, (_, k) => pathTokens(t, k + 1).join(','));
      expect(paths(a)).toEqual(paths(b));
      next.accept(story.slice(i, i + 4));
      reference.accept(story.slice(i, i + 4));
    }
  });
});
