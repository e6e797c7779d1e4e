/**
 * Sampling noise keyed by (seed, sequence index, token): the Gumbel-max form
 * of sampling. The token at sequence index i is
 *
 *   argmax over allowed tokens v of  logit_v / T + g(seed, i, v)
 *
 * which is an exact sample of softmax(logits / T) (restricted to the top-k /
 * top-p set, renormalised) because g are independent standard Gumbel draws.
 * The draws depend only on the seed and the position, never on how the
 * tokens were computed, so a seeded request gives the same text with or
 * without speculation, at any batch size. And a drafter that knows the seed
 * can see the noise too: among its candidates for index i, the one that
 * maximises log q(v) / T + g(i, v) is the one the model will most likely
 * sample (if q ≈ p it is exactly that one whenever the sample is among the
 * candidates), which turns sampled drafting into nearly greedy drafting.
 *
 * Isomorphic (workerd and Node): integer hashing and Math.log only.
 */

/** The largest g a 32-bit uniform can give (-ln(-ln(1 - 2^-33)) ≈ 22.9): tokens whose logit term trails by more cannot win. */
export const GUMBEL_MAX = 22.9;

function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The Gumbel draw of a uniform: increasing in u, so u ≤ U bounds the draw by gumbelOf(U). */
export function gumbelOf(u: number): number {
  return -Math.log(-Math.log(u));
}

/**
 * Bounds on a Gumbel draw read off its uniform without a logarithm: u ≤ 0.9
 * gives g ≤ 2.25, u ≤ 0.99 g ≤ 4.60, u ≤ 0.9999 g ≤ 9.21 (g increases with
 * u). Most candidates trail the best score by more than that, so their draw
 * is never computed (the pool's sampler, coupled drafting).
 */
const TIER_U = [0.9, 0.99, 0.9999] as const;
/** The bound per tier (gumbelTier); the last tier (u above 0.9999) is bounded by the largest draw there is. */
export const GUMBEL_TIER_BOUND: readonly number[] = [...TIER_U.map(gumbelOf), GUMBEL_MAX];

/** The tier of a uniform: its draw is at most GUMBEL_TIER_BOUND[tier]. */
export function gumbelTier(u: number): number {
  return u <= TIER_U[0] ? 0 : u <= TIER_U[1] ? 1 : u <= TIER_U[2] ? 2 : 3;
}

export class GumbelNoise {
  private readonly key: number;
  /**
   * The seed's high word on its own (0 below 2^32): folded into every index's
   * key, so two seeds whose 32-bit `key`s meet (one in 2^32 pairs, ~2^21
   * seeds below 2^53 for each) still draw different noise. Zero for seeds
   * below 2^32, whose noise is what it was before.
   */
  private readonly highKey: number;
  private lastIndex = -1;
  private indexKey = 0;

  /** `seed`: any non-negative integer up to 2^53 (the request's sampling seed). */
  constructor(readonly seed: number) {
    if (!Number.isFinite(seed)) throw new RangeError(`seed must be a number, not ${seed}`);
    const s = Math.floor(Math.abs(seed));
    const lo = s >>> 0;
    const hi = Math.floor(s / 2 ** 32) >>> 0;
    this.key = mix32(lo ^ mix32(hi + 0x9e3779b9));
    // hi < 2^21 never equals the constant, and mix32 is a bijection with mix32(0) = 0: distinct high words, distinct non-zero keys.
    this.highKey = hi === 0 ? 0 : mix32(hi ^ 0xc2b2ae3d);
  }

  /** The uniform (0, 1) behind g(index, token). */
  uniform(index: number, token: number): number {
    if (index !== this.lastIndex) {
      this.lastIndex = index;
      this.indexKey = (mix32(this.key ^ Math.imul(index + 1, 0x9e3779b1)) ^ this.highKey) >>> 0;
    }
    const h = mix32(mix32(this.indexKey ^ Math.imul(token + 1, 0x85ebca77)) + this.indexKey);
    return (h + 0.5) / 4294967296;
  }

  /** Standard Gumbel draw for (sequence index, token). */
  gumbel(index: number, token: number): number {
    return gumbelOf(this.uniform(index, token));
  }
}
