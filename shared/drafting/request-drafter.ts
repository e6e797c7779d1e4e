/**
 * The pool's per-request drafter: owns the request's context (prompt +
 * accepted output), the proposer of its speculation method and, for `sssd`,
 * the follower of the edge trie shipped with the request.
 */
import { PREDICTION_TOKENS, type SpeculationMethod } from '../protocol';
import type { DatastoreLike } from './datastore-source';
import type { DraftTree } from './draft-tree';
import { EdgeTrieFollower } from './edge-trie';
import { ContextProposer } from './context-proposer';
import { type FusionWeights, defaultFusionWeights } from './fusion';
import { NoneProposer } from './none-proposer';
import { PldProposer } from './pld-proposer';
import type { Proposer } from './proposer';
import type { NextTokenTable } from './next-token-table';
import { SssdProposer } from './sssd-proposer';
import { TokenBuffer } from './token-buffer';
import { contextTriePool } from './trie-storage-pool';
import { GumbelNoise } from '../sampling/gumbel-noise';

/** The protocol's speculation methods ('off' = no draft). */
export type DraftMethod = SpeculationMethod;

export interface RequestDrafterOptions {
  method: DraftMethod;
  promptIds: ArrayLike<number>;
  edgeTrie?: Uint8Array;
  datastore?: DatastoreLike;
  /** The model's next-token table (next-token-table.ts), drafting for sampled requests that use the datastore. */
  nextTokens?: NextTokenTable;
  weights?: FusionWeights;
  /** Context-trie node cap (see count-trie.ts). */
  maxTrieNodes?: number;
  /** Tokens the context may reach (prompt + the request's output): sizes the context trie up front (default: prompt + 64). */
  expectedLength?: number;
  /** A sampled request's seed and temperature: drafts are coupled to its sampling noise (see fusion.ts). */
  sampling?: { seed: number; temperature: number };
  /** The output the caller expects, more or less (OpenAI's `prediction`): drafted from like the prompt; its first PREDICTION_TOKENS are used. */
  predictionIds?: ArrayLike<number>;
}

/**
 * Context tokens indexed at most at construction and at each draft() after.
 * Indexing costs ~1.5-2.5 µs a token (the context trie's W windows), all of
 * it on the pool's main thread, where every stream waits for it. A
 * 32,768-token prompt of story text (the corpus), built and drafted once,
 * then drafted 20 times: the longest call took 72-84 ms taken whole, 31-44 ms
 * sliced (what is left is the trie's memory for the whole prompt, first
 * touched), then 3.5-5.6 ms a step until it is in, its first drafts knowing
 * less of it. A prompt of up to a slice is indexed whole at construction, as
 * before.
 */
export const INDEX_SLICE = 2048;

export class RequestDrafter {
  readonly method: DraftMethod;
  readonly context: TokenBuffer;
  private readonly promptLength: number;
  private readonly proposer: Proposer;
  private follower: EdgeTrieFollower | null = null;
  /** Context tokens the proposer has observed (the rest waits for draft(), INDEX_SLICE at a time). */
  private indexed = 0;

  constructor(opts: RequestDrafterOptions) {
    this.method = opts.method;
    this.context = new TokenBuffer(opts.promptIds, opts.promptIds.length + 512);
    this.promptLength = opts.promptIds.length;
    const weights = opts.weights ?? defaultFusionWeights;
    // A trie over N tokens has at most N·W nodes, and story text comes near
    // that (14 a token at W = 16: few windows repeat). Sized for the length the
    // request may reach, it never grows: starting from 4 a token it doubled 4-5
    // times over a 300-500-token request, each time copying and rehashing
    // every node (6% of the pool's CPU in its loop at concurrency 8). A
    // request that stops early leaves the rest unused (~28 bytes a node).
    // Indexed whole here, on the pool's main thread (~2 µs a token): hence the protocol's cap.
    const predicted = Math.min(opts.predictionIds?.length ?? 0, PREDICTION_TOKENS);
    const expected = Math.max(opts.promptIds.length, opts.expectedLength ?? opts.promptIds.length + 64) + predicted;
    const initialNodes = Math.min(opts.maxTrieNodes ?? 1 << 20, 64 + weights.contextWindow * expected);
    // The trie's arrays come from finished requests' tries (release).
    const trieOptions = { maxNodes: opts.maxTrieNodes, window: weights.contextWindow, initialNodes, pool: contextTriePool };
    switch (opts.method) {
      case 'off':
        this.proposer = new NoneProposer();
        break;
      case 'pld':
        this.proposer = new PldProposer({ maxNgram: 4, minNgram: 1 });
        break;
      case 'context':
        this.proposer = new ContextProposer(weights, trieOptions);
        break;
      case 'sssd':
        this.proposer = new SssdProposer({ context: true, datastore: opts.datastore ?? null, nextTokens: opts.nextTokens ?? null, edge: () => this.follower }, weights, trieOptions);
        if (opts.edgeTrie) this.follower = new EdgeTrieFollower(opts.edgeTrie);
        break;
    }
    if (opts.sampling && opts.sampling.temperature > 0) {
      this.proposer.couple?.({ noise: new GumbelNoise(opts.sampling.seed), temperature: opts.sampling.temperature, firstIndex: this.context.length });
    }
    if (predicted > 0) {
      const ids = opts.predictionIds!;
      this.proposer.predict?.(ids.length > predicted ? Array.prototype.slice.call(ids, 0, predicted) : ids);
    }
    this.indexSlice();
  }

  /** The request is over: the context trie's arrays go back to the pool for the next requests. */
  release(): void {
    this.proposer.release?.();
  }

  /** Context tokens not indexed yet (a long prompt's, taken a slice per draft). */
  get queuedTokens(): number {
    return this.context.length - this.indexed;
  }

  /** Tokens generated so far. */
  get outputLength(): number {
    return this.context.length - this.promptLength;
  }

  /** A tree rooted at the last context token with at most `budget` draft nodes (reused by the next call). */
  draft(budget: number): DraftTree {
    this.indexSlice();
    return this.proposer.propose(this.context, Math.max(0, budget | 0));
  }

  private indexSlice(): void {
    if (this.indexed === this.context.length) return;
    const to = Math.min(this.context.length, this.indexed + INDEX_SLICE);
    this.proposer.observe(this.context, this.indexed, to);
    this.indexed = to;
  }

  /** Tokens emitted by a step (accepted + bonus), in order. */
  accept(tokens: ArrayLike<number>): void {
    const from = this.context.length;
    this.context.pushAll(tokens);
    // Behind (a long prompt still going in): the tokens wait their turn, in order.
    if (this.indexed === from) {
      this.proposer.observe(this.context, from, this.context.length);
      this.indexed = this.context.length;
    }
    if (this.follower) this.follower.advanceAll(tokens);
  }

  /**
   * Replaces the edge trie; it continues prompt + output[0..outputLength). The
   * follower catches up along the tokens accepted since then; a trie for a
   * context this request has not reached, or a malformed one, counts as exhausted.
   */
  pushEdgeTrie(trie: Uint8Array, outputLength: number): void {
    if (this.method !== 'sssd') return;
    const follower = new EdgeTrieFollower(trie);
    const at = this.promptLength + outputLength;
    if (outputLength < 0 || at > this.context.length) follower.position = -1;
    else follower.advanceAll(this.context.data, at, this.context.length);
    this.follower = follower;
  }

  /** True once the accepted path has left the edge trie or reached its end; false when none was shipped. */
  get edgeTrieExhausted(): boolean {
    return this.follower !== null && this.follower.exhausted;
  }
}
