/**
 * The fused SSSD drafter: context trie + edge trie (the user's cache, drafted
 * at the edge) + global datastore, one tree by estimated acceptance
 * probability (see fusion.ts). Each source is optional.
 */
import { ContextTrie, type ContextTrieOptions } from './context-trie';
import { addContextCandidates } from './context-source';
import { type DatastoreLike, type DatastoreMatchesLike, addDatastoreDraft } from './datastore-source';
import { type DraftTree, createDraftTree } from './draft-tree';
import { addEdgeCandidates } from './edge-source';
import type { EdgeTrieFollower } from './edge-trie';
import { type DraftCoupling, type FusionWeights, TreeFuser, defaultFusionWeights, sourceLimit } from './fusion';
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
  /** This proposer's tree (returned by propose, reused by the next call); the fuser is shared scratch. */
  private tree = createDraftTree(33);
  /** Lookup buffer, made on the first datastore step (most requests of a pool without a datastore never need it). */
  private found: DatastoreMatchesLike | null = null;
  private readonly lookupOptions: { maxQuery: number; width: number; maxMatches: number; minMatches: number };

  constructor(
    private readonly sources: SssdSources,
    private readonly weights: FusionWeights = defaultFusionWeights,
    trieOptions: ContextTrieOptions = {},
  ) {
    this.trie = sources.context === false ? null : new ContextTrie(trieOptions);
    const width = Math.max(1, weights.datastoreWidth);
    this.lookupOptions = { maxQuery: weights.datastoreMaxQuery, width, maxMatches: DATASTORE_MAX_MATCHES, minMatches: 50 };
  }

  /** Set for a sampled request: drafts follow its noise (firstIndex updated at each propose). */
  private coupling: DraftCoupling | null = null;

  couple(coupling: DraftCoupling): void {
    this.coupling = coupling;
  }

  observe(context: TokenBuffer, from: number, to: number): void {
    this.trie?.appendAll(context.data, from, to);
  }

  propose(context: TokenBuffer, budget: number): DraftTree {
    const w = this.weights;
    const limit = sourceLimit(budget, w);
    const fuser = TreeFuser.shared();
    fuser.begin();
    if (budget > 0) {
      if (this.trie) addContextCandidates(fuser, this.trie, context.data, context.length, w, limit);
      const follower = this.sources.edge?.() ?? null;
      if (follower && !follower.exhausted) addEdgeCandidates(fuser, follower, w, limit);
      const ds = this.sources.datastore;
      if (ds && ds.tokenCount > 0) {
        const width = this.lookupOptions.width;
        this.found ??= { count: 0, width, tokens: new Int32Array(DATASTORE_MAX_MATCHES * width), matchLengths: new Uint8Array(DATASTORE_MAX_MATCHES) };
        addDatastoreDraft(fuser, ds, context, w, limit, this.found, this.lookupOptions);
      }
    }
    if (this.tree.tokens.length < budget + 1) this.tree = createDraftTree(Math.max(budget + 1, this.tree.tokens.length * 2));
    if (this.coupling) this.coupling.firstIndex = context.length;
    return fuser.build(context.last, budget, w, this.tree, this.coupling);
  }
}
