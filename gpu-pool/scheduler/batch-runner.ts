/**
 * What the scheduler needs from the model runtime: the structural shape of
 * engineer A's ModelRunner (gpu-pool/runtime/model-runner.ts), so the pool's
 * loop, calibration and tests depend on the contract, not on one class.
 */
import type { ModelConfig } from '../model/model-config';
import type { StepRow } from '../runtime/step-types';

export interface RunnerSequence {
  readonly length: number;
  /** Positions it has room for without growing (host caches), if the runner says. */
  readonly capacity?: number;
  release(): void;
}

export interface BatchStepResult {
  logitsAt(rowIndex: number, tokenIndex: number): Float32Array;
  commit(rowIndex: number, tokenIndices: ArrayLike<number>): void;
}

export interface BatchRunner<S extends RunnerSequence = RunnerSequence> {
  readonly config: ModelConfig;
  newSequence(capacity?: number): S;
  /**
   * Fills the empty sequence `to` with the first `length` positions of `from`
   * (prompt prefix caching, prefix-cache.ts). Absent where a runner cannot
   * (keys/values resident on a device).
   */
  copyPrefix?(from: S, to: S, length: number): void;
  /**
   * Whether a step's result can still be read and committed after later
   * steps ran (each result owns its outputs, as with keys/values on the
   * host). Absent or false: only the latest step's result can be committed
   * (keys/values resident on a device).
   */
  readonly keepsStepResults?: boolean;
  step(rows: ReadonlyArray<{ cache: S; row: StepRow }>): Promise<BatchStepResult>;
}
