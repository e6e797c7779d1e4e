/**
 * `--request-timeout-seconds`: a client that stops partway through sending
 * its request gets 408 and loses its connection, while generation streams,
 * which follow a request that has arrived whole, run for as long as they take.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate, startPool, type PoolProcess } from './pool-process';

const TIMEOUT_S = 0.25;
let pool: PoolProcess;
beforeAll(async () => {
  pool = await startPool(['--request-timeout-seconds', String(TIMEOUT_S), '--max-active', '1']);
});
afterAll(async () => {
  await pool?.stop();
});

/**
 * Sends the headers and `sent` of the `declared` body bytes, then nothing:
 * resolves with the status, 'closed' if the connection ends without one, or
 * 'no answer' after 10 s.
 */
function stalledRequest(route: string, declared: number, sent: string): Promise<{ status: number | 'closed' | 'no answer'; ms: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    setTimeout(() => {
      req.destroy();
      resolve({ status: 'no answer', ms: performance.now() - started });
    }, 10_000).unref();
    const req = http.request(`${pool.url}${route}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${pool.token}`, 'content-type': 'application/json', 'content-length': declared },
    });
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, ms: performance.now() - started });
    });
    req.on('error', () => resolve({ status: 'closed', ms: performance.now() - started }));
    req.write(sent);
  });
}

describe('the request timeout', () => {
  it('answers 408 to a body that stops arriving, and keeps serving', async () => {
    const stalled = await stalledRequest('/v1/generate', 200, '{"id":"stalled","promptIds":[1,');
    expect(stalled.status).toBe(408);
    expect(stalled.ms).toBeGreaterThanOrEqual(TIMEOUT_S * 1000 * 0.9);
    expect(stalled.ms).toBeLessThan(10_000);

    const after = await generate(pool, { id: 'after-stall', promptIds: [1, 403, 407], maxTokens: 8, speculation: 'off' });
    expect(after.status).toBe(200);
    expect(after.done?.finishReason).toBe('length');
  });

  it('does not cut streams that outlast it', async () => {
    // One row at a time (--max-active 1): the last stream stays open while the others run.
    const started = performance.now();
    const outcomes = await Promise.all(
      Array.from({ length: 16 }, (_, i) => generate(pool, { id: `long-${i}`, promptIds: [1], maxTokens: 500, speculation: 'off', sampling: { temperature: 0 } })),
    );
    const elapsedS = (performance.now() - started) / 1000;
    // Otherwise this test would not show anything (a machine several times faster than CI's).
    expect(elapsedS).toBeGreaterThan(2 * TIMEOUT_S);
    for (const o of outcomes) {
      expect(o.status).toBe(200);
      expect(['length', 'stop']).toContain(o.done?.finishReason);
    }
  });
});
