/** The pool's periodic stats line: its figures, its silence while idle, and the real pool writing it. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatStats, readStats, type StatsTotals } from '../../../gpu-pool/metrics/stats-log';
import { PoolMetrics } from '../../../gpu-pool/metrics/pool-metrics';
import { generate, startPool, type PoolProcess } from '../server/pool-process';

const zero: StatsTotals = { generationTokens: 0, promptTokens: 0, drafts: 0, draftTokens: 0, acceptedTokens: 0, prefixQueries: 0, prefixHits: 0, refusedBusy: 0, displaced: 0 };

describe('stats line', () => {
  it('gives rates over the interval, acceptance as vLLM defines it, and the prefix cache hit rate', () => {
    const now = {
      totals: { generationTokens: 3000, promptTokens: 500, drafts: 400, draftTokens: 1600, acceptedTokens: 900, prefixQueries: 500, prefixHits: 200, refusedBusy: 0, displaced: 0 },
      running: 8,
      waiting: 2,
      prefixCacheBytes: 3 * 2 ** 20,
    };
    expect(formatStats(zero, now, 10)).toBe(
      'pool: last 10 s: 300.0 tok/s out, 50.0 tok/s prompt; 8 running, 2 waiting; ' +
        'speculation 56.3% of 1600 draft tokens accepted, mean acceptance length 3.25; prefix cache 40.0% of prompt tokens hit, 3.0 MiB kept',
    );
  });

  it('counts the requests refused since the last line (review h223: the line gave none), and is written for them alone', () => {
    const before = { ...zero, refusedBusy: 100, displaced: 4 };
    const busy = { totals: { ...zero, generationTokens: 500, refusedBusy: 157, displaced: 4 }, running: 2, waiting: 2, prefixCacheBytes: 0 };
    expect(formatStats(before, busy, 5)).toBe('pool: last 5 s: 100.0 tok/s out, 0.0 tok/s prompt; 2 running, 2 waiting, 57 refused busy');
    const displaced = { ...busy, totals: { ...busy.totals, displaced: 7 } };
    expect(formatStats(before, displaced, 5)).toMatch(/; 2 running, 2 waiting, 57 refused busy, 3 displaced$/);
    // Refusals alone (the rows free again by the time the line is made) are still a line.
    const refusedOnly = { totals: { ...zero, refusedBusy: 3 }, running: 0, waiting: 0, prefixCacheBytes: 0 };
    expect(formatStats(zero, refusedOnly, 10)).toBe('pool: last 10 s: 0.0 tok/s out, 0.0 tok/s prompt; 0 running, 0 waiting, 3 refused busy');
  });

  it('reads the refusals off sssd_pool_rejected_requests_total by reason', async () => {
    const metrics = new PoolMetrics();
    metrics.rejected.inc({ reason: 'busy' }, 5);
    metrics.rejected.inc({ reason: 'displaced' }, 2);
    metrics.rejected.inc({ reason: 'unauthorized' }, 9);
    expect((await readStats(metrics)).totals).toMatchObject({ refusedBusy: 5, displaced: 2 });
  });

  it('says nothing for an idle interval', () => {
    expect(formatStats(zero, { totals: zero, running: 0, waiting: 0, prefixCacheBytes: 2 ** 20 }, 10)).toBeNull();
  });
});

describe('sssd pool --log-stats', () => {
  let pool: PoolProcess;
  beforeAll(async () => {
    pool = await startPool(['--log-stats', '1']);
  });
  afterAll(async () => {
    await pool?.stop();
  });

  it('writes the line while it works, and nothing once idle', async () => {
    const r = await generate(pool, { id: 'stats-1', promptIds: [1, 403, 407, 261, 378, 432, 383, 286, 261], maxTokens: 40 });
    expect(r.ids.length).toBe(40);
    await new Promise((resolve) => setTimeout(resolve, 2500));
    // Each line stamped with when it was written, as every line of the pool's log.
    const stamped = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z pool: last /;
    const lines = pool.stderr().split('\n').filter((l) => stamped.test(l));
    expect(lines.length).toBeGreaterThanOrEqual(1);
    const worked = lines.find((l) => / [1-9][\d.]* tok\/s out/.test(l));
    expect(worked).toMatch(/Z pool: last \d+ s: [\d.]+ tok\/s out, [\d.]+ tok\/s prompt; \d+ running, \d+ waiting/);
    // Idle since: at most the interval the generation ended in, and one after it, were written.
    const count = lines.length;
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(pool.stderr().split('\n').filter((l) => stamped.test(l)).length).toBe(count);
  });
});
