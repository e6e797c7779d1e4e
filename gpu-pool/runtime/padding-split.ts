/**
 * Whether to run a step's rows as two padded sub-batches instead of one.
 * Every row is padded to the longest row's token count, so one long row (a
 * prompt joining a decode batch) can multiply the work: 16 decode rows plus
 * a 30-token prefill cost ~14 ms as one pass and ~2 ms as two on a CPU.
 * Cost model: padded tokens, plus `overheadTokens` per extra session run.
 */

/**
 * Returns the token-count threshold: rows with more tokens than it go to a
 * second pass; -1 = one pass is cheaper. `sorted` is scratch (length >= n).
 */
export function paddingSplitThreshold(lengths: ArrayLike<number>, n: number, overheadTokens: number, sorted: Int32Array): number {
  if (n < 2 || !Number.isFinite(overheadTokens)) return -1;
  for (let i = 0; i < n; i++) sorted[i] = lengths[i];
  const s = sorted.subarray(0, n).sort();
  const longest = s[n - 1];
  let bestCost = n * longest;
  let threshold = -1;
  // Split after position k - 1 (the first k rows, the shortest, form the short pass).
  for (let k = 1; k < n; k++) {
    if (s[k] === s[k - 1]) continue; // equal lengths must stay in one pass
    const cost = k * s[k - 1] + (n - k) * longest + overheadTokens;
    if (cost < bestCost) {
      bestCost = cost;
      threshold = s[k - 1];
    }
  }
  return threshold;
}
