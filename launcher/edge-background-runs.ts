/**
 * Waits, as a local stack stops, for its edge's background responses to
 * store their ends (GET /background-runs, edge/background-runs.ts): their
 * end waits for KV's second after their queued record, so an edge stopped
 * at once after its pool's drain lost those whose generation ended within
 * it (review h223). Bounded, and given up at once on `signal` (a second ^C).
 */
import { BACKGROUND_RUNS_ROUTE } from '../edge/background-runs';
import { END_STORED_WITHIN_MS } from '../edge/background-response';

/** How often the edge is asked while runs are left. */
const POLL_MS = 100;
/** One ask's bound: an edge that does not answer is not waited for. */
const ASK_TIMEOUT_MS = 2_000;

/**
 * Resolves once the edge at `edgeUrl` says no background run is left, once
 * it cannot say (gone, or a build without the route), after `boundMs`, or
 * on `signal`: the runs it still said it had (0 where none were left).
 */
export async function backgroundRunsStored(edgeUrl: string, signal?: AbortSignal, boundMs = END_STORED_WITHIN_MS + 1_000): Promise<number> {
  const until = Date.now() + boundMs;
  let left = 0;
  while (!signal?.aborted) {
    left = await runningAt(edgeUrl, signal);
    if (left === 0 || Date.now() + POLL_MS > until) return left;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, POLL_MS);
      function done(): void {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      }
      signal?.addEventListener('abort', done, { once: true });
    });
  }
  return left;
}

/** The edge's count of its runs; 0 where it cannot tell (it stopped, or its build has no such route). */
async function runningAt(edgeUrl: string, signal?: AbortSignal): Promise<number> {
  try {
    const res = await fetch(`${edgeUrl}${BACKGROUND_RUNS_ROUTE}`, { signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(ASK_TIMEOUT_MS)]) : AbortSignal.timeout(ASK_TIMEOUT_MS) });
    if (!res.ok) {
      await res.body?.cancel();
      return 0;
    }
    const { running } = (await res.json()) as { running?: unknown };
    return typeof running === 'number' && running > 0 ? running : 0;
  } catch {
    return 0;
  }
}
