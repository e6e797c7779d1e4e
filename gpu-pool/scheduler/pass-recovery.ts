/**
 * A step's forward pass, kept going when the runtime fails it: a batch that
 * fails runs again in halves down to single rows, so one bad row, or a batch
 * too big for the runtime's memory, ends only the rows that fail alone; and
 * batches that keep failing as a whole run in pieces under a cap on padded
 * positions that the pool raises again as memory frees.
 */
import type { PoolMetrics } from '../metrics/pool-metrics';
import type { StepRow } from '../runtime/step-types';
import type { BatchRunner, BatchStepResult, RunnerSequence } from './batch-runner';
import { logLine } from '../metrics/log-line';

/** Steps a pass cap holds before it doubles (PassRecovery.run). */
export const CAP_PROBE_STEPS = 64;

/** One row of a pass: the sequence it extends and the tokens it feeds. */
export interface StepInput<S> {
  cache: S;
  row: StepRow;
}

/**
 * The positions a pass of inputs[start..end) pads to: every row holds the
 * longest past and the most new tokens among them (the runner's batch
 * layout), so this is what its keys/values and activations grow with.
 */
export function passPositions<S extends RunnerSequence>(inputs: readonly StepInput<S>[], start: number, end: number): number {
  let past = 0;
  let tokens = 0;
  for (let r = start; r < end; r++) {
    past = Math.max(past, inputs[r].cache.length);
    tokens = Math.max(tokens, inputs[r].row.tokens.length);
  }
  return (end - start) * (past + tokens);
}

export class PassRecovery<S extends RunnerSequence> {
  /** Failed passes recovered by running in halves (their log lines are rate-limited). */
  private recoveries = 0;
  /**
   * Most padded positions a pass takes (run; passPositions), once batches
   * failed as a whole in consecutive steps; Infinity: no cap.
   */
  private cap = Infinity;
  /** Steps run in pieces since the cap was set or last raised. */
  private cappedSteps = 0;
  /** The step at which a batch last failed as a whole and finished in halves. */
  private wholeBatchFailedAt = -Infinity;

  constructor(
    private readonly runner: BatchRunner<S>,
    private readonly metrics: PoolMetrics,
  ) {}

  /**
   * One step's pass: in pieces of at most `cap` padded positions where
   * batches have failed as a whole (isolate sets the cap). The cap counts
   * positions, not rows, because a pass's memory grows with its rows' pasts
   * and trees: a cap in rows set on one-token rows at short pasts lets the
   * same rows through with 16-node trees or three times the past, and they
   * fail again. Every CAP_PROBE_STEPS such steps the cap doubles, so memory
   * that finished or shorter sequences freed is taken back; a batch that
   * fails again at the larger size runs in halves and sets the cap anew.
   */
  async run(inputs: StepInput<S>[], n: number): Promise<BatchStepResult> {
    if (this.cap === Infinity) return this.runner.step(inputs);
    const size = passPositions(inputs, 0, n);
    if (size <= this.cap) return this.runner.step(inputs);
    if (++this.cappedSteps >= CAP_PROBE_STEPS) {
      this.cappedSteps = 0;
      this.setCap(2 * this.cap >= size ? Infinity : 2 * this.cap);
      if (size <= this.cap) return this.runner.step(inputs);
    }
    const cap = this.cap;
    const owner: BatchStepResult[] = new Array(n);
    const index = new Int32Array(n);
    for (let start = 0, end = 0; start < n; start = end) {
      // Consecutive rows while their padded pass fits the cap; a row bigger than the cap runs alone.
      // Quadratic in a piece's rows, and only in the steps a memory failure capped.
      end = start + 1;
      while (end < n && passPositions(inputs, start, end + 1) <= cap) end++;
      const rows = inputs.slice(start, end);
      const result = await this.runner.step(rows);
      for (let i = 0; i < rows.length; i++) {
        owner[start + i] = result;
        index[start + i] = i;
      }
    }
    return stitchedResult(owner, index);
  }

  /**
   * After a plain pass of `n` rows failed with `err` at step `step`: runs the
   * batch again in halves, a half that fails in halves again, down to single
   * rows. The rows that fail alone (a sequence the runtime cannot take, a
   * prompt too big for its memory) are handed to `endRow` with the reason;
   * every other row's result is read from the pass it ran in. So a batch too
   * big for the runtime's memory finishes its step in smaller passes instead
   * of ending everyone, and one bad row among n costs about 2·log2(n)
   * passes, not n + 1. Where a runner cannot commit from an earlier pass's
   * result (keys/values resident on a device), the rows that do not fail
   * alone run together once more. Throws (and the caller ends every
   * generation) where every row fails alone or that last pass fails too: the
   * fault is the runtime's, not a row's.
   */
  async isolate(inputs: StepInput<S>[], n: number, err: unknown, step: number, endRow: (r: number, message: string) => void): Promise<BatchStepResult> {
    const { metrics } = this;
    if (n === 1) {
      metrics.passFailures.inc({ result: 'batch' });
      throw err;
    }
    const keeps = this.runner.keepsStepResults === true;
    const owner: Array<BatchStepResult | undefined> = new Array(n);
    const index = new Int32Array(n).fill(-1);
    const failing: number[] = [];
    let passes = 0;
    /** The padded positions of the largest pass that went through. */
    let largestRun = 0;
    const run = async (rows: number[]): Promise<void> => {
      let result: BatchStepResult;
      try {
        passes++;
        result = await this.runner.step(rows.map((r) => inputs[r]));
      } catch {
        if (rows.length === 1) failing.push(rows[0]);
        else {
          const half = rows.length >> 1;
          await run(rows.slice(0, half));
          await run(rows.slice(half));
        }
        return;
      }
      largestRun = Math.max(largestRun, passPositions(rows.map((r) => inputs[r]), 0, rows.length));
      if (keeps) rows.forEach((r, i) => ((owner[r] = result), (index[r] = i)));
    };
    // The whole batch has just failed: start from its halves.
    const all = Array.from({ length: n }, (_, r) => r);
    await run(all.slice(0, n >> 1));
    await run(all.slice(n >> 1));
    if (failing.length === n) {
      metrics.passFailures.inc({ result: 'batch' });
      throw err;
    }
    const message = err instanceof Error ? err.message : String(err);
    // In full the first time and whenever rows end; a batch that keeps failing
    // as a whole (more than the device's memory takes) gets one line a hundred.
    const count = ++this.recoveries;
    if (count === 1 || failing.length > 0) {
      logLine(
        `pool: a pass of ${n} rows failed; run again in ${passes} smaller passes, ${failing.length === 0 ? 'no row fails alone' : `${failing.length} row(s) fail alone and end, the other ${n - failing.length} go on`}: ${err instanceof Error ? (err.stack ?? message) : message}`,
      );
    } else if (count % 100 === 0) {
      logLine(
        `pool: ${count} failed passes run again in smaller ones (see sssd_pool_pass_failures_total); if the runtime is out of memory, lower --max-active or --max-total-tokens. The latest, ${n} rows: ${message}`,
      );
    }
    failing.sort((a, b) => a - b);
    for (const r of failing) endRow(r, `verification step failed for this generation: ${message}`);
    const result = failing.length === 0 ? 'retried' : 'isolated';
    if (keeps) {
      metrics.passFailures.inc({ result });
      // A batch that fails as a whole once may be a passing fault; twice in a
      // row, the runtime cannot take that many rows (its memory): later steps
      // run in pieces the size that went through (run), not fail first.
      if (failing.length === 0) {
        if (step - this.wholeBatchFailedAt <= 2 && largestRun < this.cap) {
          this.setCap(largestRun);
          this.cappedSteps = 0;
          logLine(`pool: passes of ${n} rows failed as a whole in consecutive steps: passes now take at most ${largestRun} padded positions, rows × (longest past + most new tokens) (sssd_pool_pass_position_cap; doubled every ${CAP_PROBE_STEPS} steps). If the runtime is out of memory, lower --max-active or --max-total-tokens.`);
        }
        this.wholeBatchFailedAt = step;
      }
      return stitchedResult(owner as BatchStepResult[], index);
    }
    // Commits address the latest pass only: the survivors' pass, read through the batch's row indices.
    const survivors: StepInput<S>[] = [];
    index.fill(-1);
    let next = 0;
    for (let r = 0; r < n; r++) {
      if (next < failing.length && failing[next] === r) {
        next++;
        continue;
      }
      index[r] = survivors.length;
      survivors.push(inputs[r]);
    }
    let inner: BatchStepResult;
    try {
      inner = await this.runner.step(survivors);
    } catch (again) {
      metrics.passFailures.inc({ result: 'batch' });
      throw again;
    }
    metrics.passFailures.inc({ result });
    return stitchedResult(new Array<BatchStepResult>(n).fill(inner), index);
  }

  private setCap(cap: number): void {
    this.cap = cap;
    this.metrics.passPositionCap.set(Number.isFinite(cap) ? cap : 0);
  }
}

/** One step's result read from several passes: row r is row index[r] of owner[r]'s pass. */
function stitchedResult(owner: readonly BatchStepResult[], index: Int32Array): BatchStepResult {
  return {
    logitsAt: (r, t) => owner[r].logitsAt(index[r], t),
    commit: (r, tokens) => owner[r].commit(index[r], tokens),
  };
}
