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
import type { NextTokenTable } from './next-token-table';
import { addTableCandidates } from './table-source';
import type { Proposer } from './proposer';
import type { TokenBuffer } from './token-buffer';

export interface SssdSources {
  /** Use the request's own context trie (default true). */
  context?: boolean;
  datastore?: DatastoreLike | null;
  /**
   * The model's own next-token distributions (next-token-table.ts): on a
   * sampled request it drafts in the datastore's place, its estimates being
   * the model's distribution rather than n-gram counts.
   */
  nextTokens?: NextTokenTable | null;
  /** Current edge trie follower, read at every propose (it changes when a fresh trie arrives). */
  edge?: () => EdgeTrieFollower | null;
}

/**
 * Datastore matches looked up per step, by draft budget: the smallest of
 * these tiers that is at least twice the source's candidate limit, the
 * back-off stopping at half of it. A small tree only takes the datastore's
 * best few continuations, and gathering 100 matches (backing off to short,
 * noisy suffixes until 50 were found) cost ~40 µs a step for nothing: replayed
 * over dev-sessions as served (eval-drafts), a budget of 8 had τ 3.84 with
 * 100/50 and 3.88 with 32/16, and drafting went from 38 to 25 µs a step; a
 * budget of 32 still wants them all (τ 5.26 against 5.16 with 32/16, the
 * sampled requests losing). Tiers, not a formula: the draft cache keeps one
 * recording per (query, tier).
 */
export const DATASTORE_MATCH_TIERS = [16, 32, 64, 100] as const;
const DATASTORE_MAX_MATCHES = DATASTORE_MATCH_TIERS[DATASTORE_MATCH_TIERS.length - 1];

type LookupOptions = { maxQuery: number; width: number; maxMatches: number; minMatches: number; maxLimit: number };

/**
 * One lookup per tier. A tier below the last serves source limits up to half
 * its matches (datastoreMatchTier), and a source adds at most `limit` nodes,
 * each under one added before it, so no node it adds lies deeper than that:
 * continuations are read, counted and recorded only that deep. The trees are
 * the same; at the budgets of a batch (tiers 16 and 32: 8 and 16 tokens of
 * each match instead of 24, 8 and 16 pops recorded instead of 50) the
 * datastore source's time per looked-up query fell by about a third
 * (dev-sessions' queries at budgets 4 and 8: 11.3-12.2 → 7.3-8.4 µs and
 * 17.8-21.3 → 12.8-15.6 µs).
 */
function tierLookups(weights: FusionWeights): LookupOptions[] {
  const width = Math.max(1, weights.datastoreWidth);
  const last = DATASTORE_MATCH_TIERS.length - 1;
  return DATASTORE_MATCH_TIERS.map((maxMatches, i) => {
    const maxLimit = i < last ? maxMatches >> 1 : Infinity;
    return { maxQuery: weights.datastoreMaxQuery, width: Math.min(width, maxLimit), maxMatches, minMatches: maxMatches >> 1, maxLimit };
  });
}

/** Index into DATASTORE_MATCH_TIERS of the lookup for a source limit. */
export function datastoreMatchTier(limit: number): number {
  let i = 0;
  while (i < DATASTORE_MATCH_TIERS.length - 1 && DATASTORE_MATCH_TIERS[i] < 2 * limit) i++;
  return i;
}

export class SssdProposer implements Proposer {
  readonly trie: ContextTrie | null;
  /** This proposer's tree (returned by propose, reused by the next call); the fuser is shared scratch. */
  private tree = createDraftTree(33);
  /** Lookup buffer, made on the first datastore step (most requests of a pool without a datastore never need it). */
  private found: DatastoreMatchesLike | null = null;
  /** One per tier of DATASTORE_MATCH_TIERS, made once. */
  private readonly lookupOptions: LookupOptions[];

  constructor(
    private readonly sources: SssdSources,
    private readonly weights: FusionWeights = defaultFusionWeights,
    trieOptions: ContextTrieOptions = {},
  ) {
    this.trie = sources.context === false ? null : new ContextTrie(trieOptions);
    this.lookupOptions = tierLookups(weights);
  }

  /** Set for a sampled request: drafts follow its noise (firstIndex updated at each propose). */
  private coupling: DraftCoupling | null = null;

  couple(coupling: DraftCoupling): void {
    this.coupling = coupling;
  }

  release(): void {
    this.trie?.release();
  }

  predict(tokens: ArrayLike<number>): void {
    if (!this.trie) return;
    this.trie.appendAll(tokens);
    this.trie.breakWindows();
  }

  observe(context: TokenBuffer, from: number, to: number): void {
    this.trie?.appendAll(context.data, from, to);
  }

  propose(context: TokenBuffer, budget: number): DraftTree {
    const w = this.weights;
    const limit = sourceLimit(budget, w);
    const fuser = TreeFuser.shared();
    fuser.begin();
    if (this.coupling) this.coupling.firstIndex = context.length;
    if (budget > 0) {
      if (this.trie) addContextCandidates(fuser, this.trie, context.data, context.length, w, limit);
      const follower = this.sources.edge?.() ?? null;
      if (follower && !follower.exhausted) addEdgeCandidates(fuser, follower, w, limit);
      const ds = this.sources.datastore;
      const table = this.sources.nextTokens;
      const useTable = this.coupling && table && ds;
      if (useTable) addTableCandidates(fuser, table, context, w, limit, this.coupling);
      else if (ds && ds.tokenCount > 0) {
        const options = this.lookupOptions[datastoreMatchTier(limit)];
        this.found ??= { count: 0, width: options.width, tokens: new Int32Array(DATASTORE_MAX_MATCHES * Math.max(1, this.weights.datastoreWidth)), matchLengths: new Uint8Array(DATASTORE_MAX_MATCHES) };
        addDatastoreDraft(fuser, ds, context, w, limit, this.found, options);
      }
    }
    if (this.tree.tokens.length < budget + 1) this.tree = createDraftTree(Math.max(budget + 1, this.tree.tokens.length * 2));
    return fuser.build(context.last, budget, w, this.tree, this.coupling);
  }
}
