import type { BatchRunner, RunnerSequence } from '../../gpu-pool/scheduler/batch-runner';

/** What a hook is given before a step: the rows the step is about to run. */
export type StepRows<S extends RunnerSequence> = Parameters<BatchRunner<S>['step']>[0];

/**
 * `runner` (the real model's, usually), each step running `hook` first: a slower device (a wait), a held pass, a
 * fault (a throw). A hook that returns nothing lets the step run at once; one that returns a promise holds it until
 * the promise settles. Without copyPrefix, as the runners it stands for in these tests: no prompt prefix caching.
 */
export function stepHookedRunner<S extends RunnerSequence>(
  runner: BatchRunner<S>,
  hook: (rows: StepRows<S>) => void | Promise<void>,
  keepsStepResults = runner.keepsStepResults,
): BatchRunner<S> {
  return {
    get config() {
      return runner.config;
    },
    keepsStepResults,
    newSequence: (capacity) => runner.newSequence(capacity),
    step: async (rows) => {
      const held = hook(rows);
      if (held) await held;
      return runner.step(rows);
    },
  };
}
