/**
 * Coupled drafting's ordering step (fusion.ts, table-source.ts): candidates
 * by their score log q / T + g, best first.
 */

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
