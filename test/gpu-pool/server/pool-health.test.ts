/**
 * /healthz while a forward pass hangs: the real model and scheduler behind an
 * in-process server, the runner's pass held until the test lets it go (as a
 * device that hangs holds it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateRequestSchema, type PoolEvent, type PoolHealth, type PoolInfo } from '../../../shared/protocol';
import { loadModel } from '../../../gpu-pool/model/load-model';
import { ModelRunner } from '../../../gpu-pool/runtime/model-runner';
import type { SequenceKvCache } from '../../../gpu-pool/runtime/kv-cache';
import type { BatchRunner } from '../../../gpu-pool/scheduler/batch-runner';
import { Scheduler } from '../../../gpu-pool/scheduler/scheduler';
import { drafterFactory } from '../../../gpu-pool/scheduler/drafter-factory';
import { PoolMetrics } from '../../../gpu-pool/metrics/pool-metrics';
import { FAILING_AFTER_BATCH_FAILURES, PoolServer } from '../../../gpu-pool/server/pool-server';
import { models } from '../../support/shared-data';
import { stepHookedRunner } from '../../support/step-hooked-runner';

let server: PoolServer;
let url: string;
let scheduler: Scheduler<SequenceKvCache>;
/** Set: the next pass waits for it to be called. */
let hold: Promise<void> | null = null;
let entered: () => void = () => undefined;
/** Set: every pass fails, as on a device that was lost. */
let failPasses = false;

beforeAll(async () => {
  const runner = await ModelRunner.create(await loadModel(models.stories260K.checkpoint));
  const held: BatchRunner<SequenceKvCache> = stepHookedRunner(runner, async () => {
    // As it was when the pass began: a pass held across the switch runs as it would have.
    const fail = failPasses;
    if (hold) {
      entered();
      await hold;
    }
    if (fail) throw new Error('onnxruntime: device lost');
  });
  const metrics = new PoolMetrics();
  scheduler = new Scheduler(held, { limits: { maxActive: 4, maxQueued: 4, maxTotalTokens: 10_000 }, budget: null, metrics, createDrafter: drafterFactory(null) });
  const info: PoolInfo = {
    protocol: 1,
    model: { name: 'stories260K', contextLength: 512, vocabSize: 512, bosId: 1, eosIds: [1], chatTemplate: 'concat' },
    tokenizer: { format: 'llama2c', path: '/v1/tokenizer', sha256: '' },
    datastore: { enabled: false, tokens: 0 },
    limits: { maxActive: 4, maxQueued: 4, maxTotalTokens: 10_000 },
  };
  server = new PoolServer({ scheduler, metrics, info, tokenizerBytes: new Uint8Array(0), token: 't', stuckMs: 200, failingHoldMs: 1500 });
  url = await server.listen(0, '127.0.0.1');
});

afterAll(async () => {
  await server?.close();
});

async function health(): Promise<{ status: number; body: PoolHealth }> {
  const res = await fetch(`${url}/healthz`);
  return { status: res.status, body: (await res.json()) as PoolHealth };
}

describe('/healthz', () => {
  it('answers 503 "stuck" while a forward pass runs past --stuck-seconds, and recovers when it returns', async () => {
    expect(await health()).toMatchObject({ status: 200, body: { ok: true, stuck: false } });
    let release: () => void = () => undefined;
    hold = new Promise<void>((resolve) => (release = resolve));
    const inPass = new Promise<void>((resolve) => (entered = resolve));
    const events: PoolEvent[] = [];
    let done: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (done = resolve));
    scheduler.submit(generateRequestSchema.parse({ id: 'held', promptIds: [1, 400, 300], maxTokens: 8, speculation: 'off' }), { send: (e) => events.push(e), end: () => done() });
    await inPass;
    // Running, but not for long yet: still healthy.
    expect((await health()).body).toMatchObject({ ok: true, stuck: false, active: 1 });
    await new Promise((r) => setTimeout(r, 300));
    expect(await health()).toMatchObject({ status: 503, body: { ok: false, stuck: true, draining: false } });
    // vLLM's /health says the same (review h118).
    expect((await fetch(`${url}/health`)).status).toBe(503);
    expect(await (await fetch(`${url}/metrics`)).text()).toMatch(/^sssd_pool_stuck 1$/m);
    hold = null;
    release();
    await finished;
    expect(events.at(-1)).toMatchObject({ type: 'done', finishReason: 'length' });
    expect(await health()).toMatchObject({ status: 200, body: { ok: true, stuck: false } });
  });

  it(`answers 503 "failing" after ${FAILING_AFTER_BATCH_FAILURES} steps in a row whose pass failed for the whole batch, not one tenant's alone, until a pass goes through; shown on /metrics too`, async () => {
    const run = (id: string, tenant?: string): Promise<PoolEvent[]> => {
      const events: PoolEvent[] = [];
      return new Promise((resolve) => {
        scheduler.submit(generateRequestSchema.parse({ id, promptIds: [1, 400, 300], maxTokens: 4, speculation: 'off', tenant }), { send: (e) => events.push(e), end: () => resolve(events) });
      });
    };
    const gauge = async (name: string): Promise<string | undefined> => (await (await fetch(`${url}/metrics`)).text()).match(new RegExp(`^${name} (\\S+)$`, 'm'))?.[1];
    expect(await gauge('sssd_pool_failing')).toBe('0');
    failPasses = true;
    try {
      // One tenant's rows failing alone may be failing by their own fault (a request resumed and retried): however
      // often, the pool stays in the edges' picks.
      for (let i = 1; i <= FAILING_AFTER_BATCH_FAILURES + 1; i++) expect((await run(`alone-${i}`, 'one')).at(-1)).toMatchObject({ type: 'error', code: 'internal' });
      expect(await health()).toMatchObject({ status: 200, body: { ok: true, failing: false } });
      // Another tenant's fails too: the failures in a row are the pool's.
      expect((await run('other', 'two')).at(-1)).toMatchObject({ type: 'error', code: 'internal' });
      expect(await health()).toMatchObject({ status: 503, body: { failing: true } });
      // A pass that goes through clears it; then the count starts again.
      failPasses = false;
      expect((await run('between')).at(-1)).toMatchObject({ type: 'done' });
      failPasses = true;
      for (let i = 1; i <= FAILING_AFTER_BATCH_FAILURES; i++) {
        expect((await run(`lost-${i}`, `tenant-${i}`)).at(-1)).toMatchObject({ type: 'error', code: 'internal' });
        // One failure is a bad moment; only the last of the run says failing.
        expect((await health()).body.failing).toBe(i === FAILING_AFTER_BATCH_FAILURES);
      }
      expect(await health()).toMatchObject({ status: 503, body: { ok: false, failing: true, stuck: false, draining: false } });
      expect(await gauge('sssd_pool_failing')).toBe('1');
      expect(await gauge('sssd_pool_generation_errors_total{code="internal"}')).toBe(String(2 * FAILING_AFTER_BATCH_FAILURES + 2));
      // Taken out of the edges' picks, it gets no work to prove itself on: let back after a while, to fail again at once.
      await new Promise((r) => setTimeout(r, 1600));
      expect(await health()).toMatchObject({ status: 200, body: { ok: true, failing: false } });
      await run('lost-again', 'tenant-4');
      expect(await health()).toMatchObject({ status: 503, body: { failing: true } });
    } finally {
      failPasses = false;
    }
    expect((await run('recovered')).at(-1)).toMatchObject({ type: 'done', finishReason: 'length' });
    expect(await health()).toMatchObject({ status: 200, body: { ok: true, failing: false } });
    expect(await gauge('sssd_pool_failing')).toBe('0');
  });

  it("puts the limits and what is running on /metrics, beside what /healthz tells", async () => {
    const text = await (await fetch(`${url}/metrics`)).text();
    expect(text).toMatch(/^sssd_pool_max_active 4$/m);
    expect(text).toMatch(/^sssd_pool_max_queued 4$/m);
    expect(text).toMatch(/^sssd_pool_max_total_tokens 10000$/m);
    expect(text).toMatch(/^sssd_pool_draining 0$/m);
    expect(text).toMatch(/^sssd_pool_stuck 0$/m);
    expect(text).toMatch(/^sssd_pool_build_info\{version="unknown",protocol="1",execution_provider="unknown"\} 1$/m);
  });

  it('says how loaded the pool is by slots or by token reservations, whichever is fuller', async () => {
    // The same scheduler behind a pool whose token limit is 600: one request reserving 503 fills it far more than its slot.
    const tight = new PoolServer({
      scheduler,
      metrics: new PoolMetrics(),
      info: { protocol: 1, model: { name: 'stories260K', contextLength: 512, vocabSize: 512, bosId: 1, eosIds: [1], chatTemplate: 'concat' }, tokenizer: { format: 'llama2c', path: '/v1/tokenizer', sha256: '' }, datastore: { enabled: false, tokens: 0 }, limits: { maxActive: 4, maxQueued: 4, maxTotalTokens: 600 } },
      tokenizerBytes: new Uint8Array(0),
      token: 't',
    });
    const tightUrl = await tight.listen(0, '127.0.0.1');
    try {
      let release: () => void = () => undefined;
      hold = new Promise<void>((resolve) => (release = resolve));
      const inPass = new Promise<void>((resolve) => (entered = resolve));
      let done: () => void = () => undefined;
      const finished = new Promise<void>((resolve) => (done = resolve));
      scheduler.submit(generateRequestSchema.parse({ id: 'reserving', promptIds: [1, 400, 300], maxTokens: 500, speculation: 'off' }), { send: () => undefined, end: () => done() });
      await inPass;
      const body = (await (await fetch(`${tightUrl}/healthz`)).json()) as PoolHealth;
      expect(body.active).toBe(1);
      expect(body.load).toBeCloseTo(503 / 600, 2);
      // How near the token limit is, in tokens: on /healthz, and on /metrics of the scheduler's pool.
      expect(body).toMatchObject({ reservedTokens: 503, maxTotalTokens: 600 });
      expect(await (await fetch(`${url}/metrics`)).text()).toMatch(/^sssd_pool_reserved_tokens 503$/m);
      hold = null;
      release();
      await finished;
      expect(((await (await fetch(`${tightUrl}/healthz`)).json()) as PoolHealth).reservedTokens).toBe(0);
      expect(await (await fetch(`${url}/metrics`)).text()).toMatch(/^sssd_pool_reserved_tokens 0$/m);
    } finally {
      await tight.close();
    }
  });
});
