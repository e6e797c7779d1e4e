/** The pool's request log (`--log-requests`): one parseable line per generation, however it ended, and never its text. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestLogLine } from '../../../gpu-pool/metrics/request-log';
import { generate, startPool, streamEvents, type PoolProcess } from '../server/pool-process';

describe('request log line', () => {
  it('is one JSON object with times rounded to 0.1 ms and the tokens per step', () => {
    const line = requestLogLine(
      {
        id: 'r1', tenant: '5d41402abc4b2a76b9719d911017c592', speculation: 'sssd', temperature: 0, finishReason: 'length', promptTokens: 12, cachedPromptTokens: 0, completionTokens: 60,
        queueMs: 0.04321, timeToFirstTokenMs: 1.26, durationMs: 20.049, steps: 12, drafts: 11, draftTokens: 150, acceptedTokens: 48,
      },
      new Date('2026-12-04T08:00:00Z'),
    );
    expect(JSON.parse(line)).toEqual({
      time: '2026-12-04T08:00:00.000Z', event: 'request', id: 'r1', tenant: '5d41402abc4b', speculation: 'sssd', temperature: 0, finishReason: 'length',
      promptTokens: 12, cachedPromptTokens: 0, completionTokens: 60, queueMs: 0, timeToFirstTokenMs: 1.3, durationMs: 20,
      steps: 12, drafts: 11, draftTokens: 150, acceptedTokens: 48, tokensPerStep: 5,
    });
    expect(line).not.toContain('\n');
  });
});

describe('sssd pool --log-requests', () => {
  let pool: PoolProcess;
  beforeAll(async () => {
    pool = await startPool(['--log-requests']);
  });
  afterAll(async () => {
    await pool?.stop();
  });

  const logged = (): Array<Record<string, unknown>> =>
    pool.stderr().split('\n').filter((l) => l.startsWith('{"time"')).map((l) => JSON.parse(l) as Record<string, unknown>);

  it('logs a finished generation with its figures, and a cancelled one, without their tokens', async () => {
    const prompt = [1, 403, 407, 261, 378, 432, 383, 286, 261];
    const r = await generate(pool, { id: 'logged-1', promptIds: prompt, maxTokens: 40, speculation: 'sssd', tenant: 'b94d27b9934d3e08a52e52d7da7dabfa' });
    expect(r.ids).toHaveLength(40);

    const res = await fetch(`${pool.url}/v1/generate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${pool.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'logged-2', promptIds: prompt, maxTokens: 400, speculation: 'off' }),
    });
    for await (const e of streamEvents(res)) {
      if (e.type === 'tokens') {
        await fetch(`${pool.url}/v1/generations/logged-2`, { method: 'DELETE', headers: { authorization: `Bearer ${pool.token}` } });
        break;
      }
    }
    // The cancel lands at the pool's next step: wait for its line.
    for (let waited = 0; waited < 10_000 && !logged().some((l) => l.id === 'logged-2'); waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));

    const lines = logged();
    const first = lines.find((l) => l.id === 'logged-1');
    expect(first).toMatchObject({ event: 'request', tenant: 'b94d27b9934d', speculation: 'sssd', temperature: 0, finishReason: 'length', promptTokens: prompt.length, completionTokens: 40 });
    expect(first!.steps as number).toBeLessThanOrEqual(40);
    expect(first!.timeToFirstTokenMs as number).toBeGreaterThan(0);
    expect(first!.durationMs as number).toBeGreaterThanOrEqual(first!.timeToFirstTokenMs as number);
    expect(first!.tokensPerStep).toBe(Math.round((40 / (first!.steps as number)) * 100) / 100);
    expect(lines.find((l) => l.id === 'logged-2')).toMatchObject({ speculation: 'off', finishReason: 'cancelled', drafts: 0 });
    // Counts only: no token ids, no text.
    expect(pool.stderr()).not.toContain(r.ids.slice(0, 8).join(','));
    expect(Object.keys(first!)).not.toContain('promptIds');
  });
});
