// A request (whole or streamed) whose generation waits in the pool's queue, and
// whose client leaves meanwhile, against real processes: a pool of one row
// with a queue of other requests, and an edge under wrangler dev. The edge
// must notice the client's leaving and cancel the queued generation, not
// hold it (and the key's slot) until the queue reaches it.
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatePoolToken, startEdge, startPool, type RunningEdge, type RunningPool } from '../../launcher/stack';
import { freePort } from '../../launcher/service-process';
import { startAll, poolUrlOn } from './stack-fixture';
import { poolTenant } from '../../edge/completion-handler';
import { metricValue } from '../gpu-pool/server/pool-process';
import { models } from '../support/shared-data';

const KEY = 'queued-cancel-key';
let token = '';
let pool: RunningPool;
let edge: RunningEdge;
/** An edge that takes a pool silent for 2 s for a hung one. */
let impatient: RunningEdge;
/** An edge whose whole replies wait 3 s before their headers, a space following as often. */
let slowBeat: RunningEdge;
/** A pool of three places (one running, two queued) and 600 tokens, alone behind its edge. */
let tiny: RunningPool;
let tinyEdge: RunningEdge;
const dirs: string[] = [];

beforeAll(async () => {
  token = generatePoolToken();
  const [poolPort, tinyPort] = [await freePort(), await freePort()];
  const poolOf = (port: number, maxQueued: number, more: string[] = []): Promise<RunningPool> =>
    startPool({ model: models.stories260K.checkpoint, tokenizer: models.stories260K.tokenizer, token, port, extraArgs: ['--max-active', '1', '--max-queued', String(maxQueued), ...more] });
  // Edges on those pools, each with its own local KV, started with them: an edge needs its pool only to serve.
  const edgeWith = (vars: Record<string, string>, port = poolPort): Promise<RunningEdge> => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sssd-queued-'));
    dirs.push(dir);
    return startEdge({ poolUrls: [poolUrlOn(port)], poolToken: token, devKey: KEY, persistTo: dir, vars: { SSSD_DEFAULT_RPM: '100000', ...vars } });
  };
  [pool, tiny, edge, impatient, tinyEdge, slowBeat] = await startAll([
    poolOf(poolPort, 64),
    poolOf(tinyPort, 2, ['--max-total-tokens', '600']),
    edgeWith({ SSSD_WHOLE_REPLY_HEARTBEAT_MS: '100' }),
    edgeWith({ SSSD_POOL_STALL_SECONDS: '2' }),
    edgeWith({}, tinyPort),
    edgeWith({ SSSD_WHOLE_REPLY_HEARTBEAT_MS: '3000' }),
  ]);
}, 180_000);

afterAll(async () => {
  await Promise.all([edge?.stop(), impatient?.stop(), tinyEdge?.stop(), slowBeat?.stop(), pool?.service.stop(), tiny?.service.stop()]);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** POST /v1/completions at an edge with the test's key. */
function complete(at: RunningEdge, body: object, signal?: AbortSignal): Promise<Response> {
  return fetch(`${at.url}/v1/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal,
  });
}

/**
 * `n` generations of 480 tokens straight at the pool, one at a time through
 * its single row; as the edge's key's tenant (the dev key's, 'dev'), so that
 * the edge's requests wait behind them, or as another. Each resolves with its
 * stream's headers, which the pool sends once it has taken the generation in.
 */
function fillStreams(n: number, tenant = 'dev', signal?: AbortSignal): Array<Promise<Response>> {
  const asTenant = poolTenant(tenant);
  return Array.from({ length: n }, async (_, i) =>
    fetch(`${pool.url}/v1/generate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: `filler-${Math.random().toString(36).slice(2)}-${i}`, promptIds: [1, 403], maxTokens: 480, speculation: 'off', sampling: { temperature: 1, seed: i, logitBias: { '1': -100 } }, tenant: await asTenant }),
      signal,
    }),
  );
}

/** fillStreams' generations, each read to its end. */
function fill(n: number, tenant = 'dev', signal?: AbortSignal): Array<Promise<string>> {
  return fillStreams(n, tenant, signal).map((res) => res.then((r) => r.text()));
}

/**
 * fill's generations (as 'dev'), once the pool has taken every one in: a
 * request sent after this waits behind them all. Sent a moment after them,
 * it could reach the free row first (fill opens new connections to the pool,
 * the edge's are kept alive; under load on 2 cores it did), run to its end
 * before the test's client left, and leave a queue test nothing queued to test.
 */
async function filled(n: number, signal?: AbortSignal): Promise<Array<Promise<string>>> {
  const streams = fillStreams(n, 'dev', signal);
  await Promise.all(streams);
  return streams.map((res) => res.then((r) => r.text()).catch(() => ''));
}

/** Lets the fillers' clients leave (the pool drops their generations), and waits until the pool is idle again. */
async function dropFillers(flood: AbortController, fillers: Array<Promise<string>>): Promise<void> {
  flood.abort();
  await Promise.all(fillers);
  for (let i = 0; i < 200 && (await metricValue(pool, 'vllm:num_requests_running')) + (await metricValue(pool, 'vllm:num_requests_waiting')) > 0; i++) await new Promise((r) => setTimeout(r, 50));
  expect(await metricValue(pool, 'vllm:num_requests_waiting')).toBe(0);
}

/** The first chunk of a reply's body, as text. */
async function firstChunk(res: Response): Promise<string> {
  if (!res.body) throw new Error(`a ${res.status} without a body`);
  const { value } = await res.body.getReader().read();
  return new TextDecoder().decode(value);
}

/** Generations the pool ended as aborted (cancelled). */
async function aborts(): Promise<number> {
  const text = await (await fetch(`${pool.url}/metrics`)).text();
  return text
    .split('\n')
    .filter((line) => line.startsWith('vllm:request_success_total') && line.includes('finished_reason="abort"'))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

describe("one tenant's flood", () => {
  it("does not hold back another tenant's request: it takes the next free row, not the queue's end", async () => {
    const flood = new AbortController();
    const fillers = fill(20, 'flooding', flood.signal);
    for (let i = 0; i < 100 && (await metricValue(pool, 'vllm:num_requests_waiting')) < 19; i++) await new Promise((r) => setTimeout(r, 20));
    const res = await complete(edge, { model: 'stories260K', prompt: 'Once', max_tokens: 8, temperature: 0 });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { choices: Array<{ finish_reason: string }> }).choices[0].finish_reason).toBe('length');
    // Answered after the row running when it came and at most one more of the flood's (served before it queued): the rest still wait.
    expect(await metricValue(pool, 'vllm:num_requests_waiting')).toBeGreaterThan(10);
    // The rest of the flood is not this test's to wait for: its clients leave, and the pool drops it.
    flood.abort();
    await Promise.allSettled(fillers);
    for (let i = 0; i < 100 && (await metricValue(pool, 'vllm:num_requests_waiting')) > 0; i++) await new Promise((r) => setTimeout(r, 50));
  });
});

describe("one tenant's flood that fills the queue", () => {
  it("gives its newest places to another tenant's requests, whose clients are answered, not refused", async () => {
    const flood = new AbortController();
    // One row and 64 queued places: all of them the flood's.
    const fillers = fill(65, 'flooding', flood.signal).map((reply) => reply.catch(() => ''));
    for (let i = 0; i < 200 && (await metricValue(pool, 'vllm:num_requests_waiting')) < 64; i++) await new Promise((r) => setTimeout(r, 20));
    const displacedBefore = await metricValue(pool, 'sssd_pool_rejected_requests_total', 'reason="displaced"');
    // Three of another tenant's at once: a filler that ends meanwhile frees a place, which one of them may take
    // without displacing; the others find the pool full.
    const replies = await Promise.all(Array.from({ length: 3 }, () => complete(edge, { model: 'stories260K', prompt: 'Once', max_tokens: 8, temperature: 0 })));
    for (const res of replies) {
      expect(res.status).toBe(200);
      expect(((await res.json()) as { choices: Array<{ finish_reason: string }> }).choices[0].finish_reason).toBe('length');
    }
    expect(await metricValue(pool, 'sssd_pool_rejected_requests_total', 'reason="displaced"')).toBeGreaterThan(displacedBefore);
    // The flood's newest generations gave way: their streams ended with a busy error and a retry hint, before any token.
    const gaveWay = await Promise.race([Promise.any(fillers.map(async (reply) => ((await reply).includes('"type":"error"') ? reply : Promise.reject()))), new Promise<string>((r) => setTimeout(() => r('(no filler ended with an error)'), 5000))]);
    const events = (await gaveWay).trim().split('\n').map((line) => JSON.parse(line) as { type: string; code?: string; retryAfterMs?: number });
    expect(events.every((e) => e.type === 'queued' || e.type === 'error')).toBe(true);
    expect(events.at(-1)).toMatchObject({ type: 'error', code: 'busy' });
    expect(events.at(-1)?.retryAfterMs).toBeGreaterThan(0);
    flood.abort();
    await Promise.allSettled(fillers);
    // Every reservation given back, the displaced ones' included.
    for (let i = 0; i < 100 && (await metricValue(pool, 'sssd_pool_reserved_tokens')) > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await metricValue(pool, 'sssd_pool_reserved_tokens')).toBe(0);
    expect(await metricValue(pool, 'vllm:num_requests_waiting')).toBe(0);
  });
});

describe("a generation that gives its queued place to another tenant's", () => {
  it('is queued again by the edge, so a client whose reply had started still gets its answer, not an error inside the 200', async () => {
    const flood = new AbortController();
    // One row and 63 queued of the edge key's own tenant: one place left, for the edge's request.
    const fillers = fill(64, 'dev', flood.signal).map((reply) => reply.catch(() => ''));
    for (let i = 0; i < 200 && (await metricValue(pool, 'vllm:num_requests_waiting')) < 63; i++) await new Promise((r) => setTimeout(r, 20));
    const reply = complete(edge, { model: 'stories260K', prompt: 'Once', max_tokens: 8, temperature: 0 });
    for (let i = 0; i < 200 && (await metricValue(pool, 'vllm:num_requests_waiting')) < 64; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await metricValue(pool, 'vllm:num_requests_waiting')).toBe(64);
    // Past the edge's heartbeat (100 ms here): its 200 has gone out, spaces follow.
    await new Promise((r) => setTimeout(r, 400));
    const displacedBefore = await metricValue(pool, 'sssd_pool_rejected_requests_total', 'reason="displaced"');
    // Another tenant's requests at the full pool: the first to find it full takes the newest place of 'dev', the
    // edge's. (Several: a filler ending meanwhile frees a place, which one of them takes without displacing.)
    const asOther = await poolTenant('other');
    const others = Array.from({ length: 6 }, (_, i) =>
      fetch(`${pool.url}/v1/generate`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id: `other-tenant-${i}`, promptIds: [1, 403], maxTokens: 4, speculation: 'off', tenant: asOther }),
      }).then((r) => r.text()),
    );
    for (let i = 0; i < 100 && (await metricValue(pool, 'sssd_pool_rejected_requests_total', 'reason="displaced"')) === displacedBefore; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await metricValue(pool, 'sssd_pool_rejected_requests_total', 'reason="displaced"')).toBeGreaterThan(displacedBefore);
    // Room again: the edge's generation gets back in and finishes.
    flood.abort();
    const res = await reply;
    // The first to give way was the edge's (the newest of 'dev'; taken in again, it may give way again): not every
    // displacement was a filler's.
    const displaced = (await metricValue(pool, 'sssd_pool_rejected_requests_total', 'reason="displaced"')) - displacedBefore;
    const fillersDisplaced = (await Promise.all(fillers)).filter((text) => text.includes('"code":"busy"')).length;
    expect(fillersDisplaced).toBeLessThan(displaced);
    expect(res.status).toBe(200);
    const body = JSON.parse(await res.text()) as { error?: unknown; choices: Array<{ finish_reason: string }> };
    expect(body.error).toBeUndefined();
    expect(body.choices[0].finish_reason).toBe('length');
    for (const other of await Promise.all(others)) expect(other.trim().split('\n').at(-1)).toContain('"type":"done"');
  });
});

describe('a client that leaves while its generation is queued', () => {
  for (const stream of [false, true]) {
    it(`has it cancelled at the pool while the queue ahead of it still waits (${stream ? 'streamed' : 'whole'})`, async () => {
      const flood = new AbortController();
      const fillers = await filled(30, flood.signal);
      const abortsBefore = await aborts();
      const controller = new AbortController();
      const res = await complete(edge, { model: 'stories260K', prompt: 'Once', max_tokens: 100, temperature: 0, stream }, controller.signal);
      // Queued behind the fillers: the headers went out once the pool took it in (and the 100 ms grace passed), then
      // spaces (or SSE comments); the client leaves during them, with no answer yet.
      expect(res.status).toBe(200);
      expect(await firstChunk(res)).toMatch(stream ? /^: waiting for the pool\n\n/ : /^ +$/);
      expect(await metricValue(pool, 'vllm:num_requests_waiting')).toBeGreaterThan(1);
      controller.abort();
      // The pool cancels it ~0.1-0.3 s after the client left (2 cores, 6 busy processes beside): 2 s is ample.
      let aborted = false;
      for (let i = 0; i < 40 && !aborted; i++) {
        await new Promise((r) => setTimeout(r, 50));
        aborted = (await aborts()) > abortsBefore;
      }
      expect(aborted).toBe(true);
      // Cancelled from the queue: the fillers ahead of it were still waiting.
      expect(await metricValue(pool, 'vllm:num_requests_waiting')).toBeGreaterThan(0);
      await dropFillers(flood, fillers);
    });
  }

  it('has a whole reply cancelled just after its headers when the client left before them, not a heartbeat later', async () => {
    // ~8 s of others ahead in the queue: the request is still waiting at the pool whenever its client is noticed gone.
    const flood = new AbortController();
    const fillers = await filled(48, flood.signal);
    const abortsBefore = await aborts();
    const controller = new AbortController();
    const sentAt = performance.now();
    const reply = complete(slowBeat, { model: 'stories260K', prompt: 'Once', max_tokens: 100, temperature: 0 }, controller.signal).catch(() => null);
    // Queued at the pool, then its client leaves, long before the edge's headers (3 s): workerd can tell of it only
    // once the headers and one more write have gone out.
    while (performance.now() - sentAt < 1_000 && (await metricValue(pool, 'vllm:num_requests_waiting')) < 48) await new Promise((r) => setTimeout(r, 10));
    controller.abort();
    expect(await reply).toBeNull();
    let abortedAt = 0;
    for (let i = 0; i < 200 && !abortedAt; i++) {
      await new Promise((r) => setTimeout(r, 50));
      if ((await aborts()) > abortsBefore) abortedAt = performance.now();
    }
    // Cancelled ~3.2 s after it was sent (the headers at 3 s, a space 0.1 s behind them); when a heartbeat's space was
    // the second write, not before 6 s. 5 s leaves CI's load 1.8 s.
    expect(abortedAt).toBeGreaterThan(0);
    expect(abortedAt - sentAt).toBeLessThan(5_000);
    // From the queue: the others ahead of it were still waiting.
    expect(await metricValue(pool, 'vllm:num_requests_waiting')).toBeGreaterThan(0);
    await dropFillers(flood, fillers);
  });

  it('answers busy at once when one choice is refused, rather than wait for a sibling queued at the pool', async () => {
    // One row running and 63 waiting: the first choice takes the queue's last place, the second is refused.
    const flood = new AbortController();
    const fillers = fill(64, 'dev', flood.signal).map((reply) => reply.catch(() => ''));
    for (let i = 0; i < 100 && (await metricValue(pool, 'vllm:num_requests_waiting')) < 63; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await metricValue(pool, 'vllm:num_requests_waiting')).toBe(63);
    const started = performance.now();
    const res = await complete(edge, { model: 'stories260K', prompt: 'Once', max_tokens: 20, temperature: 1, n: 2 });
    const took = performance.now() - started;
    expect(res.status).toBe(503);
    const refusal = ((await res.json()) as { error: { code: string; message: string } }).error;
    expect(refusal.code).toBe('pool_unavailable');
    // What the pool said of its limit reaches the client (never the pool's address), with its hint as Retry-After.
    expect(refusal.message).toMatch(/the last: the pool is at capacity \(1 of its 1 rows running and (\d+) of its \1 queued places taken\)\); retry in \d+ s\.$/);
    expect(refusal.message).not.toContain(pool.url);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // One time to wait, said once: the header's (it read "retry after the time given); retry shortly").
    expect(refusal.message).toMatch(new RegExp(`; retry in ${res.headers.get('retry-after')} s\\.$`));
    // The queue ahead takes seconds; the answer came while it still waited.
    expect(took).toBeLessThan(3000);
    expect(await metricValue(pool, 'vllm:num_requests_waiting')).toBeGreaterThan(10);
    // The queue is not this test's to wait out: its clients leave, and the pool drops it.
    flood.abort();
    await Promise.all(fillers);
    for (let i = 0; i < 200 && (await metricValue(pool, 'vllm:num_requests_running')) + (await metricValue(pool, 'vllm:num_requests_waiting')) > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await metricValue(pool, 'vllm:num_requests_waiting')).toBe(0);
  });

  it('refuses more choices than its only pool holds as a 400 naming n, not a busy answer clients retry for ever', async () => {
    const tooMany = await complete(tinyEdge, { model: 'stories260K', prompt: 'Once', max_tokens: 5, temperature: 1, n: 4 });
    expect(tooMany.status).toBe(400);
    expect(((await tooMany.json()) as { error: { param: string; message: string } }).error).toMatchObject({ param: 'n', message: expect.stringMatching(/holds at most 3 /) });
    // Nothing was opened at the pool for it; as many choices as it holds are served.
    expect(await metricValue(tiny, 'sssd_pool_rejected_requests_total', 'reason="busy"')).toBe(0);
    const fits = await complete(tinyEdge, { model: 'stories260K', prompt: 'Once', max_tokens: 5, temperature: 1, n: 3 });
    expect(fits.status).toBe(200);
    expect(((await fits.json()) as { choices: unknown[] }).choices).toHaveLength(3);
    // Its tokens too: two choices of 400 tokens each need more than its 600.
    const tooLong = await complete(tinyEdge, { model: 'stories260K', prompt: 'Once', max_tokens: 400, temperature: 1, n: 2 });
    expect(tooLong.status).toBe(400);
    expect(((await tooLong.json()) as { error: { param: string; message: string } }).error).toMatchObject({ param: 'n', message: expect.stringMatching(/holds at most 600 at once/) });
    const one = await complete(tinyEdge, { model: 'stories260K', prompt: 'Once', max_tokens: 400, temperature: 1, logit_bias: { '1': -100 } });
    expect(one.status).toBe(200);
    await one.text();
    expect(await metricValue(tiny, 'sssd_pool_rejected_requests_total', 'reason="busy"')).toBe(0);
  });

  it("keeps a queued generation's stream alive, so an edge does not take a long queue for a hung pool", async () => {
    const flood = new AbortController();
    const fillers = await filled(20, flood.signal);
    // Straight at the pool: `queued` events, about a second apart, before `start`.
    const res = await fetch(`${pool.url}/v1/generate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'queued-direct', promptIds: [1, 403], maxTokens: 4, speculation: 'off', tenant: await poolTenant('dev') }),
    });
    // Read as it comes: once two `queued` events are in, the queue ahead has shown what it is for, and is dropped.
    let text = '';
    const decoder = new TextDecoder();
    const reader = res.body!.getReader();
    for (let read = await reader.read(); !read.done; read = await reader.read()) {
      text += decoder.decode(read.value, { stream: true });
      if (!flood.signal.aborted && (text.match(/"type":"queued"/g) ?? []).length >= 2) flood.abort();
    }
    const events = text.trim().split('\n').map((line) => JSON.parse(line) as { type: string; queuedMs?: number });
    const start = events.findIndex((e) => e.type === 'start');
    const queued = events.filter((e) => e.type === 'queued');
    expect(queued.length).toBeGreaterThanOrEqual(2);
    expect(events.slice(0, start).every((e) => e.type === 'queued')).toBe(true);
    expect(queued[0].queuedMs).toBeGreaterThanOrEqual(900);
    expect(events.at(-1)?.type).toBe('done');
    await dropFillers(flood, fillers);
    // Through an edge whose stall window is 2 s, queued behind ~5 s of others: served, not moved or refused.
    const flood2 = new AbortController();
    const more = await filled(30, flood2.signal);
    // Queued twice the edge's stall window, then the queue ahead is dropped and the reply is served.
    const drop = setTimeout(() => flood2.abort(), 4_000);
    const queuedAt = performance.now();
    const reply = await complete(impatient, { model: 'stories260K', prompt: 'Once', max_tokens: 8, temperature: 0 });
    expect(reply.status).toBe(200);
    expect(((await reply.json()) as { choices: unknown[] }).choices).toHaveLength(1);
    clearTimeout(drop);
    expect(performance.now() - queuedAt).toBeGreaterThan(3_500);
    expect(impatient.service.tail()).not.toMatch(/resumes on another pool|sent nothing for/);
    await dropFillers(flood2, more);
  });

  it('serves a stream that started while queued as any other: comments first, then the same chunks', async () => {
    // Queued behind one filler running and three waiting, 480 tokens each, well past the edge's 100 ms grace: ten
    // had the pool generate 2.5 times as many tokens for the same assertions.
    const fillers = await filled(4);
    const res = await complete(edge, { model: 'stories260K', prompt: 'Once', max_tokens: 40, temperature: 0, stream: true });
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text.startsWith(': waiting for the pool')).toBe(true);
    const chunks = text.split('\n\n').filter((block) => block.startsWith('data: ')).map((block) => block.slice(6));
    expect(chunks.at(-1)).toBe('[DONE]');
    const streamed = chunks.slice(0, -1).map((c) => (JSON.parse(c) as { choices: Array<{ text: string }> }).choices[0]?.text ?? '').join('');
    await Promise.all(fillers);
    const whole = await complete(edge, { model: 'stories260K', prompt: 'Once', max_tokens: 40, temperature: 0, speculation: 'off' });
    expect(streamed).toBe(((await whole.json()) as { choices: Array<{ text: string }> }).choices[0].text);
  });
});

describe('a client that leaves while its pool is silent mid-reply', () => {
  it('is noticed before the generation is resumed, not after it ran again to its end with no one reading', async () => {
    for (let i = 0; i < 200 && (await metricValue(pool, 'vllm:num_requests_running')) + (await metricValue(pool, 'vllm:num_requests_waiting')) > 0; i++) await new Promise((r) => setTimeout(r, 50));
    // Generations the pool has ended, for any reason: a resume would add one.
    const finished = async (): Promise<number> => {
      let sum = 0;
      for (const reason of ['stop', 'length', 'abort', 'error']) sum += await metricValue(pool, 'vllm:request_success_total', `finished_reason="${reason}"`);
      return sum;
    };
    const before = await finished();
    // The impatient edge takes 2 s of silence for a hung pool, and comments on a silent stream only every 5 s.
    const body = JSON.stringify({ model: 'stories260K', prompt: 'Once', max_tokens: 480, temperature: 1, seed: 5, logit_bias: { '1': -100 }, speculation: 'off', stream: true });
    const url = new URL(`${impatient.url}/v1/completions`);
    const client = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' } });
    const firstChunk = new Promise<void>((resolve, reject) => {
      client.on('response', (res) => res.once('data', () => resolve()));
      client.on('error', reject);
    });
    client.end(body);
    await firstChunk;
    // The pool falls silent mid-reply (stopped), and the client leaves 0.3 s into the silence.
    pool.service.signal('SIGSTOP');
    try {
      await new Promise((r) => setTimeout(r, 300));
      client.on('error', () => undefined);
      client.destroy();
      // Past the stall window: the edge would resume now, on the only pool, which answers once it runs again.
      await new Promise((r) => setTimeout(r, 2_600));
    } finally {
      pool.service.signal('SIGCONT');
    }
    // The first generation is cancelled; a resumed one would have started and ended too (noticed at its first write,
    // or run to its end: 8 choices of a client gone ran ~400 tokens each).
    let ended = before;
    for (let i = 0; i < 50 && ended === before; i++) {
      await new Promise((r) => setTimeout(r, 100));
      ended = await finished();
    }
    await new Promise((r) => setTimeout(r, 2_000));
    expect(await finished()).toBe(before + 1);
    expect(await metricValue(pool, 'vllm:num_requests_running')).toBe(0);
  });
});
