// A key's concurrency slots come back as soon as the edge learns a client left: under wrangler dev the runtime stops
// most such requests without a word to them (neither the request's signal nor the body's cancel), and their slots
// stayed taken for the 5 s lease, so a client that cut its streams and sent more met "429 Too many requests in
// flight" with a handful in flight (review h163: 57 of 480). Real pool, real wrangler dev with local KV.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from './stack-fixture';

const KEY = 'sk-abandoned-slots-test';
const CONCURRENCY = 4;
let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack({ kvKeys: { [KEY]: { tenant: 'abandoned-slots', rpm: 100000, concurrency: CONCURRENCY } } });
}, 180_000);

afterAll(async () => {
  await stack?.dispose();
});

/** A streamed chat completion: its status, its client leaving after the first chunk where `leave`, else read whole. */
async function stream(i: number, leave: boolean): Promise<number> {
  const controller = new AbortController();
  const res = await fetch(`${stack.edgeUrl}/v1/chat/completions`, {
    method: 'POST',
    signal: controller.signal,
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'stories260K', messages: [{ role: 'user', content: `Once upon a time ${i}` }], max_tokens: 300, stream: true }),
  });
  if (res.status !== 200 || !leave) {
    await res.text();
    return res.status;
  }
  const reader = res.body!.getReader();
  await reader.read();
  controller.abort();
  await reader.closed.catch(() => undefined);
  return res.status;
}

describe('concurrency slots of clients that left', () => {
  it('come back at once: as many clients as the key has slots, each cutting stream after stream, meet no 429', async () => {
    const statuses: number[] = [];
    const started = Date.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, c) => {
        for (let i = 0; i < 15; i++) statuses.push(await stream(c * 100 + i, true));
      }),
    );
    // Faster than the lease: every slot held until its lease lapsed would have been refused.
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(statuses.filter((s) => s === 429).length, JSON.stringify(statuses)).toBe(0);
    expect(statuses.every((s) => s === 200)).toBe(true);
  }, 90_000);

  it('still bound the requests in flight: more streams at once than slots, read whole, meet 429s', async () => {
    // The slots of the test before are free by now; these run side by side to their ends.
    const statuses = await Promise.all(Array.from({ length: CONCURRENCY + 3 }, (_, i) => stream(1000 + i, false)));
    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(CONCURRENCY);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(3);
  }, 90_000);
});
