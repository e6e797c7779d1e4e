/**
 * The metric updates of one scheduler step (gpu-pool/scheduler/scheduler.ts,
 * row-acceptance.ts) on the pool's PoolMetrics, against the same updates
 * made straight on prom-client metrics, as PoolMetrics made them before its
 * step metrics were added up in typed arrays (review h148): µs per step,
 * minor GCs during the timed steps (0: nothing allocated), and what a
 * scrape of /metrics costs (with 32 tenants' series, the rows theirs round
 * robin; and with --metrics-tenants' most, every label taken).
 * Usage: npx tsx launcher/bench-metrics.ts [--rows N] [--accepted N] [--steps N] [--passes N] [--json]
 */
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { Counter, Histogram, Registry } from 'prom-client';
import { PoolMetrics } from '../gpu-pool/metrics/pool-metrics';
import { MAX_METRICS_TENANTS } from '../gpu-pool/metrics/tenant-slots';
import { numberFlag, parseBenchFlags, runBenchmark } from './bench-flags';

/** The updates of one step, however PoolMetrics keeps them. */
interface StepMetrics {
  phase: Record<'draft' | 'forward' | 'accept' | 'between', { inc(seconds: number): void }>;
  batchSize: { observe(v: number): void };
  stepTokens: { observe(v: number): void };
  iterationTokens: { observe(v: number): void };
  stepSeconds: { observe(v: number): void };
  interTokenLatency: { observe(v: number): void };
  speculatingTree: { inc(): void };
  numDrafts: { inc(v: number): void };
  numDraftTokens: { inc(v: number): void };
  numAcceptedTokens: { inc(v: number): void };
  recordAccepted(position: number): void;
  endStep(now: number, generated: number): void;
  /** A row's output tokens, by its tenant's slot (per-tenant metrics). */
  tenantOutput(slot: number, tokens: number): void;
}

/** Tenants the rows belong to, round robin: --metrics-tenants' default, every one with its own label. */
const TENANTS = 32;

/** PoolMetrics' objects, called as the scheduler calls them. */
function stepMetricsOf(m: PoolMetrics): StepMetrics {
  return {
    phase: m.phase,
    batchSize: m.batchSize,
    stepTokens: m.stepTokens,
    iterationTokens: m.iterationTokens,
    stepSeconds: m.stepSeconds,
    interTokenLatency: m.interTokenLatency,
    speculatingTree: m.speculatingStepsOf.tree,
    numDrafts: m.numDrafts,
    numDraftTokens: m.numDraftTokens,
    numAcceptedTokens: m.numAcceptedTokens,
    recordAccepted: (p) => m.recordAccepted(p),
    endStep: (now, generated) => m.endStep(now, generated),
    tenantOutput: (slot, tokens) => m.tenants.addOutput(slot, tokens),
  };
}

/** The same updates on prom-client itself: labelled children bound once, per-position counts flushed once a step. */
function promClientMetrics(): StepMetrics {
  const registers = [new Registry()];
  const stall = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
  const histogram = (name: string, buckets: number[]): Histogram => new Histogram({ name, help: name, buckets, registers });
  const counter = (name: string): Counter => new Counter({ name, help: name, registers });
  const phases = new Counter({ name: 'phase_seconds_total', help: 'p', labelNames: ['phase'], registers });
  const perPosition = new Counter({ name: 'per_pos_total', help: 'p', labelNames: ['position'], registers });
  const speculating = new Counter({ name: 'speculating_steps_total', help: 's', labelNames: ['drafter'], registers });
  const generation = counter('generation_tokens_total');
  const tenantTokens = new Counter({ name: 'tenant_output_tokens_total', help: 't', labelNames: ['tenant'], registers });
  const tenants = Array.from({ length: TENANTS + 2 }, (_, i) => tenantTokens.labels(`tenant${i}`));
  const pending = new Float64Array(32);
  const at: ({ inc(n: number): void } | undefined)[] = [];
  return {
    phase: { draft: phases.labels('draft'), forward: phases.labels('forward'), accept: phases.labels('accept'), between: phases.labels('between') },
    batchSize: histogram('batch_size', [1, 2, 4, 8, 16, 32, 64, 128, 256]),
    stepTokens: histogram('step_tokens', [1, 4, 16, 64, 256, 1024, 4096]),
    iterationTokens: histogram('iteration_tokens_total', [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]),
    stepSeconds: histogram('step_seconds', stall),
    interTokenLatency: histogram('inter_token_latency_seconds', stall),
    speculatingTree: speculating.labels('tree'),
    numDrafts: counter('num_drafts_total'),
    numDraftTokens: counter('num_draft_tokens_total'),
    numAcceptedTokens: counter('num_accepted_tokens_total'),
    recordAccepted: (p) => {
      if (p < pending.length) pending[p]++;
    },
    endStep: (_now, generated) => {
      for (let i = 0; i < pending.length; i++) {
        if (pending[i] > 0) {
          (at[i] ??= perPosition.labels(String(i))).inc(pending[i]);
          pending[i] = 0;
        }
      }
      generation.inc(generated);
    },
    tenantOutput: (slot, tokens) => tenants[slot].inc(tokens),
  };
}

await runBenchmark(async () => {
  const values = parseBenchFlags(
    {
      rows: { type: 'string', default: '1' },
      accepted: { type: 'string', default: '4' },
      steps: { type: 'string', default: '200000' },
      passes: { type: 'string', default: '5' },
      json: { type: 'boolean', default: false },
    },
    process.argv.slice(2),
    "npm run bench:metrics -- [options]\nThe metric updates of one scheduler step on the pool's PoolMetrics, and on prom-client's metrics straight (as before review h148): µs per step, minor GCs, a scrape's cost.",
  );
  const rows = numberFlag('rows', values.rows, { integer: true, min: 1, max: 256 });
  const accepted = numberFlag('accepted', values.accepted, { integer: true, min: 0, max: 32 });
  const steps = numberFlag('steps', values.steps, { integer: true, min: 1 });
  const passes = numberFlag('passes', values.passes, { integer: true, min: 1 });

  /** The scheduler's calls of one step with `rows` rows, each accepting `accepted` draft tokens. */
  const step = (m: StepMetrics, i: number): void => {
    const t = 0.0001 + (i % 7) * 0.00003;
    m.phase.between.inc(t);
    m.phase.draft.inc(t);
    m.batchSize.observe(rows);
    m.stepTokens.observe(12 * rows);
    m.iterationTokens.observe(12 * rows);
    m.phase.forward.inc(t * 4);
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < accepted; k++) m.recordAccepted(k);
      m.interTokenLatency.observe(t * 5);
      m.tenantOutput(tenantSlots[r % TENANTS], accepted + 1);
    }
    m.speculatingTree.inc();
    m.numDrafts.inc(rows);
    m.numDraftTokens.inc(11 * rows);
    m.numAcceptedTokens.inc(accepted * rows);
    m.endStep(i * 0.5, (accepted + 1) * rows);
    m.phase.accept.inc(t);
    m.stepSeconds.observe(t * 6);
  };

  let minorGcs = 0;
  const gcs = new PerformanceObserver((list) => {
    // A 'gc' entry's detail says which collection it was (node's docs; @types/node leaves it out).
    for (const entry of list.getEntries() as (PerformanceEntry & { detail?: { kind?: number } })[]) {
      if (entry.detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) minorGcs++;
    }
  });
  gcs.observe({ entryTypes: ['gc'] });
  /** µs per step over `steps` steps, and the minor GCs they brought (reported after the loop). */
  const time = async (m: StepMetrics): Promise<{ us: number; gcs: number }> => {
    await new Promise((r) => setImmediate(r));
    minorGcs = 0;
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) step(m, i);
    const us = ((performance.now() - t0) * 1000) / steps;
    // GC entries arrive after the loop yields.
    await new Promise((r) => setTimeout(r, 20));
    return { us, gcs: minorGcs };
  };

  const pool = new PoolMetrics(undefined, undefined, 'bench');
  // Each with its own label, as admission gives them (so a scrape below shows their series too).
  const tenantSlots = Array.from({ length: TENANTS }, (_, i) => pool.tenants.joined((0x100 + i).toString(16).padEnd(64, 'f'), 0));
  const variants: { name: string; metrics: StepMetrics }[] = [
    { name: 'PoolMetrics', metrics: stepMetricsOf(pool) },
    { name: 'prom-client calls', metrics: promClientMetrics() },
  ];
  const runs = variants.map(() => [] as { us: number; gcs: number }[]);
  // Interleaved passes: the machine's speed drifts, and the first pass runs before the JIT has settled.
  for (let pass = 0; pass < passes; pass++) for (const [v, variant] of variants.entries()) runs[v].push(await time(variant.metrics));
  gcs.disconnect();

  // A scrape (after the passes' steps): the fold into prom-client, then its text; the first ones warm the JIT.
  const scrapes = 100;
  for (let i = 0; i < 20; i++) await pool.render();
  const s0 = performance.now();
  for (let i = 0; i < scrapes; i++) await pool.render();
  const scrapeMs = (performance.now() - s0) / scrapes;
  // And with every label --metrics-tenants allows taken (each tenant's series written at the scrape: what it holds the step loop for).
  const full = new PoolMetrics(undefined, undefined, 'bench', MAX_METRICS_TENANTS);
  for (let i = 0; i < MAX_METRICS_TENANTS; i++) {
    const slot = full.tenants.joined((0x100000 + i).toString(16).padEnd(64, 'f'), 0);
    full.tenants.addOutput(slot, i + 1);
    full.tenants.admitted(slot, 0.25);
    full.tenants.finished(slot, 'stop');
  }
  for (let i = 0; i < 5; i++) await full.render();
  const f0 = performance.now();
  for (let i = 0; i < 20; i++) await full.render();
  const fullScrapeMs = (performance.now() - f0) / 20;

  const summary = variants.map((variant, v) => {
    const us = runs[v].map((r) => r.us).sort((a, b) => a - b);
    return { name: variant.name, fastestUs: us[0], medianUs: us[Math.floor(us.length / 2)], slowestUs: us[us.length - 1], minorGcs: runs[v].map((r) => r.gcs) };
  });
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ rows, accepted, steps, passes, variants: summary, scrapeMs, fullScrapeMs, maxTenants: MAX_METRICS_TENANTS })}\n`);
    return;
  }
  for (const s of summary) {
    process.stdout.write(
      `${s.name}: ${s.fastestUs.toFixed(2)} µs per step fastest, ${s.medianUs.toFixed(2)} median, ${s.slowestUs.toFixed(2)} slowest of ${passes} passes of ${steps} steps (minor GCs per pass: ${s.minorGcs.join(', ')})\n`,
    );
  }
  process.stdout.write(`a scrape of PoolMetrics (/metrics' text): ${scrapeMs.toFixed(2)} ms with ${TENANTS} tenants' series, ${fullScrapeMs.toFixed(2)} ms with ${MAX_METRICS_TENANTS} (--metrics-tenants' most, every label taken)\n`);
});
