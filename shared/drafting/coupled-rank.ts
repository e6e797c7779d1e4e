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
