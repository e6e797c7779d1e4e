/**
 * When a completion's reply may start: at once when its generations open, or
 * after a grace while a pool holds them all (queued there, perhaps, for long).
 * Streamed replies and whole ones with heartbeats both wait on this.
 */
import type { CompletionRun } from './completion-run';

/**
 * When a streamed reply may start: 'opened' once every generation has
 * opened (its first tokens came), or 'late' once `graceMs` has passed and a
 * pool holds every generation (queued there, perhaps, for long). Throws what
 * opening threw before either: "busy" and the like keep their HTTP status.
 */
export async function openedOrLate(runs: readonly CompletionRun[], opening: Promise<void>, graceMs: number): Promise<'opened' | 'late'> {
  if (await lateBefore(runs, opening, graceMs)) return 'late';
  await opening;
  return 'opened';
}

/**
 * Whether `graceMs` passed, with a pool holding every generation, before
 * `work` settled (true), or `work` settled first, either way (false).
 * Always false for a grace of 0. True: the caller starts the reply, and the
 * runs are told (a generation failing before its first token from then on is
 * tried again rather than refused: open-generation.ts).
 */
export async function lateBefore(runs: readonly CompletionRun[], work: Promise<unknown>, graceMs: number): Promise<boolean> {
  const settled = work.then(
    () => false,
    () => false,
  );
  if (graceMs <= 0) return settled;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const graceOver = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
  try {
    const late = await Promise.race([settled, Promise.all([graceOver, ...runs.map((run) => run.accepted)]).then(() => true)]);
    if (late) for (const run of runs) run.replyStarted = true;
    return late;
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}
