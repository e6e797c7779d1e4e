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
import { generate, getJson, metricValue, startPool, streamEvents, type PoolProcess } from './pool-process';

let pool: PoolProcess | null = null;
afterEach(async () => {
  await pool?.stop();
  pool = null;
});

interface OpenStream {
  /** When (performance.now()) its first tokens and its done event came; null: not yet. */
  firstTokensAt: number | null;
  doneAt: number | null;
  start: Extract<PoolEvent, { type: 'start' }> | null;
  ids: number[];
  tokensSeen: Promise<void>;
  ended: Promise<void>;
}

const HOG_TOKENS = 480;

/** Opens a greedy generation of `tenant` (drafting as a request does by default) and follows its events. */
async function open(p: PoolProcess, id: string, tenant: string, maxTokens: number, ignoreEos = true): Promise<OpenStream> {
  const res = await fetch(`${p.url}/v1/generate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${p.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ id, promptIds: [1, 403, 407], maxTokens, ignoreEos, tenant }),
  });
  expect(res.status).toBe(200);
  let seen: () => void = () => undefined;
  const stream: OpenStream = { firstTokensAt: null, doneAt: null, start: null, ids: [], tokensSeen: new Promise<void>((r) => (seen = r)), ended: Promise.resolve() };
  stream.ended = (async () => {
    for await (const event of streamEvents(res)) {
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
async function newcomerAfterHog(p: PoolProcess): Promise<{ hog: OpenStream[]; b: OpenStream; sentAt: number }> {
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
});
