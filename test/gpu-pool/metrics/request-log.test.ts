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

  it('says why a generation was cancelled, what error it ended with, and the output it resumed, only where they apply', () => {
    const base = {
      id: 'r2', tenant: null, speculation: 'off', temperature: 0, promptTokens: 12, cachedPromptTokens: 0, completionTokens: 3,
      queueMs: 0, timeToFirstTokenMs: 1, durationMs: 2, steps: 3, drafts: 0, draftTokens: 0, acceptedTokens: 0,
    };
    expect(JSON.parse(requestLogLine({ ...base, finishReason: 'cancelled', cancelReason: 'disconnected' }))).toMatchObject({ finishReason: 'cancelled', cancelReason: 'disconnected' });
    const failed = JSON.parse(requestLogLine({ ...base, finishReason: 'error', error: { code: 'internal', message: `verification step failed: ${'x'.repeat(1000)}` }, resumedOutputTokens: 5 })) as Record<string, unknown>;
    expect(failed).toMatchObject({ finishReason: 'error', error: { code: 'internal' }, resumedOutputTokens: 5 });
    // A runtime's message can run to kilobytes: the line keeps its start.
    expect((failed.error as { message: string }).message).toHaveLength(300);
    expect(JSON.parse(requestLogLine({ ...base, finishReason: 'length', preemptions: 1 })) as Record<string, unknown>).toMatchObject({ preemptions: 1 });
    const plain = JSON.parse(requestLogLine({ ...base, finishReason: 'length', resumedOutputTokens: 0, preemptions: 0 })) as Record<string, unknown>;
    expect(Object.keys(plain)).not.toContain('cancelReason');
    expect(Object.keys(plain)).not.toContain('error');
    expect(Object.keys(plain)).not.toContain('resumedOutputTokens');
    expect(Object.keys(plain)).not.toContain('preemptions');
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
    expect(lines.find((l) => l.id === 'logged-2')).toMatchObject({ speculation: 'off', finishReason: 'cancelled', cancelReason: 'delete', drafts: 0 });
    expect(first).not.toHaveProperty('cancelReason');
    expect(first).not.toHaveProperty('resumedOutputTokens');
    // Counts only: no token ids, no text.
    expect(pool.stderr()).not.toContain(r.ids.slice(0, 8).join(','));
    expect(Object.keys(first!)).not.toContain('promptIds');
  });

  it("tells a client's hang-up from a DELETE, and logs the output a resumed generation brought", async () => {
    const prompt = [1, 403, 407, 261, 378, 432, 383, 286, 261];
    const resumed = await generate(pool, { id: 'logged-resumed', promptIds: prompt, maxTokens: 4, speculation: 'off', resumedOutputTokens: 3 });
    expect(resumed.ids).toHaveLength(4);
    const abort = new AbortController();
    const res = await fetch(`${pool.url}/v1/generate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${pool.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'logged-hung-up', promptIds: prompt, maxTokens: 400, speculation: 'off' }),
      signal: abort.signal,
    });
    const events = streamEvents(res);
    await events.next(); // start
    await events.next(); // first tokens: it is running
    abort.abort();
    for (let waited = 0; waited < 10_000 && !logged().some((l) => l.id === 'logged-hung-up'); waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(logged().find((l) => l.id === 'logged-hung-up')).toMatchObject({ finishReason: 'cancelled', cancelReason: 'disconnected' });
    expect(logged().find((l) => l.id === 'logged-resumed')).toMatchObject({ finishReason: 'length', resumedOutputTokens: 3 });
  });
});
