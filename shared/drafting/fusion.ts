/**
 * Fusing candidate sources into one draft tree.
 *
 * Each source runs its own best-first expansion (by its estimated acceptance
 * probability) and adds its top candidate paths into a shared union trie via
 * `add(parent, token, prob, source)`: identical tokens under the same parent
 * are one node, holding the best probability each source gave it. `build`
 * then combines the per-source probabilities of every node (noisy-or across
 * sources by default: two independent sources agreeing is stronger evidence
 * than either; `max` is the alternative) and selects the `budget` most
 * probable nodes best-first, at most `maxChildren` under any parent. Because
 * every source's probabilities shrink along its paths, the selection is a
 * connected tree, and every path in it is a path some source proposed.
 *
 * Hot path: typed arrays only, reused across calls; no per-node objects.
 */
import { CandidateHeap } from './candidate-heap';
import { rankByScore } from './coupled-rank';
import { CountTrie } from './count-trie';
import { type DraftTree, appendNode, createDraftTree, resetDraftTree } from './draft-tree';
import type { GumbelNoise } from '../sampling/gumbel-noise';

/**
 * A sampled request's noise, for coupled drafting: the model samples the
 * token at sequence index i as argmax(logit / T + g(i, ·)) (see
 * shared/sampling/gumbel-noise.ts), so among a node's candidates the one
 * with the best log q / T + g is the likeliest sample, not the most frequent.
 */
export interface DraftCoupling {
  noise: GumbelNoise;
  temperature: number;
  /** Sequence index of the root's first child (the context length at drafting time). */
  firstIndex: number;
}

export interface FusionWeights {
  /** Context source, first level: contextFirst · c(child)/c(node). */
  contextFirst: number;
  /** Context source, deeper levels: × c(child)/c(parent) · (contextBase + contextPerMatch · k), capped at 1. */
  contextBase: number;
  contextPerMatch: number;
  /** Window W of the context trie (authors: 8): the deepest a context candidate path goes is W - k. */
  contextWindow: number;
  /** Longest context suffix matched in the context trie (q). */
  contextMaxQuery: number;
  /** Datastore source: datastore · c(child)/c(parent) along the path. */
  datastore: number;
  /** A datastore match of length k counts k^datastoreMatchPower times (0: all equal, as the authors). */
  datastoreMatchPower: number;
  /** Datastore lookup: continuation tokens per match (the deepest a datastore path goes). */
  datastoreWidth: number;
  /** Datastore lookup: longest query (tokens). */
  datastoreMaxQuery: number;
  /** Edge trie (user cache) source: edge · Π p(child|parent) shipped in the trie. */
  edge: number;
  /** Most children under one node of the final tree (the authors' topk). */
  maxChildren: number;
  /** How per-source probabilities of one node combine. */
  combine: 'noisy-or' | 'max';
  /**
   * Candidates less probable than this are not queued: a frequent token in a
   * long prompt can have thousands of followers, each a hopeless guess.
   */
  minCandidateProb: number;
  /** Candidates each source may contribute, as a multiple of the budget. */
  sourceFanout: number;
}

/**
 * Context weights are the authors' (SSSD.md). Chosen with `sssd eval-drafts`
 * on dev-sessions (stories260K), kept to coarse, explainable knobs:
 * - edge 0.5: the edge trie's probabilities come from few observations per
 *   user, so they are over-confident at the first level (0.3-0.5 beat 0.8-1;
 *   its deeper levels are not decayed: a user's repeated passage goes deep);
 * - contextWindow 16 (authors: 8): long repeats go deeper; +0.03-0.05 τ for
 *   the context source alone at N ≥ 8, +0.1-0.2 fused at N ≥ 16 (24 adds
 *   little); costs up to 2× trie nodes (bounded by the node cap);
 * - noisy-or over max: +0.02-0.04 τ;
 * - the datastore, deep and specific (2026-12-03): a continuation accepted to
 *   depth 8 went on being accepted ~85% a token, and the tree stopped there,
 *   so datastoreWidth 24 (was 8), datastoreMaxQuery 16 (was 8),
 *   datastoreMatchPower 2 (was 1: a longer context match counts more, like
 *   the authors' 0.6+0.1k for the context source) and maxChildren 4 (was 8:
 *   the nodes go deeper rather than wider). As served, τ at N = 8/16/24/32:
 *   stories260K 4.12/4.99/5.39/5.72 → 4.22/5.24/5.77/6.19; checked on the
 *   two models not tuned on, each with its own self-continuation datastore,
 *   llama2xs 4.60/5.57/6.09/6.41 → 4.72/6.14/6.92/7.37 and babyllama105
 *   5.33/6.43/7.02/7.36 → 5.52/7.44/8.73/9.44 (context and context+user
 *   alone unchanged). The pool at concurrency 1: 4.61 → 5.11 tokens a step
 *   (width 16 alone 4.89); width 32 gains only at N = 32;
 * - tried without gain: contextFirst 0.4/0.8, q = 3 or 6-8, more candidates
 *   per source, table paths deeper than 8, minCandidateProb 0.001/0.005.
 */
export const defaultFusionWeights: FusionWeights = {
  contextFirst: 0.6,
  contextBase: 0.6,
  contextPerMatch: 0.1,
  contextWindow: 16,
  contextMaxQuery: 4,
  datastore: 1,
  datastoreMatchPower: 2,
  datastoreWidth: 24,
  datastoreMaxQuery: 16,
  edge: 0.5,
  maxChildren: 4,
  combine: 'noisy-or',
  minCandidateProb: 0.002,
  sourceFanout: 1.5,
};

/** Candidates one source may contribute for a budget. */
export function sourceLimit(budget: number, weights: FusionWeights): number {
  return Math.ceil(budget * weights.sourceFanout) + 2;
}

const SOURCES = 4;

/**
 * One fuser for every proposer of this isolate/process: its union trie and
 * per-source arrays (~100 KiB at 2048 nodes) are scratch that lives only inside
 * one synchronous propose() call, so allocating them per request only fed the
 * garbage collector (they were most of a RequestDrafter's footprint). The
 * trees handed out stay per proposer (build's `out`).
 */
let sharedFuser: TreeFuser | null = null;

export class TreeFuser {
  /** The process-wide scratch fuser (see above); never use it across an await. */
  static shared(): TreeFuser {
    sharedFuser ??= new TreeFuser(2048);
    return sharedFuser;
  }

  private readonly union: CountTrie;
  private srcProb: Float32Array;
  private readonly heap = new CandidateHeap(256);
  private outIndex: Int32Array;
  private childCount: Int32Array;
  private tree: DraftTree;

  constructor(capacity = 4096) {
    this.union = new CountTrie({ initialNodes: capacity, maxNodes: capacity });
    this.srcProb = new Float32Array(this.union.capacity * SOURCES);
    this.outIndex = new Int32Array(this.union.capacity);
    this.childCount = new Int32Array(this.union.capacity);
    this.tree = createDraftTree(64);
  }

  /** Starts a new tree. */
  begin(): void {
    this.union.clear();
    this.srcProb.fill(0, 0, SOURCES);
  }

  /**
   * Adds (or strengthens) the child `token` of union node `parent` for `source`;
   * returns the union node, or -1 when the union is full.
   */
  add(parent: number, token: number, prob: number, source: number): number {
    const u = this.union;
    const before = u.size;
    const node = u.child(parent, token);
    if (node < 0) return -1;
    const at = node * SOURCES;
    if (node >= before) this.srcProb.fill(0, at, at + SOURCES);
    if (prob > this.srcProb[at + source]) this.srcProb[at + source] = prob;
    return node;
  }

  /** Union nodes added so far (root included). */
  get unionSize(): number {
    return this.union.size;
  }

  /**
   * Selects up to `budget` draft nodes into a tree rooted at `rootToken`. The
   * returned tree is reused by the next call: copy it to keep it.
   */
  build(rootToken: number, budget: number, weights: FusionWeights, out?: DraftTree, coupling: DraftCoupling | null = null): DraftTree {
    let tree = out ?? this.tree;
    if (tree.tokens.length < budget + 1) {
      tree = createDraftTree(Math.max(budget + 1, tree.tokens.length * 2));
      if (!out) this.tree = tree;
    }
    resetDraftTree(tree, rootToken);
    const u = this.union;
    const heap = this.heap;
    const noisyOr = weights.combine === 'noisy-or';
    const maxChildren = Math.max(1, weights.maxChildren);
    heap.clear();
    this.outIndex[0] = 0;
    this.childCount[0] = 0;
    this.pushChildren(0, 1, 0, noisyOr, coupling);
    while (tree.size <= budget && heap.pop()) {
      const node = heap.topA;
      const prob = heap.topProb;
      const parentOut = this.outIndex[u.parents[node]];
      if (this.childCount[parentOut] >= maxChildren) continue;
      this.childCount[parentOut]++;
      const i = appendNode(tree, parentOut, u.tokens[node], prob, this.bestSource(node));
      this.outIndex[node] = i;
      this.childCount[i] = 0;
      this.pushChildren(node, prob, tree.depths[i], noisyOr, coupling);
    }
    heap.clear();
    return tree;
  }

  private condScratch = new Float32Array(64);
  private scoreScratch = new Float64Array(64);
  private rankScratch = new Int32Array(64);

  /**
   * Queues the children of union node `node` (selected with path probability
   * `prob`, at tree depth `depth`): each child's combined path probability.
   * Coupled (a sampled request): the children are ranked by log q / T + g,
   * q = their conditional estimates, g = the noise of the index they would
   * fill, and the best-ranked child takes the largest q, the next the second
   * largest, and so on. The Gumbel-max winner among the candidates is the
   * model's likeliest sample (exactly it, when q = p and the sample is among
   * them), so the most-trusted node is put where the sample is; the estimates
   * keep their magnitudes (the coupled winner's own odds, exp(-r·e^(-score)),
   * were far too confident with q from a few n-gram counts, and deep chains
   * of them starved the budget's calibration).
   */
  private pushChildren(node: number, prob: number, depth: number, noisyOr: boolean, coupling: DraftCoupling | null): void {
    const u = this.union;
    const heap = this.heap;
    if (coupling === null) {
      for (let c = u.firstChild[node]; c >= 0; c = u.nextSibling[c]) heap.push(this.combined(c, noisyOr), c, 0, 0);
      return;
    }
    const parent = node === 0 ? 1 : Math.max(1e-9, this.combined(node, noisyOr));
    let n = 0;
    for (let c = u.firstChild[node]; c >= 0; c = u.nextSibling[c]) n++;
    if (n === 0) return;
    if (this.condScratch.length < n) {
      this.condScratch = new Float32Array(n * 2);
      this.scoreScratch = new Float64Array(n * 2);
      this.rankScratch = new Int32Array(n * 2);
    }
    const cond = this.condScratch;
    const score = this.scoreScratch;
    const rank = this.rankScratch;
    const invT = 1 / coupling.temperature;
    const index = coupling.firstIndex + depth;
    let k = 0;
    for (let c = u.firstChild[node]; c >= 0; c = u.nextSibling[c], k++) {
      cond[k] = Math.min(1, this.combined(c, noisyOr) / parent);
      score[k] = cond[k] > 0 ? Math.log(cond[k]) * invT + coupling.noise.gumbel(index, u.tokens[c]) : -Infinity;
      rank[k] = k;
    }
    rankByScore(score, rank, n);
    // The conditional estimates, largest first (into `score`, now free), handed
    // out in rank order: the child ranked p-th takes the p-th largest.
    for (let a = 0; a < n; a++) {
      const x = cond[a];
      let b = a - 1;
      while (b >= 0 && score[b] < x) {
        score[b + 1] = score[b];
        b--;
      }
      score[b + 1] = x;
    }
    for (let p = 0; p < n; p++) cond[rank[p]] = score[p];
    k = 0;
    for (let c = u.firstChild[node]; c >= 0; c = u.nextSibling[c], k++) heap.push(prob * cond[k], c, 0, 0);
  }

  private combined(node: number, noisyOr: boolean): number {
    const at = node * SOURCES;
    if (noisyOr) {
      let miss = 1;
      for (let s = 0; s < SOURCES; s++) miss *= 1 - Math.min(1, this.srcProb[at + s]);
      return 1 - miss;
    }
    let best = 0;
    for (let s = 0; s < SOURCES; s++) if (this.srcProb[at + s] > best) best = this.srcProb[at + s];
    return best;
  }

  private bestSource(node: number): number {
    const at = node * SOURCES;
    let best = 0;
    for (let s = 1; s < SOURCES; s++) if (this.srcProb[at + s] > this.srcProb[at + best]) best = s;
    return best;
  }
}
