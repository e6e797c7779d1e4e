/**
 * SSSD draft source 1: a count trie over every window of W tokens of the
 * request's prompt and its own accepted output. Built incrementally: each
 * appended token extends the W-1 windows still open (their current nodes are
 * kept in a ring), and opens a new one at the root, so an append costs O(W)
 * hash probes and no allocation. A node's count is the number of occurrences of
 * its n-gram (n ≤ W) in the sequence so far.
 *
 * Memory is bounded by CountTrie's node cap (see count-trie.ts for the policy).
 */
import { CountTrie } from './count-trie';
import type { TrieStoragePool } from './trie-storage-pool';

export interface ContextTrieOptions {
  /** Window length (authors' default 8). */
  window?: number;
  /** Node cap; default 1M. */
  maxNodes?: number;
  /**
   * Nodes allocated up front (default 256); the pool doubles on demand up to
   * the cap. Size it from the prompt: a fixed large pool made every short
   * request pay for memory it never touched.
   */
  initialNodes?: number;
  /** Where the node arrays come from and go back to at `release` (a request's trie: contextTriePool). */
  pool?: TrieStoragePool;
}

export class ContextTrie {
  readonly trie: CountTrie;
  readonly window: number;
  /** Current node of each open window (ring indexed by start position % W); -1 = closed. */
  private readonly open: Int32Array;
  private length = 0;

  constructor(opts: ContextTrieOptions = {}) {
    this.window = Math.max(1, Math.min(255, opts.window ?? 8));
    this.trie = new CountTrie({ maxNodes: opts.maxNodes ?? 1 << 20, initialNodes: opts.initialNodes ?? 256, pool: opts.pool });
    this.open = new Int32Array(this.window).fill(-1);
  }

  /** Gives the trie's arrays back to its pool: the request is over (later appends start an empty trie). */
  release(): void {
    this.trie.release();
    this.open.fill(-1);
    this.length = 0;
  }

  /** Tokens seen so far. */
  get tokenCount(): number {
    return this.length;
  }

  append(token: number): void {
    const W = this.window;
    const trie = this.trie;
    // Window starting at position p is open while length - p < W.
    const slot = this.length % W;
    this.open[slot] = 0; // the new window starts at the root; the oldest one (same slot) closes
    for (let j = 0; j < W; j++) {
      const node = this.open[j];
      if (node < 0) continue;
      const next = trie.child(node, token);
      this.open[j] = next;
      if (next >= 0) trie.counts[next]++;
    }
    this.length++;
    // The window starting at length-W now holds W tokens: close it.
    if (this.length >= W) this.open[this.length % W] = -1;
  }

  appendAll(tokens: ArrayLike<number>, from = 0, to = tokens.length): void {
    for (let i = from; i < to; i++) this.append(tokens[i]);
  }

  /** Closes every open window: what is appended next is another text (a predicted output before the prompt), and no n-gram spans the two. */
  breakWindows(): void {
    this.open.fill(-1);
  }

  /**
   * Matches every suffix of `context[0..end)` of length maxQuery down to 1.
   * Writes the node of the length-k suffix into out[k] (-1 when absent) for
   * k = 1..maxQuery and returns the longest k that matched (0 if none).
   */
  matchSuffixes(context: ArrayLike<number>, end: number, maxQuery: number, out: Int32Array): number {
    let longest = 0;
    const q = Math.min(maxQuery, end, this.window);
    for (let k = 1; k <= maxQuery; k++) out[k] = -1;
    for (let k = q; k >= 1; k--) {
      const node = this.trie.walk(context, end - k, end);
      out[k] = node;
      if (node > 0 && longest === 0) longest = k;
    }
    return longest;
  }

  /** Occurrence count of an n-gram (n ≤ W), for tests and diagnostics. */
  countOf(ngram: ArrayLike<number>): number {
    const node = this.trie.walk(ngram, 0, ngram.length);
    return node > 0 ? this.trie.counts[node] : node === 0 ? this.length : 0;
  }
}
