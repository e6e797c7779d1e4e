/**
 * Coupled drafting's ordering step (fusion.ts, table-source.ts): candidates
 * by their score log q / T + g, best first.
 */
import { GUMBEL_MAX, GUMBEL_TIER_BOUND, gumbelOf, gumbelTier, type GumbelNoise } from '../sampling/gumbel-noise';

/** Sorts the indices rank[0..n) by score[rank[i]], best first (insertion sort: a handful of candidates). */
export function rankByScore(score: Float64Array, rank: Int32Array, n: number): void {
  for (let a = 1; a < n; a++) {
    const r = rank[a];
    let b = a - 1;
    while (b >= 0 && score[rank[b]] < score[r]) {
      rank[b + 1] = rank[b];
      b--;
    }
    rank[b + 1] = r;
  }
}

/**
 * The best `m` of the candidates `tokens[offset..offset+n)` (probabilities
 * `probs` at the same places, largest first, the first m of them > 0) by
 * log q / T + g(index, token), best first, into rank[0..m) as candidate
 * numbers 0..n-1: the first m of rankByScore over all n, ties kept in
 * candidate order. Only the best m are wanted (the table source pushes no
 * more), so a candidate whose draw could not lift it into them is not drawn:
 * the bound comes from its uniform (gumbelTier), and once even the largest
 * draw could not, no later candidate's can either (q only falls). `score`
 * holds rank's scores.
 */
export function topCoupled(
  tokens: Int32Array,
  probs: Float32Array,
  offset: number,
  n: number,
  m: number,
  invT: number,
  noise: GumbelNoise,
  index: number,
  rank: Int32Array,
  score: Float64Array,
): void {
  let kept = 0;
  for (let c = 0; c < n; c++) {
    const q = probs[offset + c];
    if (!(q > 0)) break; // probabilities fall: no later candidate has a score either
    const base = Math.log(q) * invT;
    let s: number;
    if (kept === m) {
      const worst = score[m - 1];
      if (base + GUMBEL_MAX <= worst) break;
      const u = noise.uniform(index, tokens[offset + c]);
      if (base + GUMBEL_TIER_BOUND[gumbelTier(u)] <= worst) continue;
      s = base + gumbelOf(u);
      if (s <= worst) continue;
      kept--; // the worst leaves
    } else {
      s = base + noise.gumbel(index, tokens[offset + c]);
    }
    // Insert behind every score at least as good (equal scores keep candidate order).
    let b = kept - 1;
    while (b >= 0 && score[b] < s) {
      score[b + 1] = score[b];
      rank[b + 1] = rank[b];
      b--;
    }
    score[b + 1] = s;
    rank[b + 1] = c;
    kept++;
  }
}

/**
 * How far apart perturbed scores must be for the better one to be trusted:
 * the chance that a ranked candidate is the sample is taken as the softmax
 * of the scores over this spread, the ranked candidates competing with the
 * rest of the distribution (see coupledShares). The table's q is the mean of
 * the model's distribution over contexts that share the last tokens, not the
 * distribution itself, so where the best score leads by little either may
 * win. Measured on dev-sessions' sampled requests at their true contexts and
 * noise (stories260K, 8,827 positions), the best-scored candidate was the
 * sample 32-41% of the time with a lead under 0.5, 60-63% at 1-1.5, 76-81%
 * at 2-3 and 99% past 6, where the estimate before (the table's largest q)
 * said 0.35-0.41, 0.40-0.43, 0.53-0.61 and 0.98. With a spread of 0.65 the
 * nodes of best-first trees were accepted within a few points of their
 * estimate from 0.2 to 0.5, somewhat more often below, less above (0.98
 * estimated, 0.89 accepted); the budget's per-kind scale absorbs the
 * average. 0.65 rather than 0.8 (better calibrated on stories260K, the same
 * trees there to ±0.02 τ, the same served): llama2xs's sharper table wants
 * the smaller spread, babyllama105 is indifferent (docs/benchmarks.md,
 * "Coupled drafts that know how sure they are").
 */
export const COUPLED_SPREAD = 0.65;
/** The mean of a standard Gumbel draw (Euler–Mascheroni constant). */
const GUMBEL_MEAN = 0.5772156649;

/**
 * The chance each of the `m` ranked candidates is the sample, from their
 * scores (best first, as topCoupled leaves them) into share[0..m). `rest` is
 * the probability mass outside them: it competes as one candidate at the
 * score the best of its tokens gets on average, log(rest) / T + γ (exact at
 * T = 1, where the best of log q + g over a set is log Σq + a Gumbel draw).
 */
export function coupledShares(score: Float64Array, m: number, rest: number, invT: number, share: Float64Array): void {
  const best = score[0];
  let z = rest > 0 ? Math.exp((Math.log(rest) * invT + GUMBEL_MEAN - best) / COUPLED_SPREAD) : 0;
  for (let r = 0; r < m; r++) {
    const w = Math.exp((score[r] - best) / COUPLED_SPREAD);
    share[r] = w;
    z += w;
  }
  for (let r = 0; r < m; r++) share[r] /= z;
}
