/**
 * Acceptance of one row's draft tree against the target model's logits.
 *
 * A step row is `chain ++ tree`: the chain is the tokens not yet in the cache
 * (the whole prompt at prefill, the last emitted token afterwards) and the draft
 * nodes hang below the chain's last token (`rootIndex`). Verification walks from
 * that root:
 * - greedy: follow the argmax; the longest matching path is accepted and the
 *   argmax after its last node is the bonus token (greedy decoding's choice,
 *   on this pass's logits: a multi-token pass's differ from a one-token
 *   pass's by up to ~1e-5, so a closer tie can go the other way);
 * - sampling: exact speculative sampling with one-hot drafts — try the children
 *   in order, accept child c with probability p(c) under the current residual,
 *   else zero p(c) (renormalising implicitly); when all are rejected, sample
 *   from the residual. The output distribution equals the target's.
 *
 *   By default the randomness is coupled: the token at sequence index i is
 *   t = argmax(logit / T + g(seed, i, ·)) over the allowed tokens (Gumbel-max,
 *   exactly what plain sampling draws; shared/sampling/gumbel-noise.ts), and
 *   the child equal to t is the accepted one. Given the children rejected so
 *   far, t is child c with probability p(c) / residual mass, so this IS the
 *   residual procedure above, realised with shared noise; and the output for
 *   a seed does not depend on the tree the budget happened to give (load,
 *   batch, method): a seeded request gives the same tokens with speculation
 *   `off` or `sssd`, but for such float ties. The drafter sees the same noise, so it can put the
 *   candidate the model will most likely sample first. Passing an
 *   AcceptRule selects the literal sequential form (fresh draws per child).
 *
 * All scratch is preallocated: nothing is allocated per token.
 */
import type { GumbelNoise } from '../../shared/sampling/gumbel-noise';
import { argmax, EveryTokenMaskedError, sampleWithNoise, toProbabilities, type Rng, type SamplingOptions } from '../runtime/sampling';
import type { LogitAdjustments } from './logit-adjustments';

/** What verification needs from a step's result for one row. */
export interface RowLogits {
  logitsAt(rowIndex: number, tokenIndex: number): Float32Array;
}

/** A step row's tokens and parents (the runner's StepRow, or a prefix of its arrays). */
export interface VerifyRow {
  tokens: Int32Array;
  parents: Int32Array;
}

/**
 * Decides whether to accept a drafted child given its probability under the
 * current residual distribution (already renormalised). The exact rule is
 * `u < p`; tests swap in wrong rules to prove the statistics can catch them.
 */
export type AcceptRule = (residualProb: number, rng: Rng) => boolean;

/** The literal sequential rule (fresh uniform per tried child). */
export const exactAcceptRule: AcceptRule = (p, rng) => rng.next() < p;

export class TreeVerifier {
  /** Indices (into the row) of the accepted draft nodes, root excluded, in path order. */
  readonly acceptedPath: Int32Array;
  acceptedCount = 0;
  /** The token emitted after the last accepted node (greedy argmax or a sample); -1 where maskedOut. */
  bonusToken = -1;
  /**
   * Set where the request's own masks left no token after the accepted path
   * (greedy and coupled sampling): the path stands, as plain decoding emitted
   * its tokens before it found none, and no bonus token follows.
   */
  maskedOut: EveryTokenMaskedError | null = null;

  private readonly firstChild: Int32Array;
  private readonly nextSibling: Int32Array;
  private readonly lastChild: Int32Array;
  private readonly probs: Float32Array;

  constructor(
    readonly vocabSize: number,
    maxRowTokens: number,
    /** null = coupled exact sampling (default); a rule = the sequential form with that rule. */
    private readonly acceptRule: AcceptRule | null = null,
  ) {
    this.acceptedPath = new Int32Array(maxRowTokens);
    this.firstChild = new Int32Array(maxRowTokens);
    this.nextSibling = new Int32Array(maxRowTokens);
    this.lastChild = new Int32Array(maxRowTokens);
    this.probs = new Float32Array(vocabSize);
  }

  /** The child of `node` carrying `token`, or -1 (identical tokens under one parent are merged by fusion). */
  private childWithToken(row: VerifyRow, node: number, token: number): number {
    let child = this.firstChild[node];
    while (child !== -1 && row.tokens[child] !== token) child = this.nextSibling[child];
    return child;
  }

  /** Greedy acceptance; returns the number of accepted draft nodes. */
  verifyGreedy(row: VerifyRow, rowLength: number, rootIndex: number, logits: RowLogits, rowIndex: number, adjustments: LogitAdjustments | null = null): number {
    this.linkChildren(row, rowLength, rootIndex);
    return this.followTargets(row, rootIndex, logits, rowIndex, null, null, 0, adjustments);
  }

  /**
   * Walks from the root along the child equal to each position's target token
   * (the argmax, or with `noise` the Gumbel-max sample of sequence index
   * firstIndex + depth); the first target no child holds is the bonus token.
   */
  private followTargets(
    row: VerifyRow,
    rootIndex: number,
    logits: RowLogits,
    rowIndex: number,
    sampling: SamplingOptions | null,
    noise: GumbelNoise | null,
    firstIndex: number,
    adjustments: LogitAdjustments | null,
  ): number {
    let node = rootIndex;
    let count = 0;
    this.maskedOut = null;
    for (;;) {
      let l = logits.logitsAt(rowIndex, node);
      // The node's history: the output so far and the accepted path above it.
      if (adjustments) l = adjustments.apply(l, row.tokens, this.acceptedPath, count);
      let target: number;
      try {
        target = noise && sampling ? sampleWithNoise(l, sampling, this.probs, noise, firstIndex + count) : argmax(l);
      } catch (err) {
        if (count === 0 || !(err instanceof EveryTokenMaskedError)) throw err;
        this.maskedOut = err;
        this.bonusToken = -1;
        break;
      }
      const child = this.childWithToken(row, node, target);
      if (child === -1) {
        this.bonusToken = target;
        break;
      }
      this.acceptedPath[count++] = child;
      node = child;
    }
    this.acceptedCount = count;
    return count;
  }

  /**
   * Exact speculative sampling (temperature > 0); returns the number of
   * accepted draft nodes. Coupled (the default): `noise` and `firstIndex`, the
   * sequence index of the token after the root (the sequence length), pick
   * the tokens (`rng` may be null); the sequential form draws from `rng`.
   */
  verifySampled(
    row: VerifyRow,
    rowLength: number,
    rootIndex: number,
    logits: RowLogits,
    rowIndex: number,
    sampling: SamplingOptions,
    rng: Rng | null,
    noise: GumbelNoise | null = null,
    firstIndex = 0,
    adjustments: LogitAdjustments | null = null,
  ): number {
    this.linkChildren(row, rowLength, rootIndex);
    const rule = this.acceptRule;
    if (rule === null) {
      if (noise === null) throw new Error('coupled speculative sampling needs the request\'s noise');
      return this.followTargets(row, rootIndex, logits, rowIndex, sampling, noise, firstIndex, adjustments);
    }
    if (rng === null) throw new Error('the sequential form of speculative sampling needs a random stream');
    const p = this.probs;
    let node = rootIndex;
    let count = 0;
    outer: for (;;) {
      const l = logits.logitsAt(rowIndex, node);
      toProbabilities(adjustments ? adjustments.apply(l, row.tokens, this.acceptedPath, count) : l, sampling, p);
      // Residual mass instead of renormalising the whole vector after each rejection; from the vector's own sum,
      // not 1: float32 probabilities sum a hair under it, and children covering every allowed token could then all
      // be rejected, leaving nothing to sample.
      let mass = 0;
      for (let i = 0; i < p.length; i++) mass += p[i];
      let lastRejected = -1;
      for (let child = this.firstChild[node]; child !== -1; child = this.nextSibling[child]) {
        const token = row.tokens[child];
        const pc = p[token];
        if (pc > 0 && rule(Math.min(1, pc / mass), rng)) {
          this.acceptedPath[count++] = child;
          node = child;
          continue outer;
        }
        mass -= pc;
        if (pc > 0) lastRejected = token;
        p[token] = 0;
      }
      this.bonusToken = sampleResidual(p, mass, rng, lastRejected);
      break;
    }
    this.acceptedCount = count;
    return count;
  }

  /** Child lists (in row order) for the nodes below `rootIndex`. */
  private linkChildren(row: VerifyRow, rowLength: number, rootIndex: number): void {
    const { firstChild, nextSibling, lastChild } = this;
    for (let i = rootIndex; i < rowLength; i++) {
      firstChild[i] = -1;
      nextSibling[i] = -1;
      lastChild[i] = -1;
    }
    for (let i = rootIndex + 1; i < rowLength; i++) {
      const parent = row.parents[i];
      if (parent < rootIndex) continue;
      if (lastChild[parent] === -1) firstChild[parent] = i;
      else nextSibling[lastChild[parent]] = i;
      lastChild[parent] = i;
    }
  }
}

/** Sample from `p` whose entries sum to `mass` (rejected children already zeroed); nothing left (rounding): `fallback`, the last child rejected, else the argmax. */
export function sampleResidual(p: Float32Array, mass: number, rng: Rng, fallback: number): number {
  let u = rng.next() * mass;
  let last = -1;
  for (let i = 0; i < p.length; i++) {
    const pi = p[i];
    if (pi <= 0) continue;
    last = i;
    u -= pi;
    if (u < 0) return i;
  }
  // Rounding left u a hair above zero: the last token with mass is the answer.
  return last !== -1 ? last : fallback !== -1 ? fallback : argmaxOf(p);
}

function argmaxOf(p: Float32Array): number {
  let best = 0;
  for (let i = 1; i < p.length; i++) if (p[i] > p[best]) best = i;
  return best;
}
