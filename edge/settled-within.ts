/**
 * A promise's value if it settles within `ms`, else null (the promise goes on;
 * its value can still be awaited later). The request path uses it to wait a
 * bounded time for what only makes the answer faster, never for what it needs.
 */
export async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  if (ms <= 0) return null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}
