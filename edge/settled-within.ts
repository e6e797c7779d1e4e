/**
 * Bounded waits for another request's or KV's promise: the promise's value if
 * it settles within `ms`, else a marker (the promise goes on; its value can
 * still be awaited later).
 */

/** Resolves after `ms` (at once for 0 or less): the waits between a key's KV writes. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** What `within` gives where the time ran out first. */
export const TIMED_OUT = Symbol('timed out');

/** The promise's value, or TIMED_OUT once `ms` pass first (an infinite `ms` waits for ever). */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  if (!Number.isFinite(ms)) return promise;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

/**
 * The value if it settles within `ms`, else null. The request path uses it to
 * wait a bounded time for what only makes the answer faster, never for what
 * it needs.
 */
export async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  if (ms <= 0) return null;
  const value = await within(promise, ms);
  return value === TIMED_OUT ? null : value;
}
