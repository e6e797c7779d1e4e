/**
 * Preemption by recompute (--preempt) with the real stories260K runner: a
 * tenant that fills every row with long generations, past the reserve's
 * window, gives one row up to another tenant's first request within a step;
 * the generation that gave it resumes by recompute with exactly the tokens,
 * log-probabilities and usage it would have had, greedy or seeded.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateRequestSchema, type GenerateRequest, type PoolEvent } from '../../../shared/protocol';
import { loadModel } from '../../../gpu-pool/model/load-model';
import { ModelRunner } from '../../../gpu-pool/runtime/model-runner';
import type { SequenceKvCache } from '../../../gpu-pool/runtime/kv-cache';
import { Scheduler } from '../../../gpu-pool/scheduler/scheduler';
import { drafterFactory } from '../../../gpu-pool/scheduler/drafter-factory';
import { PoolMetrics } from '../../../gpu-pool/metrics/pool-metrics';
import { PrefixCache } from '../../../gpu-pool/scheduler/prefix-cache';
import { MAX_PREEMPTIONS, preemptionVictim } from '../../../gpu-pool/scheduler/preemption';
import { models } from '../../support/shared-data';
import { loadTokenizer } from '../../../shared/tokenizer/load-tokenizer';
import type { Tokenizer } from '../../../shared/tokenizer/tokenizer';
import { collect, tokensOf, type CollectedEvents } from '../../support/collected-events';

let runner: ModelRunner;
let tokenizer: Tokenizer;
beforeAll(async () => {
  runner = await ModelRunner.create(await loadModel(models.stories260K.checkpoint));
  tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)));
});

function logprobsOf(events: PoolEvent[]): number[] {
  return events.flatMap((e) => (e.type === 'tokens' ? (e.logprobs ?? []) : []));
}

function doneOf(events: PoolEvent[]): Extract<PoolEvent, { type: 'done' }> {
  const done = events.find((e) => e.type === 'done');
  if (done?.type !== 'done') throw new Error(`no done event in ${JSON.stringify(events.map((e) => e.type))}`);
  return done;
}

const LONG = 300;

/** A long generation (the end token ignored: it runs its whole maxTokens) with log-probabilities. */
function hogRequest(id: string, sampled: boolean, extra: Partial<GenerateRequest> = {}): GenerateRequest {
  return generateRequestSchema.parse({
    id,
    promptIds: [1, 403, 407],
    maxTokens: LONG,
    speculation: 'off',
    ignoreEos: true,
    logprobs: 2,
    tenant: 'hog',
    sampling: sampled ? { temperature: 0.9, seed: 11 } : { temperature: 0 },
    ...extra,
  });
}

/** A scheduler of 4 rows, one held back while tenants share it, the reserve's window 50 ms. */
function pool(preempt: boolean, metrics = new PoolMetrics(), prefixCache: PrefixCache<SequenceKvCache> | null = null, prefillChunk = 0): Scheduler<SequenceKvCache> {
  return new Scheduler<SequenceKvCache>(runner, {
    prefillChunk,
    limits: { maxActive: 4, maxQueued: 16, maxTotalTokens: 100_000, tenantReserve: 1, tenantReserveWindowMs: 50, preempt },
    budget: null,
    metrics,
    createDrafter: drafterFactory(null),
    tokenizer,
    prefixCache,
  });
}

async function counter(c: { get(): Promise<{ values: Array<{ value: number }> }> }): Promise<number> {
  return (await c.get()).values[0]?.value ?? 0;
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

/** What `request` streams alone on a pool of its own. */
async function alone(request: GenerateRequest): Promise<PoolEvent[]> {
  const c = collect();
  pool(false).submit({ ...request, tenant: undefined }, c.sink);
  return c.done;
}

/**
 * Tenant b comes and goes; past the reserve's window, hog fills every row
 * with `hogs` (each its request), which stream a while; then b's second
 * request comes. Its start's step, and everything streamed.
 */
async function hogThenNewcomer(s: Scheduler<SequenceKvCache>, hogs: GenerateRequest[]): Promise<{ hog: CollectedEvents[]; b: CollectedEvents; sentAtStep: number }> {
  const steps = () => s.stats().steps;
  const b0 = collect(steps);
  s.submit(generateRequestSchema.parse({ id: 'b0', promptIds: [1, 403], maxTokens: 2, speculation: 'off', tenant: 'b' }), b0.sink);
  await b0.done;
  await new Promise((r) => setTimeout(r, 80));
  const hog = hogs.map((request) => {
    const c = collect(steps);
    s.submit(request, c.sink);
    return c;
  });
  // Every row hog's (alone past the window: nothing held back), each some tokens into its generation.
  await until(() => hog.every((h) => tokensOf(h.events).length >= 20));
  expect(s.stats().active).toBe(4);
  const sentAtStep = steps();
  const b = collect(steps);
  s.submit(generateRequestSchema.parse({ id: 'b1', promptIds: [1, 403, 407], maxTokens: 4, speculation: 'off', tenant: 'b' }), b.sink);
  await b.done;
  return { hog, b, sentAtStep };
}

describe('preemption by recompute (--preempt)', () => {
  it("starts another tenant's first request within a step or two while one tenant holds every row; without it, that request waits for a generation to end", async () => {
    const metrics = new PoolMetrics();
    const s = pool(true, metrics);
    const hogs = Array.from({ length: 4 }, (_, i) => hogRequest(`hog${i}`, false));
    const { hog, b, sentAtStep } = await hogThenNewcomer(s, hogs);
    expect(b.startedAtStep! - sentAtStep).toBeLessThanOrEqual(2);
    const start = b.events.find((e) => e.type === 'start');
    expect(start?.type === 'start' && start.queuedMs).toBeLessThan(1000);
    expect(hog.every((h) => h.events.every((e) => e.type !== 'done'))).toBe(true);
    expect(await counter(metrics.preemptions)).toBe(1);
    // The generation that gave its row up resumed: every hog ends whole.
    const ended = await Promise.all(hog.map((h) => h.done));
    for (const events of ended) expect(tokensOf(events)).toHaveLength(LONG);
    expect(await counter(metrics.preemptions)).toBe(1);
    // No prefix cache: its whole context (prompt and output so far, less the last token, fed anyway) went in again.
    expect(await counter(metrics.preemptionRecomputedTokens)).toBeGreaterThanOrEqual(3 + 20 - 1);

    const off = pool(false);
    const without = await hogThenNewcomer(off, hogs);
    // b waited for a hog generation to end: hundreds of steps.
    expect(without.b.startedAtStep! - without.sentAtStep).toBeGreaterThan(LONG - 40);
    expect(without.hog.some((h) => h.events.some((e) => e.type === 'done'))).toBe(true);
    await Promise.all(without.hog.map((h) => h.done));
  }, 120_000);

  for (const [sampled, cached] of [[false, false], [true, false], [false, true], [true, true]]) {
    it(`resumes the preempted generation by recompute with the tokens, log-probabilities and usage it streams alone (${sampled ? 'sampled, seeded' : 'greedy'}, ${cached ? 'its cache kept by the prefix cache' : 'no prefix cache'})`, async () => {
      const metrics = new PoolMetrics();
      const prefixCache = cached ? new PrefixCache<SequenceKvCache>({ maxBytes: 64 << 20, bytesOf: (seq) => seq.byteLength }) : null;
      // Without the prefix cache, the recompute's context goes in by chunks of 8 (several steps), as a long prompt's does.
      const s = pool(true, metrics, prefixCache, cached ? 0 : 8);
      // Each its own seed.
      const hogs = Array.from({ length: 4 }, (_, i) => hogRequest(`hog${i}`, sampled, sampled ? { sampling: { ...hogRequest('x', true).sampling, seed: 100 + i } } : {}));
      const { hog } = await hogThenNewcomer(s, hogs);
      expect(await counter(metrics.preemptions)).toBe(1);
      const ended = await Promise.all(hog.map((h) => h.done));
      const recomputed = await counter(metrics.preemptionRecomputedTokens);
      // Kept by the prefix cache as it gave its row up, its cache gave every position back; without one, its prompt and
      // output so far went in again as a prompt (all but the last token, which the next step fed anyway), by chunks.
      if (cached) expect(recomputed).toBe(0);
      else expect(recomputed).toBeGreaterThanOrEqual(3 + 20 - 1);
      for (let i = 0; i < hogs.length; i++) {
        const reference = await alone(hogs[i]);
        expect(tokensOf(ended[i])).toEqual(tokensOf(reference));
        const got = logprobsOf(ended[i]);
        const want = logprobsOf(reference);
        expect(got).toHaveLength(want.length);
        for (let k = 0; k < want.length; k++) expect(got[k]).toBeCloseTo(want[k], 3);
        const usage = doneOf(ended[i]).usage;
        const wantUsage = doneOf(reference).usage;
        expect(doneOf(ended[i]).finishReason).toBe(doneOf(reference).finishReason);
        expect(usage.promptTokens).toBe(wantUsage.promptTokens);
        expect(usage.completionTokens).toBe(LONG);
        expect(usage.cachedPromptTokens).toBe(wantUsage.cachedPromptTokens);
        // One start event each, never repeated.
        expect(ended[i].filter((e) => e.type === 'start')).toHaveLength(1);
      }
      await s.close();
    }, 120_000);
  }

  it('honours stop strings and maxTokens across the boundary', async () => {
    const metrics = new PoolMetrics();
    const s = pool(true, metrics);
    // What the greedy hog writes alone, and a stop string its text meets well past the preemption (a few steps in).
    const reference = await alone(hogRequest('ref', false));
    const text = tokenizer.decode(tokensOf(reference));
    const stop = text.slice(200, 212);
    expect(text.indexOf(stop)).toBe(200);
    const hogs = Array.from({ length: 4 }, (_, i) => hogRequest(`hog${i}`, false, { stopStrings: [stop] }));
    const { hog } = await hogThenNewcomer(s, hogs);
    expect(await counter(metrics.preemptions)).toBe(1);
    const ended = await Promise.all(hog.map((h) => h.done));
    const stopped = await alone(hogs[0]);
    for (const events of ended) {
      expect(doneOf(events).finishReason).toBe('stop');
      expect(tokensOf(events)).toEqual(tokensOf(stopped));
    }
  }, 120_000);

  it('frees the place of a preempted generation cancelled while it waits, at once', async () => {
    const metrics = new PoolMetrics();
    const s = pool(true, metrics);
    const hogs = Array.from({ length: 4 }, (_, i) => hogRequest(`hog${i}`, false));
    const { hog } = await hogThenNewcomer(s, hogs);
    expect(await counter(metrics.preemptions)).toBe(1);
    // The latest admitted of the rows that computed least: hog3. It waits (the reserve keeps the row b left).
    expect(s.stats().queued).toBe(1);
    const reservedBefore = s.stats().reservedTokens;
    const streamed = tokensOf(hog[3].events).length;
    expect(s.cancel('hog3')).toBe(true);
    const events = await hog[3].done;
    expect(s.stats().queued).toBe(0);
    expect(s.stats().reservedTokens).toBe(reservedBefore - (3 + LONG));
    expect(doneOf(events).finishReason).toBe('cancelled');
    expect(doneOf(events).usage.completionTokens).toBe(streamed);
    expect(s.has('hog3')).toBe(false);
    for (let i = 0; i < 3; i++) s.cancel(`hog${i}`);
    await Promise.all(hog.map((h) => h.done));
  }, 120_000);

  it('runs a preempted generation to its end in a drain', async () => {
    const s = pool(true);
    const hogs = Array.from({ length: 4 }, (_, i) => hogRequest(`hog${i}`, false, { maxTokens: 120 }));
    const { hog } = await hogThenNewcomer(s, hogs);
    expect(s.stats().queued).toBe(1);
    await s.drain();
    const ended = await Promise.all(hog.map((h) => h.done));
    for (const events of ended) {
      expect(doneOf(events).finishReason).toBe('length');
      expect(tokensOf(events)).toHaveLength(120);
    }
  }, 120_000);

  it('preempts for no request that names no tenant, and none while the pool is not shared', async () => {
    const metrics = new PoolMetrics();
    const s = pool(true, metrics);
    const steps = () => s.stats().steps;
    const hog = Array.from({ length: 4 }, (_, i) => {
      const c = collect(steps);
      s.submit(hogRequest(`hog${i}`, false, { maxTokens: 60 }), c.sink);
      return c;
    });
    await until(() => hog.every((h) => tokensOf(h.events).length >= 5));
    // Another of hog's own: same tenant, never a preemption.
    const own = collect(steps);
    s.submit(hogRequest('hog4', false, { maxTokens: 4 }), own.sink);
    const unnamed = collect(steps);
    s.submit(generateRequestSchema.parse({ id: 'anon', promptIds: [1, 403], maxTokens: 4, speculation: 'off' }), unnamed.sink);
    await Promise.all([own.done, unnamed.done, ...hog.map((h) => h.done)]);
    expect(await counter(metrics.preemptions)).toBe(0);
  }, 120_000);
});

describe('the generation a preemption takes the row of', () => {
  const gen = (tenant: string, sequenceLength: number, preemptions = 0) => ({ tenant, sequenceLength, preemptions });
  const runningOf = (active: ReadonlyArray<{ tenant: string }>) => (t: string) => active.filter((g) => g.tenant === t).length;

  it("is of the tenant holding the most rows, the one that computed least, the latest admitted among equals", () => {
    const active = [gen('a', 50), gen('a', 10), gen('h', 40), gen('h', 30), gen('h', 30), gen('h', 90)];
    expect(preemptionVictim('b', active, runningOf(active))).toBe(4);
  });

  it('is none from a tenant with one row, from callers that name none, or from the waiting tenant itself', () => {
    const active = [gen('a', 5), gen('', 5), gen('', 5), gen('b', 5), gen('b', 5)];
    expect(preemptionVictim('b', active, runningOf(active))).toBe(-1);
  });

  it(`is never one preempted ${MAX_PREEMPTIONS} time(s) already: the next of its tenant's, else another tenant's`, () => {
    const active = [gen('h', 10, MAX_PREEMPTIONS), gen('h', 20), gen('h', 5, MAX_PREEMPTIONS), gen('a', 3), gen('a', 4)];
    expect(preemptionVictim('b', active, runningOf(active))).toBe(1);
    const spent = [gen('h', 10, MAX_PREEMPTIONS), gen('h', 5, MAX_PREEMPTIONS), gen('h', 7, MAX_PREEMPTIONS), gen('a', 3), gen('a', 4)];
    expect(preemptionVictim('b', spent, runningOf(spent))).toBe(3);
  });
});
