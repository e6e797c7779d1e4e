/**
 * The fused SSSD drafter: context trie + edge trie (the user's cache, drafted
 * at the edge) + global datastore, one tree by estimated acceptance
 * probability (see fusion.ts). Each source is optional.
 */
import { ContextTrie, type ContextTrieOptions } from './context-trie';
import { addContextCandidates } from './context-source';
import { type DatastoreLike, type DatastoreMatchesLike, addDatastoreCandidates } from './datastore-source';
import type { DraftTree } from './draft-tree';
import { addEdgeCandidates } from './edge-source';
import type { EdgeTrieFollower } from './edge-trie';
import { type FusionWeights, TreeFuser, defaultFusionWeights, sourceLimit } from './fusion';
import type { Proposer } from './proposer';
import type { TokenBuffer } from './token-buffer';

export interface SssdSources {
  /** Use the request's own context trie (default true). */
  context?: boolean;
  datastore?: DatastoreLike | null;
  /** Current edge trie follower, read at every propose (it changes when a fresh trie arrives). */
  edge?: () => EdgeTrieFollower | null;
}

const DATASTORE_MAX_MATCHES = 100;

export class SssdProposer implements Proposer {
  readonly trie: ContextTrie | null;
  private readonly fuser = new TreeFuser(2048);
  private readonly found: DatastoreMatchesLike;
  private readonly lookupOptions: { maxQuery: number; width: number; maxMatches: number; minMatches: number };

  constructor(
    private readonly sources: SssdSources,
    private readonly weights: FusionWeights = defaultFusionWeights,
    trieOptions: ContextTrieOptions = {},
  ) {
    this.trie = sources.context === false ? null : new ContextTrie(trieOptions);
    const width = Math.max(1, weights.datastoreWidth);
    this.lookupOptions = { maxQuery: weights.datastoreMaxQuery, width, maxMatches: DATASTORE_MAX_MATCHES, minMatches: 50 };
    this.found = {
      count: 0,
      width,
      tokens: new Int32Array(DATASTORE_MAX_MATCHES * width),
      matchLengths: new Uint8Array(DATASTORE_MAX_MATCHES),
    };
  }

  observe(context: TokenBuffer, from: number, to: number): void {
    this.trie?.appendAll(context.data, from, to);
  }

  propose(context: TokenBuffer, budget: number): DraftTree {
    const w = this.weights;
    const limit = sourceLimit(budget, w);
    const fuser = this.fuser;
    fuser.begin();
    if (budget > 0) {
      if (this.trie) addContextCandidates(fuser, this.trie, context.data, context.length, w, limit);
      const follower = this.sources.edge?.() ?? null;
      if (follower && !follower.exhausted) addEdgeCandidates(fuser, follower, w, limit);
      const ds = this.sources.datastore;
      if (ds && ds.tokenCount > 0) {
        const found = ds.lookup(context.tail(w.datastoreMaxQuery), this.found, this.lookupOptions);
        addDatastoreCandidates(fuser, found, w, limit);
      }
    }
    return fuser.build(context.last, budget, w);
  }
}
