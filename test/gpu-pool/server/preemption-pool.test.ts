/**
 * Preemption by recompute in the real pool process (stories260K on the CPU,
 * 4 rows, the default --preempt): one tenant alone fills every row with long
 * generations (the reserve is not held for a tenant alone), and another
 * tenant's first request still starts within a step or two, where with
 * --no-preempt it waits for one of them to end. The generation that gave its
 * row up streams what it streams alone.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { PoolEvent, PoolInfo } from '../../../shared/protocol';
import { loadModel } from '../../../gpu-pool/model/load-model';
import { ModelRunner } from '../../../gpu-pool/runtime/model-runner';
import type { SequenceKvCache } from '../../../gpu-pool/runtime/kv-cache';
import type { BatchRunner } from '../../../gpu-pool/scheduler/batch-runner';
import { Scheduler } from '../../../gpu-pool/scheduler/scheduler';
import { drafterFactory } from '../../../gpu-pool/scheduler/drafter-factory';
import { PoolMetrics } from '../../../gpu-pool/metrics/pool-metrics';
import { PoolServer } from '../../../gpu-pool/server/pool-server';
import { models } from '../../support/shared-data';
import { generate, getJson, metricValue, startPool, streamEvents, type PoolProcess } from './pool-process';
import { stepHookedRunner } from '../../support/step-hooked-runner';

let pool: PoolProcess | null = null;
let server: PoolServer | null = null;
afterEach(async () => {
  await pool?.stop();
  pool = null;
  await server?.close();
  server = null;
});

interface OpenStream {
  /** When (performance.now()) its first tokens and its done event came; null: not yet. */
  firstTokensAt: number | null;
  doneAt: number | null;
  start: Extract<PoolEvent, { type: 'start' }> | null;
  ids: number[];
  events: PoolEvent[];
  tokensSeen: Promise<void>;
  ended: Promise<void>;
}

const HOG_TOKENS = 480;

/** Opens a greedy generation of `tenant` (drafting as a request does by default) and follows its events. */
async function open(p: Pick<PoolProcess, 'url' | 'token'>, id: string, tenant: string, maxTokens: number, ignoreEos = true): Promise<OpenStream> {
  const res = await fetch(`${p.url}/v1/generate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${p.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ id, promptIds: [1, 403, 407], maxTokens, ignoreEos, tenant }),
  });
  expect(res.status).toBe(200);
  let seen: () => void = () => undefined;
  const stream: OpenStream = { firstTokensAt: null, doneAt: null, start: null, ids: [], events: [], tokensSeen: new Promise<void>((r) => (seen = r)), ended: Promise.resolve() };
  stream.ended = (async () => {
    for await (const event of streamEvents(res)) {
      stream.events.push(event);
      if (event.type === 'start') stream.start = event;
      if (event.type === 'tokens') {
        stream.firstTokensAt ??= performance.now();
        stream.ids.push(...event.ids);
        if (stream.ids.length >= 20) seen();
      }
      if (event.type === 'done') stream.doneAt = performance.now();
    }
    seen();
  })();
  return stream;
}

/** Four long generations of one tenant alone (every row), then another tenant's first request: its time to first tokens. */
async function newcomerAfterHog(p: Pick<PoolProcess, 'url' | 'token'>): Promise<{ hog: OpenStream[]; b: OpenStream; sentAt: number }> {
  const hog = await Promise.all(Array.from({ length: 4 }, (_, i) => open(p, `hog${i}`, 'hog', HOG_TOKENS)));
  await Promise.all(hog.map((h) => h.tokensSeen));
  expect(await metricValue(p, 'vllm:num_requests_running')).toBe(4);
  const sentAt = performance.now();
  const b = await open(p, 'b0', 'b', 8);
  await b.ended;
  return { hog, b, sentAt };
}

describe('preemption by recompute (--preempt)', () => {
  it("starts another tenant's first request at once while one tenant alone holds every row; the preempted generation streams what it streams alone", async () => {
    pool = await startPool(['--max-active', '4', '--tenant-reserve', '1']);
    const p = pool;
    const { body: info } = await getJson<PoolInfo>(p, '/v1/info');
    expect(info.limits.preempt).toBe(true);
    expect(await metricValue(p, 'sssd_pool_preempt')).toBe(1);
    const { hog, b, sentAt } = await newcomerAfterHog(p);
    const firstHogDone = Math.min(...hog.map((h) => h.doneAt ?? Infinity));
    expect(b.firstTokensAt!).toBeLessThan(firstHogDone);
    // Queued for a step or two: milliseconds; 1.5 s leaves room for a loaded 2-core machine.
    expect(b.start!.queuedMs).toBeLessThan(1500);
    expect(b.firstTokensAt! - sentAt).toBeLessThan(3000);
    expect(await metricValue(p, 'sssd_pool_preemptions_total')).toBe(1);
    // By tenant: the row was hog's, given to b, which was preempted from nothing.
    expect(await metricValue(p, 'sssd_pool_tenant_preemptions_total', 'tenant="hog"')).toBe(1);
    expect(await metricValue(p, 'sssd_pool_tenant_preemptions_total', 'tenant="b"')).toBe(0);
    expect(await metricValue(p, 'sssd_pool_tenant_admissions_total', 'tenant="b"')).toBe(1);
    await Promise.all(hog.map((h) => h.ended));
    // Greedy, the same prompt: every hog generation, the preempted one too, is what one alone streams.
    const reference = await generate(p, { id: 'alone', promptIds: [1, 403, 407], maxTokens: HOG_TOKENS, ignoreEos: true });
    expect(reference.ids).toHaveLength(HOG_TOKENS);
    for (const h of hog) expect(h.ids).toEqual(reference.ids);
    expect(await metricValue(p, 'sssd_pool_preemptions_total')).toBe(1);
    // The default prefix cache kept its cache as it gave its row up: its resumption recomputed nothing.
    expect(await metricValue(p, 'sssd_pool_preemption_recomputed_tokens_total')).toBe(0);
  }, 120_000);

  it('with --no-preempt, that request waits for one of the generations to end', async () => {
    pool = await startPool(['--max-active', '4', '--tenant-reserve', '1', '--no-preempt']);
    const p = pool;
    const { body: info } = await getJson<PoolInfo>(p, '/v1/info');
    expect(info.limits.preempt).toBe(false);
    const { hog, b } = await newcomerAfterHog(p);
    const firstHogDone = Math.min(...hog.map((h) => h.doneAt ?? Infinity));
    expect(b.firstTokensAt!).toBeGreaterThan(firstHogDone);
    expect(await metricValue(p, 'sssd_pool_preemptions_total')).toBe(0);
    await Promise.all(hog.map((h) => h.ended));
  }, 120_000);

  it("sends `queued` events while a preempted generation waits for a row again, so a reader that takes a silent pool for a hung one waits; then its tokens go on", async () => {
    const runner = await ModelRunner.create(await loadModel(models.stories260K.checkpoint));
    // The real runner on a slower device (4 ms a step more): the preempted generation waits seconds for a row.
    const slow: BatchRunner<SequenceKvCache> = stepHookedRunner(runner, () => new Promise((r) => setTimeout(r, 4)));
    const metrics = new PoolMetrics();
    const limits = { maxActive: 4, maxQueued: 16, maxTotalTokens: 100_000, tenantReserve: 1, preempt: true };
    const scheduler = new Scheduler(slow, { limits, budget: null, metrics, createDrafter: drafterFactory(null) });
    const info: PoolInfo = {
      protocol: 1,
      model: { name: 'stories260K', contextLength: 512, vocabSize: 512, bosId: 1, eosIds: [2], chatTemplate: 'concat' },
      tokenizer: { format: 'llama2c', path: '/v1/tokenizer', sha256: '' },
      datastore: { enabled: false, tokens: 0 },
      limits,
    };
    server = new PoolServer({ scheduler, metrics, info, tokenizerBytes: new Uint8Array(0), token: 't' });
    const p = { url: await server.listen(0, '127.0.0.1'), token: 't' };
    const { hog, b } = await newcomerAfterHog(p);
    expect(b.start!.queuedMs).toBeLessThan(1500);
    await Promise.all(hog.map((h) => h.ended));
    // The preempted one: its stream paused after its start, the reserve keeping b's row free for a while, then went on.
    const preempted = hog.filter((h) => h.events.findIndex((e) => e.type === 'queued') > h.events.findIndex((e) => e.type === 'start'));
    expect(preempted).toHaveLength(1);
    const events = preempted[0].events;
    const firstQueued = events.findIndex((e) => e.type === 'queued');
    expect(events.slice(0, firstQueued).some((e) => e.type === 'tokens')).toBe(true);
    expect(events.slice(firstQueued).some((e) => e.type === 'tokens')).toBe(true);
    expect(events.filter((e) => e.type === 'start')).toHaveLength(1);
    expect(preempted[0].ids).toHaveLength(HOG_TOKENS);
    expect(await counter(metrics)).toBe(1);
  }, 120_000);
});

async function counter(metrics: PoolMetrics): Promise<number> {
  return (await metrics.preemptions.get()).values[0]?.value ?? 0;
}
