/** The pool's periodic stats line: its figures, its silence while idle, and the real pool writing it. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatStats, type StatsTotals } from '../../../gpu-pool/metrics/stats-log';
import { generate, startPool, type PoolProcess } from '../server/pool-process';

const zero: StatsTotals = { generationTokens: 0, promptTokens: 0, drafts: 0, draftTokens: 0, acceptedTokens: 0, prefixQueries: 0, prefixHits: 0 };

describe('stats line', () => {
  it('gives rates over the interval, acceptance as vLLM defines it, and the prefix cache hit rate', () => {
    const now = {
      totals: { generationTokens: 3000, promptTokens: 500, drafts: 400, draftTokens: 1600, acceptedTokens: 900, prefixQueries: 500, prefixHits: 200 },
      running: 8,
      waiting: 2,
      prefixCacheBytes: 3 * 2 ** 20,
    };
    expect(formatStats(zero, now, 10)).toBe(
      'pool: last 10 s: 300.0 tok/s out, 50.0 tok/s prompt; 8 running, 2 waiting; ' +
        'speculation 56.3% of 1600 draft tokens accepted, mean acceptance length 3.25; prefix cache 40.0% of prompt tokens hit, 3.0 MiB kept',
    );
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
