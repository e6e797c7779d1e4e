/**
 * Acceptance estimates of draft chains, corrected per depth by what was
 * accepted.
 *
 * A chain's node estimates are path products of the source's per-token
 * probabilities (table-chain.ts: the model's mean probability of the table's
 * pick). Those run low for greedy rows (the pick is the model's argmax far
 * more often than its mean probability says) and the error compounds with
 * depth, so one scale per method cannot fix them: scaled to match the total,
 * the first node is overrated and the last ones underrated, and the budget
 * sizes chains too short. Here each depth gets its own ratio of accepted to
 * predicted, decayed over the last few hundred chains: learnt at concurrency
 * 32 on dev-sessions, 1.29 / 1.60 / 2.34 / 2.93 at depth 1-4.
 */
/**
 * Before any chain is verified a depth's estimates count double (one chain's
 * worth of evidence): optimistic, so that a depth the raw estimates would
 * never send gets sent and measured (a depth never sent is never corrected).
 */
const PRIOR_PREDICTED = 0.5;
const PRIOR_OBSERVED = 1;
/** Weight kept per recorded chain: the last few hundred chains count. */
const DECAY = 0.995;
const MIN_SCALE = 0.05;
const MAX_SCALE = 20;

export class DepthCalibration {
  private readonly predicted: Float64Array;
  private readonly observed: Float64Array;

  constructor(readonly maxDepth: number) {
    this.predicted = new Float64Array(maxDepth + 1).fill(PRIOR_PREDICTED);
    this.observed = new Float64Array(maxDepth + 1).fill(PRIOR_OBSERVED);
  }

  /** The correction of estimates at `depth` (1 = trust them). */
  scale(depth: number): number {
    const d = Math.min(this.maxDepth, Math.max(1, depth));
    return Math.min(MAX_SCALE, Math.max(MIN_SCALE, this.observed[d] / this.predicted[d]));
  }

  /**
   * Writes the calibrated estimates of a chain (`raw[1..length]`, node d at
   * depth d) into `out[1..length]`, capped at 1 and never rising with depth
   * (a node is accepted only if its parent is).
   */
  apply(raw: Float32Array, length: number, out: Float32Array): void {
    out[0] = 1;
    for (let d = 1; d <= length; d++) out[d] = Math.min(out[d - 1], raw[d] * this.scale(d));
  }

  /** One verified chain: the raw estimates of the `sent` nodes, of which the first `accepted` were accepted. */
  record(raw: Float32Array, sent: number, accepted: number): void {
    const n = Math.min(sent, this.maxDepth);
    for (let d = 1; d <= n; d++) {
      this.predicted[d] = this.predicted[d] * DECAY + raw[d];
      this.observed[d] = this.observed[d] * DECAY + (accepted >= d ? 1 : 0);
    }
  }
}
