// Stop strings against a real pool process: the pool ends the generation at
// the token that completes one (finish reason stop, only those tokens
// generated and counted), where before it generated on until the edge's
// cancel; the client's text, from the edge's own completion run, is what it
// was (a pool that does not know stopStrings stands for before).
import { describe, expect, it } from 'vitest';
import { CompletionRun } from '../../edge/completion-run';
import { greedyPlan } from '../support/greedy-plan';
import { PoolPicker } from '../../edge/pool-picker';
import { servedModel } from '../../edge/served-model';
import { UserCacheStore } from '../../edge/user-cache-store';
import { MAX_STOP_STRING_CHARS, MAX_STOP_STRINGS, STOP_MATCHER_VERSION } from '../../shared/protocol';
import type { ServedModel } from '../../edge/served-model';
import { metricValue } from '../gpu-pool/server/pool-process';
import { startFaultProxy } from '../support/fault-proxy';
import { realPoolForTests } from '../support/real-pool';

const pool = realPoolForTests();

let seq = 0;

/** The pool's counts a generation moves: tokens generated, and generations finished at a stop and at a length. */
async function counts(): Promise<{ generated: number; stopped: number; length: number }> {
  const [generated, stopped, length] = await Promise.all([
    metricValue(pool, 'vllm:generation_tokens_total'),
    metricValue(pool, 'vllm:request_success_total', 'finished_reason="stop"'),
    metricValue(pool, 'vllm:request_success_total', 'finished_reason="length"'),
  ]);
  return { generated, stopped, length };
}

/** A greedy completion of `prompt` as the edge runs it on `poolUrl`: the client's text, finish and stop reason, and completion tokens. */
async function complete(poolUrl: string, prompt: string, stops: string[], speculate: boolean, maxTokens = 30) {
  const picker = new PoolPicker([poolUrl], pool.token);
  const background: Promise<unknown>[] = [];
  const waitUntil = (p: Promise<unknown>): void => void background.push(p);
  const model: ServedModel = await servedModel(picker, waitUntil, 60_000);
  const plan = greedyPlan(`stop-${++seq}`, model.tokenizer.encode(prompt, { bos: true }), 'stop-strings', { maxTokens, speculate, stops });
  // No user cache is read or written (userCache null): the store is never asked.
  const store = new UserCacheStore({} as KVNamespace, 1024);
  const run = new CompletionRun(plan, { picker, model, store, waitUntil, edgeTrieNodes: 0, poolStallMs: 30_000, onFinish: () => undefined });
  await run.open();
  const reply = run.run();
  let text = '';
  for (;;) {
    const next = await reply.next();
    if (next.done) {
      // The edge's cancel at the stop (before: what ends the generation at the pool) has been answered.
      await Promise.all(background);
      return { text, finishReason: next.value.finishReason, stopReason: next.value.stopReason, completionTokens: next.value.usage.completion_tokens };
    }
    for (const segment of next.value) text += segment.text;
  }
}

/** The pool's counts once a generation's end is in them (the edge has its answer before the pool counts). */
async function countsAfter(before: { stopped: number; length: number }, finished = 1): Promise<Awaited<ReturnType<typeof counts>>> {
  let now = await counts();
  for (let i = 0; i < 50 && now.stopped + now.length < before.stopped + before.length + finished; i++) {
    await new Promise((r) => setTimeout(r, 100));
    now = await counts();
  }
  return now;
}

describe('stop strings at the pool', () => {
  it('end the generation at the pool as stop, generating and counting only the tokens up to the stop; the client gets what it got before, with speculation and without', async () => {
    const prompt = 'Once upon a time';
    const whole = await complete(pool.url, prompt, [], false);
    const stop = 'girl';
    expect(whole.text).toContain(stop);
    expect(whole.finishReason).toBe('length');
    // The greedy text cut at the stop string: what the client is to get.
    const expected = whole.text.slice(0, whole.text.indexOf(stop));
    // The edge's cancel reaches the pool two seconds late (a pool across regions, say): the pool alone may stop in time.
    const far = await startFaultProxy(pool.url);
    far.cancelDelayMs = 2000;
    // Before: the same, a pool that drops stopStrings unread (one from before it), so only the edge stops.
    const older = await startFaultProxy(pool.url);
    older.cancelDelayMs = 2000;
    older.forgets = ['stopStrings'];
    try {
      for (const speculate of [false, true]) {
        let at = await counts();
        const before = await complete(older.url, prompt, [stop], speculate);
        expect(before).toMatchObject({ text: expected, finishReason: 'stop', stopReason: stop });
        // What the reviewer found: the pool generated on to max_tokens, counted as a length.
        let after = await countsAfter(at);
        expect(after.length - at.length).toBe(1);
        expect(after.generated - at.generated).toBe(30);
        // Only this pool is told of the stop.
        expect(older.cancels).toHaveLength(speculate ? 2 : 1);
        expect(older.cancels.at(-1)).toMatch(/\?reason=stop$/);
        at = after;
        const now = await complete(far.url, prompt, [stop], speculate);
        expect(now, `speculate ${speculate}`).toEqual(before);
        // The pool ended it and said so with its done: no cancel follows (before, a DELETE that found it ended).
        expect(far.cancels).toEqual([]);
        after = await countsAfter(at);
        // Ended at the pool by the stop: counted as such, the tokens generated those the client's text took.
        expect(after.stopped - at.stopped).toBe(1);
        expect(after.length - at.length).toBe(0);
        expect(after.generated - at.generated).toBe(now.completionTokens);
        expect(now.completionTokens).toBeLessThan(30);
      }
    } finally {
      await Promise.all([older.close(), far.close()]);
    }
  }, 60_000);

  it('end a generation at the pool itself: its stream ends with done, finish reason stop, at the token completing the stop', async () => {
    const picker = new PoolPicker([pool.url], pool.token);
    const model = await servedModel(picker, undefined, 60_000);
    const promptIds = model.tokenizer.encode('Once upon a time', { bos: true });
    const post = (body: Record<string, unknown>): Promise<Response> =>
      fetch(`${pool.url}/v1/generate`, { method: 'POST', headers: { authorization: `Bearer ${pool.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    type Event = { type: string; ids?: number[]; finishReason?: string; accepted?: number; usage?: { completionTokens: number; speculation: { acceptedTokens: number } } };
    const events = async (res: Response): Promise<Event[]> =>
      (await res.text())
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Event);
    for (const speculation of ['off', 'sssd']) {
      const free = await events(await post({ id: `free-${speculation}`, promptIds, maxTokens: 300, speculation, sampling: { temperature: 0, logitBias: { '1': -100, '2': -100 } } }));
      const freeIds = free.flatMap((e) => e.ids ?? []);
      const stopped = await events(await post({ id: `stopped-${speculation}`, promptIds, maxTokens: 300, speculation, sampling: { temperature: 0, logitBias: { '1': -100, '2': -100 } }, stopStrings: ['zzz', 'girl'], stopMatcher: STOP_MATCHER_VERSION }));
      const ids = stopped.flatMap((e) => e.ids ?? []);
      expect(stopped.at(-1)).toMatchObject({ type: 'done', finishReason: 'stop' });
      // The same tokens, up to the one whose text completes "girl", and none after it.
      expect(ids).toEqual(freeIds.slice(0, ids.length));
      const decoder = model.tokenizer.createDecoder({ previousId: promptIds.at(-1) });
      const texts = ids.map((id) => decoder.push(id));
      expect(texts.join('')).toMatch(/girl$/);
      expect(texts.slice(0, -1).join('')).not.toContain('girl');
      // Draft tokens accepted past the stop are not counted (review h130: accepted_tokens 16 against completion_tokens 2).
      const done = stopped.at(-1)!;
      expect(stopped.reduce((n, e) => n + (e.accepted ?? 0), 0)).toBe(done.usage!.speculation.acceptedTokens);
      expect(done.usage!.speculation.acceptedTokens).toBeLessThanOrEqual(done.usage!.completionTokens);
      // A stop a couple of tokens in, where the drafts (the prompt's own repeats) run on well past it.
      const repeated = model.tokenizer.encode('Once upon a time there was a little girl named Lily. Once upon a time there was a little girl named Lily. Once upon a time', { bos: true });
      const early = await events(await post({ id: `early-${speculation}`, promptIds: repeated, maxTokens: 64, speculation, sampling: { temperature: 0 }, stopStrings: [' was'], stopMatcher: STOP_MATCHER_VERSION }));
      const earlyDone = early.at(-1)!;
      expect(earlyDone).toMatchObject({ type: 'done', finishReason: 'stop' });
      expect(earlyDone.usage!.speculation.acceptedTokens).toBeLessThanOrEqual(earlyDone.usage!.completionTokens);
    }
  }, 60_000);

  it('follows only the stop strings within its limits, found by its own rules unless the request names others, and leaves the rest to the edge (never a 400: an edge of another release is served)', async () => {
    const picker = new PoolPicker([pool.url], pool.token);
    const model = await servedModel(picker, undefined, 60_000);
    const promptIds = model.tokenizer.encode('Once upon a time', { bos: true });
    const finish = async (fields: Record<string, unknown>): Promise<{ status: number; finishReason: string | undefined; tokens: number }> => {
      const res = await fetch(`${pool.url}/v1/generate`, {
        method: 'POST',
        headers: { authorization: `Bearer ${pool.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id: `limits-${++seq}`, promptIds, maxTokens: 40, speculation: 'off', sampling: { temperature: 0, logitBias: { '1': -100, '2': -100 } }, ...fields }),
      });
      if (res.status !== 200) return { status: res.status, finishReason: undefined, tokens: 0 };
      const events = (await res.text())
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as { type: string; ids?: number[]; finishReason?: string });
      return { status: 200, finishReason: events.at(-1)?.finishReason, tokens: events.flatMap((e) => e.ids ?? []).length };
    };
    const current = { stopMatcher: STOP_MATCHER_VERSION };
    expect(await finish({ ...current, stopStrings: ['girl'] })).toMatchObject({ status: 200, finishReason: 'stop' });
    // With none named, the pool's own rules (a client that cuts no text itself, review h174: it ran on to maxTokens).
    expect(await finish({ stopStrings: ['girl'] })).toMatchObject({ status: 200, finishReason: 'stop' });
    // Found by other rules (another release's edge): left to the edge, the generation runs on.
    expect(await finish({ stopMatcher: STOP_MATCHER_VERSION + 1, stopStrings: ['girl'] })).toMatchObject({ status: 200, finishReason: 'length', tokens: 40 });
    // Past its limits: the first MAX_STOP_STRINGS it follows are taken, the others (too long, empty, half a character, past the count) ignored.
    const ignored = ['x'.repeat(MAX_STOP_STRING_CHARS + 1), '', '\uD83D'];
    expect(await finish({ ...current, stopStrings: [...ignored, 'girl'] })).toMatchObject({ status: 200, finishReason: 'stop' });
    expect(await finish({ ...current, stopStrings: [...Array.from({ length: MAX_STOP_STRINGS }, (_, i) => `zz${i}`), 'girl'] })).toMatchObject({ status: 200, finishReason: 'length', tokens: 40 });
    // Not a list of strings: refused.
    expect((await finish({ ...current, stopStrings: 'girl' })).status).toBe(400);
  }, 30_000);
});
