// A key's concurrency 429 against the real stack (a pool behind a proxy that
// can hold a generation's stream, wrangler dev with local KV): its words and
// Retry-After say what holds the slot and until when, and a client that waits
// as told gets in (review h177: a background run's 25 s, and a body still
// uploading, were both said to be "up to 5 s" with Retry-After 1).
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../launcher/service-process';
import { generatePoolToken, sha256Hex, startEdge, startPool, type RunningEdge, type RunningPool } from '../../launcher/stack';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy';
import { models } from '../support/shared-data';
import { startAll, poolUrlOn } from './stack-fixture';

const KEY = 'concurrency-refusal-key';
const ONE_SLOT_KEY = 'concurrency-refusal-one-slot-key';
const DEADLINE_S = 6;
const BODY_TIMEOUT_S = 6;
let pool: RunningPool;
let proxy: FaultProxy;
let edge: RunningEdge;
let dir: string;

beforeAll(async () => {
  const token = generatePoolToken();
  dir = mkdtempSync(path.join(tmpdir(), 'sssd-concurrency-'));
  const poolPort = await freePort();
  proxy = await startFaultProxy(poolUrlOn(poolPort));
  [pool, edge] = await startAll([
    startPool({ model: models.stories260K.checkpoint, tokenizer: models.stories260K.tokenizer, token, port: poolPort }),
    startEdge({
      poolUrls: [proxy.url],
      poolToken: token,
      devKey: KEY,
      persistTo: dir,
      vars: {
        SSSD_DEFAULT_RPM: '100000',
        SSSD_BACKGROUND_DEADLINE_SECONDS: String(DEADLINE_S),
        SSSD_BODY_TIMEOUT_SECONDS: String(BODY_TIMEOUT_S),
        SSSD_API_KEYS: JSON.stringify({ [sha256Hex(ONE_SLOT_KEY)]: { tenant: 'one-slot', rpm: 100000, concurrency: 1 } }),
      },
    }),
  ]);
}, 180_000);

afterAll(async () => {
  await Promise.all([edge?.stop(), proxy?.close(), pool?.service.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A short chat completion as the one-slot key: its status, Retry-After and error message. */
async function probe(): Promise<{ status: number; retryAfter: number | null; message: string | undefined }> {
  const res = await fetch(`${edge.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ONE_SLOT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 }),
  });
  const body = (await res.json()) as { error?: { message: string } };
  const retryAfter = res.headers.get('retry-after');
  return { status: res.status, retryAfter: retryAfter === null ? null : Number(retryAfter), message: body.error?.message };
}

describe('a concurrency 429', () => {
  it("says a background run holds the key's slot until its deadline, and one that waits as told gets in", async () => {
    // The run goes on: the proxy holds its stream after a first step, until the run's deadline stops it.
    proxy.mode = 'stall';
    proxy.afterTokenEvents = 1;
    let created: Response;
    try {
      created = await fetch(`${edge.url}/v1/responses`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ONE_SLOT_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'default', input: 'Once upon a time', max_output_tokens: 200, temperature: 0, background: true }),
      });
    } finally {
      proxy.mode = 'pass';
    }
    expect(created.status).toBe(200);
    const { id, status } = (await created.json()) as { id: string; status: string };
    expect(status).toBe('queued');
    const refused = await probe();
    expect(refused.status).toBe(429);
    // Its deadline from its answer, not the 1 s of a request that may end any moment.
    expect(refused.retryAfter).toBeGreaterThanOrEqual(DEADLINE_S - 1);
    expect(refused.retryAfter).toBeLessThanOrEqual(DEADLINE_S + 1);
    expect(refused.message).toBe(`Too many requests in flight: at most 1 at once for this key, held by 1 background response running (ends within ${refused.retryAfter} s).`);
    await sleep(refused.retryAfter! * 1000);
    expect((await probe()).status).toBe(200);
    // It was the run's deadline that freed it: stored failed, saying so.
    const stored = (await (await fetch(`${edge.url}/v1/responses/${id}`, { headers: { authorization: `Bearer ${ONE_SLOT_KEY}` } })).json()) as { status: string; error: { message: string } | null };
    expect(stored.status).toBe('failed');
    expect(stored.error?.message).toMatch(/SSSD_BACKGROUND_DEADLINE_SECONDS/);
  }, 30_000);

  it('says a body still uploading holds the slot until its 408, and one that waits as told gets in', async () => {
    const body = JSON.stringify({ model: 'default', messages: [{ role: 'user', content: 'Tell me a story about a cat' }], max_tokens: 4 });
    const { port } = new URL(edge.url);
    const socket = net.connect(Number(port), '127.0.0.1');
    let answer = '';
    socket.on('data', (chunk: Buffer) => void (answer += chunk.toString()));
    socket.on('error', () => undefined);
    try {
      // Its length said, 40 bytes of it sent, then nothing: a client on a network that stalled.
      socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${ONE_SLOT_KEY}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 40)}`);
      await sleep(1500);
      const refused = await probe();
      expect(refused.status).toBe(429);
      expect(refused.retryAfter).toBeGreaterThanOrEqual(BODY_TIMEOUT_S - 2);
      expect(refused.retryAfter).toBeLessThanOrEqual(BODY_TIMEOUT_S);
      expect(refused.message).toBe(`Too many requests in flight: at most 1 at once for this key, held by 1 request body still uploading (a 408 in ${refused.retryAfter} s if it stalls).`);
      await sleep(refused.retryAfter! * 1000);
      expect(answer).toMatch(/^HTTP\/1\.1 408 /);
      expect((await probe()).status).toBe(200);
    } finally {
      socket.destroy();
    }
  }, 30_000);
});
