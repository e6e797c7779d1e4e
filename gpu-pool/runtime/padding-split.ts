/**
 * Where to cut a batch in two so that each part is padded only to its own
 * longest row. Every row of a padded batch costs as much as its longest,
 * so one long row (a prompt joining a decode batch, a long past among short
 * ones) can multiply the work.
 *
 * - paddingSplitThreshold: new tokens per row, two passes (16 decode rows
 *   plus a 30-token prefill cost ~14 ms as one pass and ~2 ms as two on a
 *   CPU); the cost is padded tokens plus `overheadTokens` per extra run.
 * - past-groups.ts: past lengths, two attention groups in one pass.
 */

/**
 * The cheapest cut of `values[0..n)` sorted ascending into `sorted` (scratch,
 * length >= n): the largest value of the first part, or -1 where no cut
 * beats one part. A part costs its rows times its largest value rounded up
 * to a multiple of `bucket` (how the runner pads it; 1 = as it is); equal
 * values stay in one part. Returns the cut and leaves the cost of the best
 * cut, and of one part, in `cost`.
 */
export function cheapestCut(values: ArrayLike<number>, n: number, sorted: Int32Array, bucket: number, cost: { cut: number; whole: number }): number {
  const pad = (value: number): number => Math.ceil(value / bucket) * bucket;
  for (let i = 0; i < n; i++) sorted[i] = values[i];
  const s = sorted.subarray(0, n).sort();
  const longest = pad(s[n - 1]);
  cost.whole = n * longest;
  cost.cut = cost.whole;
  let threshold = -1;
  // The first k rows (the smallest values) form the first part.
  for (let k = 1; k < n; k++) {
    if (s[k] === s[k - 1]) continue;
    const c = k * pad(s[k - 1]) + (n - k) * longest;
    if (c < cost.cut) {
      cost.cut = c;
      threshold = s[k - 1];
    }
  }
  return threshold;
}

const costs = { cut: 0, whole: 0 };

/**
 * Returns the token-count threshold: rows with more tokens than it go to a
 * second pass; -1 = one pass is cheaper. `sorted` is scratch (length >= n).
 */
export function paddingSplitThreshold(lengths: ArrayLike<number>, n: number, overheadTokens: number, sorted: Int32Array): number {
  if (n < 2 || !Number.isFinite(overheadTokens)) return -1;
  const threshold = cheapestCut(lengths, n, sorted, 1, costs);
  return threshold >= 0 && costs.cut + overheadTokens < costs.whole ? threshold : -1;
}
