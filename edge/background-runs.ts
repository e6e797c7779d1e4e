/**
 * The background responses whose runs this isolate carries on after their
 * answers, until their end is stored and their kept events written: what a
 * local stack waits for before it stops its edge (GET /background-runs,
 * launcher/stack.ts). Stopped at once after its pool's drain, the edge lost
 * the runs whose generation ended in KV's last second: their end waits for
 * the key's next write (review h223: stored `queued`, then `failed` "went
 * away", work done and billed).
 */

/** Where the edge answers `{running}`, the count of backgroundRunsPending. */
export const BACKGROUND_RUNS_ROUTE = '/background-runs';

/** Each run counted until its work settles, and no later than its `until`: a run whose waitUntil the runtime cut never settles. */
const running = new Set<{ until: number }>();

/** Counts a run until `done` settles (its end stored, its events written), or `until` at the latest. */
export function countBackgroundRun(done: Promise<unknown>, until: number): void {
  const entry = { until };
  running.add(entry);
  void done.then(
    () => running.delete(entry),
    () => running.delete(entry),
  );
}

/** How many background runs this isolate still carries on (per isolate: a deployed Worker's other isolates are not counted). */
export function backgroundRunsPending(now = Date.now()): number {
  let count = 0;
  for (const entry of running) {
    if (entry.until < now) running.delete(entry);
    else count++;
  }
  return count;
}
