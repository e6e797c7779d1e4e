/**
 * The step loop's metrics are added up in typed arrays and folded into
 * prom-client at each scrape (gpu-pool/metrics/step-metrics.ts): /metrics
 * must read as it did when every step called prom-client itself.
 */
import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { PoolMetrics, type SchedulerPhase } from '../../../gpu-pool/metrics/pool-metrics';

/** The metrics the step loop updates (every step, row or token). */
const STEP_METRICS = [
  'vllm:spec_decode_num_drafts_total',
  'vllm:spec_decode_num_draft_tokens_total',
  'vllm:spec_decode_num_accepted_tokens_total',
  'vllm:spec_decode_num_accepted_tokens_per_pos_total',
  'vllm:generation_tokens_total',
  'vllm:prompt_tokens_total',
  'sssd_pool_batch_size',
  'sssd_pool_step_seconds',
  'vllm:time_to_first_token_seconds',
  'vllm:inter_token_latency_seconds',
  'sssd_pool_step_tokens',
  'vllm:iteration_tokens_total',
  'sssd_pool_phase_seconds_total',
  'sssd_pool_speculating_steps_total',
] as const;

/** The exposition's blocks (HELP, TYPE, samples) by metric name. */
function blocks(body: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const block of body.trim().split('\n\n')) {
    const lines = block.split('\n');
    out.set(lines[0].split(' ')[2], lines);
  }
  return out;
}

/** A deterministic generator in [0, 1). */
function lcg(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
}

/**
 * The step loop's calls as the scheduler and row acceptance make them, on
 * `m`, with values that hit bucket bounds exactly, fall past the last bound
 * and add 0 (a series made by an inc of 0).
 */
interface StepCalls {
  phase(p: SchedulerPhase, seconds: number): void;
  observe(name: (typeof STEP_METRICS)[number], value: number): void;
  inc(name: (typeof STEP_METRICS)[number], value: number): void;
  speculating(drafter: 'tree' | 'chain'): void;
  accepted(position: number): void;
  endStep(generated: number): void;
}

function driveSteps(calls: StepCalls, steps: number, seed: number): void {
  const rnd = lcg(seed);
  const onBounds = [0.0001, 0.001, 1, 4, 16, 60, 128];
  const value = (scale: number): number => (rnd() < 0.1 ? onBounds[Math.floor(rnd() * onBounds.length)] : rnd() * rnd() * scale);
  for (let s = 0; s < steps; s++) {
    calls.phase('between', s % 50 === 0 ? 0 : rnd() * 0.002);
    calls.phase('draft', rnd() * 0.001);
    const batch = 1 + Math.floor(rnd() * 300);
    calls.observe('sssd_pool_batch_size', batch);
    const tokens = s % 97 === 0 ? 20_000 : Math.floor(value(9000));
    calls.observe('sssd_pool_step_tokens', tokens);
    calls.observe('vllm:iteration_tokens_total', tokens);
    calls.phase('forward', value(3));
    let drafts = 0;
    let generated = 0;
    for (let r = 0; r < Math.min(batch, 3); r++) {
      // Past the tracked positions (40) too: those are not counted.
      const kept = Math.floor(rnd() * rnd() * 45);
      for (let k = 0; k < kept; k++) calls.accepted(k);
      generated += kept + 1;
      drafts++;
      if (rnd() < 0.05) calls.observe('vllm:time_to_first_token_seconds', value(3000));
      else calls.observe('vllm:inter_token_latency_seconds', value(70));
    }
    if (rnd() < 0.3) calls.inc('vllm:prompt_tokens_total', Math.floor(rnd() * 500));
    if (rnd() < 0.7) {
      calls.speculating(rnd() < 0.3 ? 'chain' : 'tree');
      calls.inc('vllm:spec_decode_num_drafts_total', drafts);
      calls.inc('vllm:spec_decode_num_draft_tokens_total', drafts * 9);
      calls.inc('vllm:spec_decode_num_accepted_tokens_total', drafts * 3);
    }
    calls.endStep(generated);
    calls.phase('accept', rnd() * 0.0005);
    calls.observe('sssd_pool_step_seconds', s % 89 === 0 ? 75 : value(80));
  }
}

/** The same calls on PoolMetrics. */
function poolCalls(m: PoolMetrics, clock: { now: number }): StepCalls {
  const histograms = {
    'sssd_pool_batch_size': m.batchSize,
    'sssd_pool_step_seconds': m.stepSeconds,
    'vllm:time_to_first_token_seconds': m.timeToFirstToken,
    'vllm:inter_token_latency_seconds': m.interTokenLatency,
    'sssd_pool_step_tokens': m.stepTokens,
    'vllm:iteration_tokens_total': m.iterationTokens,
  } as Record<string, { observe(v: number): void }>;
  const counters = {
    'vllm:spec_decode_num_drafts_total': m.numDrafts,
    'vllm:spec_decode_num_draft_tokens_total': m.numDraftTokens,
    'vllm:spec_decode_num_accepted_tokens_total': m.numAcceptedTokens,
    'vllm:prompt_tokens_total': m.promptTokens,
  } as Record<string, { inc(v: number): void }>;
  return {
    phase: (p, seconds) => m.phase[p].inc(seconds),
    observe: (name, v) => histograms[name].observe(v),
    inc: (name, v) => counters[name].inc(v),
    speculating: (drafter) => m.speculatingStepsOf[drafter].inc(),
    accepted: (position) => m.recordAccepted(position),
    endStep: (generated) => m.endStep((clock.now += 2), generated),
  };
}

/**
 * What PoolMetrics did before the accumulators: every call straight on
 * prom-client, made with the names, help texts and buckets PoolMetrics
 * exposes (read back from its text), per-position counts flushed at each
 * step's end as one labelled inc per position.
 */
function referenceCalls(exposition: string, modelName: string, positions: number): { registry: Registry; calls: StepCalls } {
  const registry = new Registry();
  registry.setDefaultLabels({ model_name: modelName });
  const registers = [registry];
  const found = blocks(exposition);
  const histograms = new Map<string, Histogram>();
  const counters = new Map<string, Counter<string>>();
  for (const name of STEP_METRICS) {
    const [helpLine, typeLine, ...samples] = found.get(name)!;
    const help = helpLine.slice(`# HELP ${name} `.length);
    if (typeLine.endsWith('histogram')) {
      const buckets = samples.flatMap((l) => /_bucket\{le="([^"+]+)"/.exec(l)?.[1] ?? []).map(Number);
      histograms.set(name, new Histogram({ name, help, buckets, registers }));
    } else {
      const label = { 'sssd_pool_phase_seconds_total': 'phase', 'sssd_pool_speculating_steps_total': 'drafter', 'vllm:spec_decode_num_accepted_tokens_per_pos_total': 'position' }[name as string];
      counters.set(name, new Counter({ name, help, labelNames: label ? [label] : [], registers }));
    }
  }
  const speculating = counters.get('sssd_pool_speculating_steps_total')!;
  for (const drafter of ['tree', 'chain']) speculating.inc({ drafter }, 0);
  const pending = new Float64Array(positions);
  return {
    registry,
    calls: {
      phase: (p, seconds) => counters.get('sssd_pool_phase_seconds_total')!.inc({ phase: p }, seconds),
      observe: (name, v) => histograms.get(name)!.observe(v),
      inc: (name, v) => counters.get(name)!.inc(v),
      speculating: (drafter) => speculating.inc({ drafter }),
      accepted: (position) => {
        if (position < positions) pending[position]++;
      },
      endStep: (generated) => {
        for (let i = 0; i < positions; i++) {
          if (pending[i] > 0) counters.get('vllm:spec_decode_num_accepted_tokens_per_pos_total')!.inc({ position: String(i) }, pending[i]);
          pending[i] = 0;
        }
        counters.get('vllm:generation_tokens_total')!.inc(generated);
      },
    },
  };
}

/** `name`'s samples as numbers, by the text before the value. */
function samples(exposition: string, name: string): Map<string, number> {
  return new Map(blocks(exposition).get(name)!.slice(2).map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]));
}

describe('step metrics', () => {
  it("exposes the step loop's metrics exactly as prom-client's own calls on every step did: series, order, help, buckets, values", async () => {
    const clock = { now: 1000 };
    const metrics = new PoolMetrics(() => clock.now, 40, 'stories260K');
    const pool = poolCalls(metrics, clock);
    // The idle phase first, as a pool's first generation makes it.
    metrics.startIdle(0);
    metrics.endIdle(7);
    const reference = referenceCalls((await metrics.render()).body, 'stories260K', 40);
    reference.calls.phase('idle', 0.007);
    for (let round = 0; round < 4; round++) {
      driveSteps(pool, 1500, 11 + round);
      driveSteps(reference.calls, 1500, 11 + round);
      // A scrape between rounds folds what the steps added, no more, no less.
      const got = blocks((await metrics.render()).body);
      const want = blocks(await reference.registry.metrics());
      for (const name of STEP_METRICS) expect(got.get(name), `${name} after round ${round}`).toEqual(want.get(name));
    }
    // Scraping again without steps shows the same figures: the fold does not add twice.
    const once = (await metrics.render()).body;
    expect((await metrics.render()).body).toBe(once);
  });

  it('counts by hand what the steps did: cumulative buckets, +Inf, _sum and _count, per-position counts', async () => {
    const metrics = new PoolMetrics();
    const stepSeconds = [0.00005, 0.0001, 0.0003, 0.004, 0.004, 2.5, 12, 45, 60, 61, 600];
    let scraped = new Map<string, number>();
    for (const [i, v] of stepSeconds.entries()) {
      metrics.stepSeconds.observe(v);
      for (let k = 0; k <= i % 10; k++) metrics.recordAccepted(k);
      metrics.endStep(i, (i % 10) + 2);
      // Every series only ever grows from scrape to scrape (counters, and histograms' buckets, sum and count).
      const { body } = await metrics.render();
      const now = new Map([...samples(body, 'sssd_pool_step_seconds'), ...samples(body, 'vllm:spec_decode_num_accepted_tokens_per_pos_total')]);
      for (const [series, value] of scraped) expect(now.get(series), series).toBeGreaterThanOrEqual(value);
      scraped = now;
    }
    const body = (await metrics.render()).body;
    const step = samples(body, 'sssd_pool_step_seconds');
    expect(step.get('sssd_pool_step_seconds_bucket{le="0.0001"}')).toBe(2);
    expect(step.get('sssd_pool_step_seconds_bucket{le="0.00025"}')).toBe(2);
    expect(step.get('sssd_pool_step_seconds_bucket{le="0.0005"}')).toBe(3);
    expect(step.get('sssd_pool_step_seconds_bucket{le="0.005"}')).toBe(5);
    expect(step.get('sssd_pool_step_seconds_bucket{le="2.5"}')).toBe(6);
    expect(step.get('sssd_pool_step_seconds_bucket{le="30"}')).toBe(7);
    expect(step.get('sssd_pool_step_seconds_bucket{le="60"}')).toBe(9);
    expect(step.get('sssd_pool_step_seconds_bucket{le="+Inf"}')).toBe(11);
    expect(step.get('sssd_pool_step_seconds_count')).toBe(11);
    expect(step.get('sssd_pool_step_seconds_sum')).toBe(stepSeconds.reduce((a, b) => a + b, 0));
    // Step i accepted positions 0 to i % 10 (i = 0 to 10): position 0 at every step, p > 0 at steps p to 9.
    const perPosition = samples(body, 'vllm:spec_decode_num_accepted_tokens_per_pos_total');
    expect([...perPosition.values()]).toEqual([11, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
    expect(samples(body, 'vllm:generation_tokens_total').get('vllm:generation_tokens_total')).toBe(stepSeconds.reduce((sum, _, i) => sum + (i % 10) + 2, 0));
  });

  it('refuses a bad figure where it is given, as prom-client did, and /metrics goes on working', async () => {
    const metrics = new PoolMetrics();
    metrics.phase.forward.inc(0.5);
    expect(() => metrics.phase.forward.inc(-1)).toThrow(/decrease/);
    expect(() => metrics.numDrafts.inc(Number.NaN)).toThrow(TypeError);
    expect(() => metrics.stepSeconds.observe(Number.POSITIVE_INFINITY)).toThrow(TypeError);
    const body = (await metrics.render()).body;
    expect(samples(body, 'sssd_pool_phase_seconds_total').get('sssd_pool_phase_seconds_total{phase="forward"}')).toBe(0.5);
    expect(samples(body, 'vllm:spec_decode_num_drafts_total').get('vllm:spec_decode_num_drafts_total')).toBe(0);
    expect(samples(body, 'sssd_pool_step_seconds').get('sssd_pool_step_seconds_count')).toBe(0);
  });

  it('goes on scraping after its registry was reset, the step totals as they stand (review h153)', async () => {
    const metrics = new PoolMetrics();
    metrics.stepSeconds.observe(0.002);
    metrics.registry.resetMetrics();
    metrics.stepSeconds.observe(0.003);
    const body = (await metrics.render()).body;
    expect(samples(body, 'sssd_pool_step_seconds').get('sssd_pool_step_seconds_count')).toBe(2);
  });

  it('shows a phase from its first count, even of 0 s, in the order the phases first counted', async () => {
    const metrics = new PoolMetrics();
    expect([...samples((await metrics.render()).body, 'sssd_pool_phase_seconds_total').keys()]).toEqual([]);
    metrics.phase.accept.inc(0);
    metrics.phase.draft.inc(0.25);
    metrics.phase.accept.inc(0.5);
    const phases = samples((await metrics.render()).body, 'sssd_pool_phase_seconds_total');
    expect([...phases.entries()]).toEqual([
      ['sssd_pool_phase_seconds_total{phase="accept"}', 0.5],
      ['sssd_pool_phase_seconds_total{phase="draft"}', 0.25],
    ]);
  });
});
