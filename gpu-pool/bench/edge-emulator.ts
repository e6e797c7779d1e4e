/**
 * Plays the edge for `sssd` runs: one user cache per user (the KV value the
 * edge keeps), a candidate trie drafted from it for each prompt (and again
 * for prompt + output so far whenever the pool reports the trie exhausted),
 * and the finished request merged back, exactly as the Worker does.
 */
import { UserCache, mergeIntoUserCache } from '../../shared/drafting/user-cache';
import { draftEdgeTrie } from '../../shared/drafting/edge-trie';
import { EDGE_TRIE_NODES, EDGE_USER_CACHE_MAX_BYTES } from '../../edge/edge-config';

export class EdgeEmulator {
  private readonly caches = new Map<string, Uint8Array>();

  /** The Worker's defaults: the figures bench-serve prints are for the edge as deployed. */
  constructor(
    private readonly vocabSize: number,
    private readonly trieNodes = EDGE_TRIE_NODES,
    private readonly cacheMaxBytes = EDGE_USER_CACHE_MAX_BYTES,
  ) {}

  /**
   * Base64 trie for this user's prompt, or undefined when the user has no history yet or `maxDepth` (edgeTrieDepth:
   * the tokens the generation has left, less one) is 0. `greedy`: the request samples at temperature 0 (history
   * chains; see edge-trie.ts).
   */
  trieFor(user: string, promptIds: readonly number[], greedy = true, maxDepth = Infinity): string | undefined {
    const stored = this.caches.get(user);
    if (!stored || maxDepth < 1) return undefined;
    // As the Worker reads it: unchecked on the request path (user-cache-store.ts).
    const trie = draftEdgeTrie(UserCache.decode(stored, { vocabSize: this.vocabSize, verify: false }), promptIds, { maxNodes: this.trieNodes, historyChain: greedy, maxDepth });
    return trie.length === 0 ? undefined : Buffer.from(trie).toString('base64');
  }

  /** Merges a finished request into the user's cache; returns the new cache bytes. */
  record(user: string, promptIds: readonly number[], outputIds: readonly number[]): Uint8Array {
    const merged = mergeIntoUserCache(this.caches.get(user) ?? null, [...promptIds, ...outputIds], { vocabSize: this.vocabSize, maxBytes: this.cacheMaxBytes });
    this.caches.set(user, merged);
    return merged;
  }

  /** Takes a cache merged elsewhere (the bench's merge thread) as this user's. */
  adopt(user: string, cache: Uint8Array): void {
    this.caches.set(user, cache);
  }
}
