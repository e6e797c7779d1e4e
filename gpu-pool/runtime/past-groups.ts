/**
 * Whether to split a pass's rows into two attention groups by past length
 * (the `attentionGroups` graph, llama-graph.ts). Every row of a group
 * attends over the group's longest past, padded to the past bucket, so a
 * batch whose pasts spread wide spends much of its attention on padding:
 * 52-60% of the query-key pairs were real at 32 rows in serving. Two groups
 * in one pass cost ~70 more kernels than one (the split, a second attention
 * per layer, the joins), so they only pay where they drop enough padding.
 * Measured (stories260K, one thread, docs/benchmarks.md "Attention in two
 * groups of rows"): 32 rows at 59% real, -8 to -10% a pass; 8 rows at 67%,
 * -0.3 to -4.5%.
 */

import { cheapestCut } from './padding-split';

/** Fewest rows worth splitting. */
export const MIN_GROUPED_ROWS = 8;
/** Least share of the padded past positions (rows × bucketed past) the split must save. */
export const MIN_SAVED_SHARE = 0.2;

const costs = { cut: 0, whole: 0 };

/**
 * The longest past of the short group, or -1 for one group: rows whose past
 * is at most the returned length form group 0. Pasts are bucketed as the
 * runner pads them (`bucket`); `sorted` is scratch (length >= n).
 */
export function pastGroupThreshold(pasts: ArrayLike<number>, n: number, bucket: number, sorted: Int32Array): number {
  if (n < MIN_GROUPED_ROWS) return -1;
  const threshold = cheapestCut(pasts, n, sorted, bucket, costs);
  return threshold >= 0 && costs.whole - costs.cut >= MIN_SAVED_SHARE * costs.whole ? threshold : -1;
}
