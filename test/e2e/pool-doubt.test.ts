// One real pool behind an edge under wrangler dev, with a proxy between them
// that can hold or drop a chosen generation. A pool whose one generation went
// silent past the stall window, while it streams others, is live: a request
// that then comes to it gets the whole window for its answer, not the 2 s of
// a pool in doubt (review h203: under one tenant's flood, other tenants'
// requests were cut at 2 s into 503s while the only pool took work). A pool
// frozen whole is still refused soon.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatePoolToken, startEdge, startPool, type RunningEdge, type RunningPool } from '../../launcher/stack';
import { freePort } from '../../launcher/service-process';
import { DOWN_POOL_ANSWER_MS } from '../../edge/open-generation';
import { startFaultProxy, type FaultProxy, type GenerateBody } from '../support/fault-proxy';
import { startAll, poolUrlOn } from './stack-fixture';
import { models } from '../support/shared-data';

const KEY = 'pool-doubt-key';
/** The edge's stall window, long beside DOWN_POOL_ANSWER_MS, so that the two are told apart. */
const STALL_SECONDS = 8;
let pool: RunningPool;
let proxy: FaultProxy;
let edge: RunningEdge;
let dir: string;

beforeAll(async () => {
  const token = generatePoolToken();
  dir = mkdtempSync(path.join(tmpdir(), 'sssd-doubt-'));
  const port = await freePort();
  proxy = await startFaultProxy(poolUrlOn(port));
  [pool, edge] = await startAll([
    startPool({ model: models.stories260K.checkpoint, tokenizer: models.stories260K.tokenizer, token, port }),
    startEdge({ poolUrls: [proxy.url], poolToken: token, devKey: KEY, persistTo: dir, vars: { SSSD_DEFAULT_RPM: '100000', SSSD_DEFAULT_CONCURRENCY: '16', SSSD_POOL_STALL_SECONDS: String(STALL_SECONDS) } }),
  ]);
}, 180_000);

afterAll(async () => {
  await Promise.all([edge?.stop(), proxy?.close(), pool?.service.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function complete(body: Record<string, unknown>): Promise<Response> {
  return fetch(`${edge.url}/v1/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'stories260K', prompt: 'Once upon a time', temperature: 0, ...body }),
  });
}

/** What the edge asked of the pool: a generation's max tokens picks it for the proxy (the edge chooses the ids). */
const asking = (maxTokens: number) => (_id: string, body: GenerateBody): boolean => body.maxTokens === maxTokens;

describe('a pool that went silent on one generation', () => {
  it('while it streams others, gives a new request the whole window for its answer, not 2 s', async () => {
    // Other traffic on the pool all through: streams, one after another, two at a time.
    let flowing = true;
    const statuses: number[] = [];
    const traffic = Array.from({ length: 2 }, async () => {
      while (flowing) {
        // Nothing that needs a pool feature (ignore_eos): such a request asks a pool marked failed for a health figure at once.
        const res = await complete({ max_tokens: 48, stream: true });
        statuses.push(res.status);
        await res.text();
      }
    });
    try {
      // One generation the pool never answers: silent past the window, the edge gives it up (one pool, nowhere else).
      proxy.mode = 'hang';
      proxy.breaks = asking(7);
      const started = performance.now();
      const silent = await complete({ max_tokens: 7 });
      expect(silent.status).toBe(503);
      await silent.text();
      expect(performance.now() - started).toBeGreaterThan(STALL_SECONDS * 1000 - 500);
      expect(proxy.broken).toHaveLength(1);
      // At once, a request whose answer the live pool gives past DOWN_POOL_ANSWER_MS (before: cut there, a 503).
      proxy.mode = 'slow';
      proxy.delayMs = DOWN_POOL_ANSWER_MS + 1_500;
      proxy.breaks = asking(9);
      const asked = performance.now();
      const slow = await complete({ max_tokens: 9 });
      const body = (await slow.json()) as { choices?: Array<{ finish_reason: string }>; error?: { message: string } };
      expect(slow.status, body.error?.message).toBe(200);
      expect(body.choices?.[0].finish_reason).toMatch(/^(length|stop)$/);
      expect(performance.now() - asked).toBeGreaterThan(DOWN_POOL_ANSWER_MS + 1_400);
      expect(proxy.broken).toHaveLength(2);
    } finally {
      flowing = false;
      await Promise.all(traffic);
      proxy.mode = 'pass';
    }
    expect(statuses.length).toBeGreaterThan(2);
    expect(statuses.every((s) => s === 200)).toBe(true);
  }, 60_000);

  it('frozen whole (its health check unanswered too), is still refused within about 2 s of being found down, not after the window', async () => {
    pool.service.signal('SIGSTOP');
    try {
      // The edge's readiness waits for its health check: the frozen pool is found down.
      for (let i = 0; i < 20 && (await fetch(`${edge.url}/readyz`)).status !== 503; i++) await new Promise((r) => setTimeout(r, 250));
      expect((await fetch(`${edge.url}/readyz`)).status).toBe(503);
      const started = performance.now();
      const res = await complete({ max_tokens: 8 });
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('pool_unavailable');
      // Its health check again (1 s at most), then DOWN_POOL_ANSWER_MS: well under the window.
      expect(performance.now() - started).toBeLessThan(1_000 + DOWN_POOL_ANSWER_MS + 2_000);
    } finally {
      pool.service.signal('SIGCONT');
    }
    // Back: served again.
    let status = 0;
    for (let i = 0; i < 20 && status !== 200; i++) {
      const res = await complete({ max_tokens: 8 });
      status = res.status;
      await res.text();
      if (status !== 200) await new Promise((r) => setTimeout(r, 500));
    }
    expect(status).toBe(200);
  }, 60_000);
});
