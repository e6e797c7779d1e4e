/**
 * The pool's Prometheus metrics (prom-client, own registry). Speculation
 * counters use vLLM's names so existing dashboards work:
 * mean acceptance length = 1 + accepted_tokens / num_drafts.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { FinishReason } from '../../shared/protocol';
import type { DatastoreIndexingStats } from '../datastore/datastore';
import { GENERATION_ERROR_CODES } from './request-log';
import { StepCounter, StepCounterVec, StepHistogram, type StepCounterChild } from './step-metrics';
import { TenantMetrics } from './tenant-metrics';
import { DEFAULT_METRICS_TENANTS } from './tenant-slots';

/** Where the scheduler's time goes (`sssd_pool_phase_seconds_total{phase}`), in the order of a step. */
export const SCHEDULER_PHASES = ['draft', 'forward', 'accept', 'between', 'idle'] as const;
export type SchedulerPhase = (typeof SCHEDULER_PHASES)[number];
export const PHASE_SECONDS_METRIC = 'sssd_pool_phase_seconds_total';

/** vllm:request_success_total's label for each finish reason (vLLM's FinishReason strings). */
const VLLM_FINISH_REASON: Readonly<Record<FinishReason, string>> = { stop: 'stop', length: 'length', context_length: 'length', cancelled: 'abort', error: 'error' };

/** The statuses the pool answers errors with (docs/protocol.md, Errors); each series exists from the start, at 0. */
const ERROR_STATUSES = ['400', '401', '404', '405', '409', '413', '415', '421', '500', '503'] as const;

/**
 * Steps and the gaps between token events: from 0.1 ms (a CPU's decode step)
 * to a minute, since a stalled device holds a step 10-30 s (--stuck-seconds
 * is 10) and a histogram that stops at 2.5 s puts every stall in +Inf.
 */
const STALL_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Positions tracked by the per-position acceptance counter, at the least. */
export const MAX_TRACKED_POSITIONS = 32;
const WINDOW_BUCKET_MS = 100;
const WINDOW_BUCKETS = 100;

/** What /healthz says, read at each scrape by the gauges `watchHealth` makes. */
export interface HealthFigures {
  draining: boolean;
  stuck: boolean;
  failing: boolean;
  reservedTokens: number;
}

/** The configured admission limits (/v1/info's `limits`). */
export interface AdmissionLimits {
  maxActive: number;
  maxQueued: number;
  maxTotalTokens: number;
  /** --tenant-reserve (absent: a pool without it). */
  tenantReserve?: number;
  /** --preempt (absent: a pool without it, off). */
  preempt?: boolean;
}

/** What the running pool is: `sssd_pool_build_info`'s labels. */
export interface BuildInfo {
  version: string;
  protocol: number;
  executionProvider: string;
}

/**
 * The metrics the scheduler updates every step, row or token are step-metrics.ts's
 * (StepCounter, StepCounterVec, StepHistogram): numbers added up on the hot path and
 * folded into prom-client at each scrape. The rest are prom-client's own.
 */
export class PoolMetrics {
  readonly registry = new Registry();
  readonly numDrafts: StepCounter;
  readonly numDraftTokens: StepCounter;
  readonly numAcceptedTokens: StepCounter;
  /** Counted through `recordAccepted`. */
  readonly acceptedPerPosition: StepCounterVec<string>;
  readonly generationTokens: StepCounter;
  readonly promptTokens: StepCounter;
  readonly requestsByReason: Counter<'finished_reason'>;
  /** Generations whose stream ended with an error event, by its code (`bad_request`: the request's fault; `internal`: the pool's). */
  readonly generationErrors: Counter<'code'>;
  readonly running: Gauge;
  readonly waiting: Gauge;
  /** Token reservations of running and queued generations (admission's third limit). */
  readonly reservedTokens: Gauge;
  /** Free rows the last admission held back for tenants with none running (tenant-reserve.ts), and generations that took such a row. */
  readonly tenantReserveHeldRows: Gauge;
  readonly tenantReserveAdmissions: Counter;
  /** Generations whose row went to another tenant's first (preemption.ts), and the positions their resumptions fed again. */
  readonly preemptions: Counter;
  readonly preemptionRecomputedTokens: Counter;
  readonly batchSize: StepHistogram;
  readonly stepSeconds: StepHistogram;
  readonly stepTokens: StepHistogram;
  /**
   * Request latencies as the pool sees them (vLLM's names): from the request's
   * arrival to its first tokens, between its token events (a speculative
   * step's tokens are one event), to its end (completed requests), and
   * waiting for a batch slot.
   */
  readonly timeToFirstToken: StepHistogram;
  readonly interTokenLatency: StepHistogram;
  readonly e2eLatency: Histogram;
  /** vLLM's per-request histograms, of completed generations: decode time per output token after the first, prompt and output lengths. */
  readonly timePerOutputToken: Histogram;
  readonly requestPromptTokens: Histogram;
  readonly requestGenerationTokens: Histogram;
  readonly queueTime: Histogram;
  readonly iterationTokens: StepHistogram;
  readonly inferenceTime: Histogram;
  readonly prefillTime: Histogram;
  readonly decodeTime: Histogram;
  readonly tokensPerSecond: Gauge;
  readonly rejected: Counter<'reason'>;
  /** Answers refused with an error status outside a stream, by status (a 500 here is a bug, with its stack in the log). */
  readonly errorResponses: Counter<'status'>;
  /** Counted through `phase`. */
  readonly phaseSeconds: StepCounterVec<SchedulerPhase>;
  /** `phaseSeconds` per phase, bound once: a step adds to four of them. */
  readonly phase: Readonly<Record<SchedulerPhase, { inc(seconds: number): void }>>;
  readonly trieHints: Counter;
  readonly triePushes: Counter<'result'>;
  /** Generation streams cut because their reader stopped taking bytes (pool-server.ts, stalled-readers.ts). */
  readonly stalledStreams: Counter;
  /** DELETE /v1/draft-cache calls (a measurement's replays, each starting its drafting cold). */
  readonly draftCacheClears: Counter;
  /** Generation streams opened, by the form their events took (frames or NDJSON): which edges still read NDJSON. */
  readonly eventStreams: Readonly<Record<'frames' | 'ndjson', { inc(): void }>>;
  readonly shippedTries: Counter<'result'>;
  /** Generations admitted with a structured output, by kind (`choices`, `regex`), and regexes compiled (a pattern not among the last kept, or whose automaton was past half its limits). */
  readonly structuredOutputs: Counter<'kind'>;
  readonly regexCompiles: Counter;
  readonly grammarCompiles: Counter;
  /** Generations ended because their structured output's automaton passed its limits (states or building work). */
  readonly automatonLimits: Counter;
  /** Generations admitted as resumed (an edge moved them here after their pool failed mid-stream), and the output they brought. */
  readonly resumedGenerations: Counter;
  readonly resumedOutputTokens: Counter;
  /** Drafting faults recovered from: a pass with drafts that failed and ran again without them, a drafter that threw. */
  readonly draftFailures: Counter<'kind'>;
  /** Plain passes that failed, by what followed: `isolated` (rows that failed alone ended, the rest went on), `retried` (no row failed alone; the retry passed), `batch` (every generation in the batch ended). */
  readonly passFailures: Counter<'result'>;
  /** Most padded positions (rows × (longest past + most new tokens)) a pass takes since batches failed as a whole; 0: no cap. */
  readonly passPositionCap: Gauge;
  /** Prompt tokens looked up in the prefix cache, and those found there (vLLM's names: hit rate = hits / queries). */
  readonly prefixCacheQueries: Counter;
  readonly prefixCacheHits: Counter;
  readonly prefixCacheBytes: Gauge;
  /** Steps that carried drafts, by drafter: `tree` (the request's fused drafter) or `chain` (the next-token table's chains, wide batches). */
  readonly speculatingSteps: StepCounterVec<'tree' | 'chain'>;
  /** speculatingSteps bound to each drafter, for the step loop. */
  readonly speculatingStepsOf: Record<'tree' | 'chain', StepCounterChild>;
  /** Row-steps a row that could draft was kept from it: `unpaid` (its own acceptance does not pay: backed off) or `resting` (the budget refused its drafts, or it starts too late). */
  readonly draftSkips: StepCounterVec<'unpaid' | 'resting'>;
  /** draftSkips bound to each reason, for the step loop. */
  readonly draftSkipsOf: Record<'unpaid' | 'resting', StepCounterChild>;
  /** Probes: drafts by rows backed off for drafts that did not pay. */
  readonly draftProbes: StepCounter;
  /** The per-tenant series (`sssd_pool_tenant_*{tenant}`), for as many tenants as --metrics-tenants. */
  readonly tenants: TenantMetrics;
  /** The registry's default labels (`model_name`), which the per-tenant series' text carries too. */
  private readonly modelLabel: Readonly<Record<string, string>>;

  /** Gauges filled at scrape time by `watchGovernor`. */
  private governorGauge: Gauge<'method' | 'batch' | 'arm'> | null = null;

  /** Gauges filled at scrape time by `watchDatastore`. */
  private datastoreGauge: Gauge | null = null;
  readonly datastoreSaves: Counter<'result'>;
  readonly datastoreContributions: Counter<'result'>;

  /**
   * Exposes the global datastore: its searchable tokens (they grow with
   * contributed outputs) and what indexing the contributions costs.
   */
  watchDatastore(store: { readonly tokenCount: number; readonly indexing: DatastoreIndexingStats }): void {
    if (this.datastoreGauge) return;
    this.datastoreGauge = new Gauge({
      name: 'sssd_pool_datastore_tokens',
      help: 'Tokens the global datastore searches: the loaded file plus contributed outputs indexed since.',
      registers: [this.registry],
      collect() {
        this.set(store.tokenCount);
      },
    });
    new Gauge({
      name: 'sssd_pool_datastore_pending_tokens',
      help: 'Contributed tokens waiting for the next background rebuild of the datastore index.',
      registers: [this.registry],
      collect() {
        this.set(store.indexing.pendingTokens);
      },
    });
    this.scrapedTotal(
      'sssd_pool_datastore_rebuilds_total',
      'Background rebuilds of the datastore index that swapped in contributed outputs.',
      () => store.indexing.rebuilds,
    );
    this.scrapedTotal(
      'sssd_pool_datastore_rebuild_seconds_total',
      'Wall seconds the background rebuilds of the datastore index took (on a worker thread).',
      () => store.indexing.seconds,
    );
  }

  /** A counter whose running total something else keeps: read at scrape time. */
  private scrapedTotal(name: string, help: string, total: () => number): void {
    new Counter({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(total());
      },
    });
  }

  private watchingHealth = false;

  /**
   * Exposes what /healthz tells (draining, stuck, failing), the configured
   * limits, and the token reservations over their limit, as gauges an alert
   * can read from /metrics. Once per registry: the first server's.
   */
  watchHealth(health: () => HealthFigures, limits: AdmissionLimits): void {
    if (this.watchingHealth) return;
    this.watchingHealth = true;
    const registers = [this.registry];
    const flag = (name: string, help: string, read: (h: HealthFigures) => boolean): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read(health()) ? 1 : 0);
        },
      });
    };
    flag('sssd_pool_draining', '1 while the pool drains to shut down (it refuses new generations; /healthz answers 503), else 0.', (h) => h.draining);
    flag('sssd_pool_stuck', '1 while a forward pass has run past --stuck-seconds (/healthz answers 503), else 0.', (h) => h.stuck);
    flag('sssd_pool_failing', "1 while the pool's passes keep failing for the whole batch (/healthz answers 503), else 0.", (h) => h.failing);
    const limit = (name: string, help: string, value: number): void => {
      new Gauge({ name, help, registers }).set(value);
    };
    limit('sssd_pool_max_active', 'Most generations in the running batch (--max-active).', limits.maxActive);
    limit('sssd_pool_max_queued', 'Most generations waiting for a batch slot (--max-queued).', limits.maxQueued);
    limit('sssd_pool_max_total_tokens', 'Most tokens running and queued generations may reserve (--max-total-tokens).', limits.maxTotalTokens);
    limit('sssd_pool_tenant_reserve', 'Rows that, while tenants share the pool, only a tenant with none running may take (--tenant-reserve; 0 = off).', limits.tenantReserve ?? 0);
    limit('sssd_pool_preempt', "1 where a tenant with no row running may take a row from the tenant holding the most, its generation resumed later by recompute (--preempt), else 0.", limits.preempt === true ? 1 : 0);
    new Gauge({
      name: 'sssd_pool_reserved_tokens_ratio',
      help: 'sssd_pool_reserved_tokens over sssd_pool_max_total_tokens: how much of the token budget admission allows is reserved (prompt + max tokens of running and queued generations; reservations, not measured memory).',
      registers,
      collect() {
        this.set(health().reservedTokens / Math.max(1, limits.maxTotalTokens));
      },
    });
  }

  private buildInfoSet = false;

  /** `sssd_pool_build_info{version,protocol,execution_provider} 1`, Prometheus's convention for what is running. */
  setBuildInfo(build: BuildInfo): void {
    if (this.buildInfoSet) return;
    this.buildInfoSet = true;
    new Gauge({
      name: 'sssd_pool_build_info',
      help: "Always 1; its labels say what is running: sssd-serve's version (package.json), the edge-pool protocol, onnxruntime's execution provider.",
      labelNames: ['version', 'protocol', 'execution_provider'],
      registers: [this.registry],
    }).set({ version: build.version, protocol: String(build.protocol), execution_provider: build.executionProvider }, 1);
  }

  private processMetrics = false;

  /**
   * Adds the process's own figures (prom-client's defaults: resident memory,
   * V8 heap by space, event-loop lag, GC time, open handles) so an operator
   * sees memory grow or the loop stall. Once per process: the collectors hook
   * GC and the event loop, so the pool's command calls it, not tests' pools.
   */
  watchProcess(): void {
    if (this.processMetrics) return;
    this.processMetrics = true;
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 20 });
  }

  private watchingSteps = false;

  /** Exposes how the runner ran its steps: one pass, two passes (padding split), or one pass in two attention groups. */
  watchRunnerSteps(counts: { readonly single: number; readonly split: number; readonly grouped: number }): void {
    if (this.watchingSteps) return;
    this.watchingSteps = true;
    new Counter({
      name: 'sssd_pool_runner_steps_total',
      help: 'Forward steps by how they ran: "single" (one pass), "split" (two passes, rows of very different lengths), "grouped" (one pass, short and long pasts attending apart).',
      labelNames: ['kind'],
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc({ kind: 'single' }, counts.single);
        this.inc({ kind: 'split' }, counts.split);
        this.inc({ kind: 'grouped' }, counts.grouped);
      },
    });
  }

  /** Gauges filled at scrape time by `watchKvBuffers`. */
  private kvBufferMetrics: { taken: Counter<'source'>; kept: Gauge } | null = null;

  /** Exposes where sequences' host key/value buffers came from (kept from finished ones, or newly allocated) and what is kept. */
  watchKvBuffers(buffers: { readonly reused: number; readonly allocated: number; readonly keptBytes: number }): void {
    if (this.kvBufferMetrics) return;
    const registers = [this.registry];
    this.kvBufferMetrics = {
      taken: new Counter({
        name: 'sssd_pool_kv_buffers_total',
        help: "Host key/value buffers sequences took: source=\"reused\" (a finished sequence's, kept) or \"allocated\" (new memory, zeroed on the main thread).",
        labelNames: ['source'],
        registers,
        collect() {
          this.reset();
          this.inc({ source: 'reused' }, buffers.reused);
          this.inc({ source: 'allocated' }, buffers.allocated);
        },
      }),
      kept: new Gauge({
        name: 'sssd_pool_kv_buffers_kept_bytes',
        help: "Bytes of finished sequences' host key/value buffers kept for the next sequences (not the prefix cache's).",
        registers,
        collect() {
          this.set(buffers.keptBytes);
        },
      }),
    };
  }

  /** Exposes the speculation governor's measured throughput per method, batch bucket and arm. */
  watchGovernor(snapshot: () => { method: string; batch: number; state: { specRate: number; plainRate: number } }[]): void {
    if (this.governorGauge) return;
    this.governorGauge = new Gauge({
      // Seconds, Prometheus's base unit; the governor itself counts per ms.
      name: 'sssd_pool_governor_tokens_per_second',
      help: 'Measured emitted tokens per second of scheduler cycle, with (arm="spec") and without (arm="plain") speculation, per method and batch-size bucket.',
      labelNames: ['method', 'batch', 'arm'],
      registers: [this.registry],
      collect() {
        for (const { method, batch, state } of snapshot()) {
          this.set({ method, batch: String(batch), arm: 'spec' }, state.specRate * 1000);
          this.set({ method, batch: String(batch), arm: 'plain' }, state.plainRate * 1000);
        }
      },
    });
  }

  /** Positions `acceptedPerPosition` counts (0 to this - 1). */
  private readonly trackedPositions: number;
  /**
   * Tokens of the last 10 s in 100 ms buckets (a ring): the rate is read every
   * step, and a per-step list made that O(steps in 10 s), several percent of
   * the pool's CPU at thousands of steps per second.
   */
  private readonly windowTokens = new Float64Array(WINDOW_BUCKETS);
  /** Bucket number (floor(t / 100 ms)) each ring slot holds, -1 = empty. */
  private readonly windowBucket = new Float64Array(WINDOW_BUCKETS).fill(-1);
  /** Earliest step time recorded in each ring slot. */
  private readonly windowFirst = new Float64Array(WINDOW_BUCKETS);

  /**
   * `clock`: the time the scheduler stamps its steps with (ms), read again at
   * each scrape. `positions`: accepted positions counted one by one, at least
   * the deepest path a step can accept (the pool's --max-tree-nodes), so the
   * per-position counts add up to the accepted total as vLLM's do.
   * `modelName`: the served model's name, a `model_name` label on every
   * series, as vLLM puts it on its own: its Grafana dashboard and the usual
   * autoscaling queries select on it, and match nothing without it.
   * `metricsTenants`: tenants with their own label value in the per-tenant
   * series (--metrics-tenants; 0: none of those series).
   */
  constructor(
    private readonly clock: () => number = () => performance.now(),
    positions = MAX_TRACKED_POSITIONS,
    modelName?: string,
    metricsTenants = DEFAULT_METRICS_TENANTS,
  ) {
    this.trackedPositions = Math.max(MAX_TRACKED_POSITIONS, positions);
    if (modelName !== undefined) this.registry.setDefaultLabels({ model_name: modelName });
    this.modelLabel = modelName === undefined ? {} : { model_name: modelName };
    const registers = [this.registry];
    const histogram = (name: string, help: string, buckets: number[]): Histogram => new Histogram({ name, help, buckets, registers });
    const stepHistogram = (name: string, help: string, buckets: number[]): StepHistogram => new StepHistogram({ name, help, buckets, registers });
    this.numDrafts = new StepCounter({ name: 'vllm:spec_decode_num_drafts_total', help: 'Verification steps that carried a draft.', registers });
    this.numDraftTokens = new StepCounter({ name: 'vllm:spec_decode_num_draft_tokens_total', help: 'Draft tokens verified.', registers });
    this.numAcceptedTokens = new StepCounter({ name: 'vllm:spec_decode_num_accepted_tokens_total', help: 'Draft tokens accepted.', registers });
    this.acceptedPerPosition = new StepCounterVec({
      name: 'vllm:spec_decode_num_accepted_tokens_per_pos_total',
      help: 'Accepted draft tokens by position in the accepted path (0 = first draft token).',
      labelName: 'position',
      values: Array.from({ length: this.trackedPositions }, (_, i) => String(i)),
      registers,
    });
    this.generationTokens = new StepCounter({ name: 'vllm:generation_tokens_total', help: 'Tokens generated.', registers });
    this.promptTokens = new StepCounter({ name: 'vllm:prompt_tokens_total', help: 'Prompt tokens taken in, prefix-cache hits included (as vLLM counts them); minus vllm:prefix_cache_hits_total, those prefilled.', registers });
    this.requestsByReason = new Counter({
      name: 'vllm:request_success_total',
      help: "Finished generations by finish reason, in vLLM's words: stop (an end token, or a stop string the edge found), length (max tokens or the context), abort (cancelled: a client gone, a shutdown), error.",
      labelNames: ['finished_reason'],
      registers,
    });
    this.generationErrors = new Counter({
      name: 'sssd_pool_generation_errors_total',
      help: "Generations ended with an error event (vllm:request_success_total{finished_reason=\"error\"}), by its code: bad_request (the request's own: masks that left no token, a structured output past its automaton's limits) or internal (the pool's: a failed pass, a fault in acceptance; the pool log has it).",
      labelNames: ['code'],
      registers,
    });
    this.running = new Gauge({ name: 'vllm:num_requests_running', help: 'Generations in the running batch.', registers });
    this.waiting = new Gauge({ name: 'vllm:num_requests_waiting', help: 'Generations queued for admission.', registers });
    this.reservedTokens = new Gauge({
      name: 'sssd_pool_reserved_tokens',
      help: 'Tokens reserved (prompt + max tokens, capped at the context length + 1) by running and queued generations; a request that would pass --max-total-tokens is refused busy.',
      registers,
    });
    this.tenantReserveHeldRows = new Gauge({
      name: 'sssd_pool_tenant_reserve_held_rows',
      help: "Free rows left empty at the last admission while generations waited: the reserve (--tenant-reserve) kept for tenants with none running while another tenant's next in turn had rows running; 0 otherwise.",
      registers,
    });
    this.tenantReserveAdmissions = new Counter({
      name: 'sssd_pool_tenant_reserve_admissions_total',
      help: "Generations of a tenant with no row running started in a row the reserve (--tenant-reserve) had kept empty: a generation of a tenant with rows running was held back from it (queued) or refused its place (busy) while it stayed free; not one that found a row free no one was kept from.",
      registers,
    });
    this.preemptions = new Counter({
      name: 'sssd_pool_preemptions_total',
      help: "Generations that gave their row up at a step boundary to a generation of a tenant with no row running, while every row was taken (--preempt): each resumed later by recompute, its stream only paused; a generation is preempted once at most.",
      registers,
    });
    this.preemptionRecomputedTokens = new Counter({
      name: 'sssd_pool_preemption_recomputed_tokens_total',
      help: "Positions preempted generations had computed and fed again as they resumed (--preempt): prompt and output tokens, less what the prefix cache gave back.",
      registers,
    });
    this.batchSize = stepHistogram('sssd_pool_batch_size', 'Rows per forward pass.', [1, 2, 4, 8, 16, 32, 64, 128, 256]);
    this.stepSeconds = stepHistogram('sssd_pool_step_seconds', 'Wall time of one scheduler iteration (drafting, forward pass, acceptance).', STALL_BUCKETS);
    this.timeToFirstToken = stepHistogram('vllm:time_to_first_token_seconds', "From a request's arrival at the pool to its first tokens (queueing and prefill included).", [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 640, 2560]);
    this.interTokenLatency = stepHistogram('vllm:inter_token_latency_seconds', "Between a generation's consecutive token events (the tokens a speculative step accepts are one event): where streams stall.", STALL_BUCKETS);
    this.e2eLatency = histogram('vllm:e2e_request_latency_seconds', "From a request's arrival at the pool to its end, for requests that completed (stop, length, context_length).", [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 240, 480, 960, 1920, 7680]);
    this.timePerOutputToken = histogram(
      'vllm:request_time_per_output_token_seconds',
      "A completed request's time from its first tokens to its end over its output tokens after the first (requests of 2 tokens or more).",
      [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80],
    );
    const lengths = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000];
    this.requestPromptTokens = histogram('vllm:request_prompt_tokens', "A completed request's prompt tokens (prefix-cache hits included).", lengths);
    this.requestGenerationTokens = histogram('vllm:request_generation_tokens', "A completed request's output tokens.", lengths);
    this.queueTime = histogram('vllm:request_queue_time_seconds', "From a request's arrival at the pool to its admission into the running batch.", [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 120, 300, 600, 1200]);
    this.stepTokens = stepHistogram('sssd_pool_step_tokens', 'New tokens (roots + draft nodes + prefill) per forward pass.', [1, 4, 16, 64, 256, 1024, 4096]);
    // vLLM's names for a dashboard made for vLLM (review h118): its step-token histogram, and a request's phases.
    this.iterationTokens = stepHistogram('vllm:iteration_tokens_total', 'New tokens (roots + draft nodes + prefill) per forward pass (sssd_pool_step_tokens in vLLM\'s buckets).', [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]);
    const phases = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.3, 0.6, 0.8, 1, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];
    this.inferenceTime = histogram('vllm:request_inference_time_seconds', "A completed request's time in the running batch: from its admission to its end.", phases);
    this.prefillTime = histogram('vllm:request_prefill_time_seconds', "A completed request's time from its admission to its first tokens.", phases);
    this.decodeTime = histogram('vllm:request_decode_time_seconds', "A completed request's time from its first tokens to its end.", phases);
    // Read at each scrape: set only by steps, it kept its last busy figure through an idle pool.
    const rate = (): number => this.currentTokensPerSecond(this.clock());
    this.tokensPerSecond = new Gauge({
      name: 'sssd_pool_generation_tokens_per_second',
      help: 'Generated tokens per second over the last 10 s.',
      registers,
      collect() {
        this.set(rate());
      },
    });
    this.phaseSeconds = new StepCounterVec({
      name: PHASE_SECONDS_METRIC,
      help:
        'Time spent per scheduler phase: draft (drafting + budget), forward (runner.step), accept (verification, events queued), ' +
        "between (from a step's end to the next step's start: event writes flushed, HTTP requests handled), idle (no generation running).",
      labelName: 'phase',
      values: SCHEDULER_PHASES,
      registers,
      // A scrape during a long idle stretch counts it up to now.
      beforeRead: () => {
        if (this.idleSince !== null) this.endIdle(performance.now(), true);
      },
    });
    const phaseCounter = this.phaseSeconds;
    this.phase = Object.fromEntries(SCHEDULER_PHASES.map((p, i) => [p, phaseCounter.child(i)])) as Record<SchedulerPhase, StepCounterChild>;
    this.rejected = new Counter({ name: 'sssd_pool_rejected_requests_total', help: 'Requests refused: at admission (busy, draining), in the queue for another tenant\'s (displaced), for another model (model_mismatch) or protocol version (protocol_mismatch), or without the bearer token (unauthorized; metrics_unauthorized: a scrape of /metrics without SSSD_METRICS_TOKEN).', labelNames: ['reason'], registers });
    this.errorResponses = new Counter({
      name: 'sssd_pool_error_responses_total',
      help: 'Requests answered with an error status outside a stream (a body or parameter refused, no such route or generation, busy, unauthorized, a bug: 500), by status.',
      labelNames: ['status'],
      registers,
    });
    this.draftCacheClears = new Counter({
      name: 'sssd_pool_draft_cache_clears_total',
      help: "Times the datastore's draft cache was emptied on request (DELETE /v1/draft-cache: bench-serve does it before each replay).",
      registers,
    });
    const eventStreams = new Counter({
      name: 'sssd_pool_event_streams_total',
      help: 'Generation streams opened, by the form their events took: encoding="frames" (binary, for a client whose Accept names them: edges since frames) or "ndjson" (anyone else: curl, an edge from before them).',
      labelNames: ['encoding'],
      registers,
    });
    // Bound once, both series present from the start (a rollout's dashboard shows the NDJSON one at 0, not missing:
    // prom-client makes a series at its first inc, not at labels()).
    this.eventStreams = { frames: eventStreams.labels('frames'), ndjson: eventStreams.labels('ndjson') };
    eventStreams.inc({ encoding: 'frames' }, 0);
    eventStreams.inc({ encoding: 'ndjson' }, 0);
    this.stalledStreams = new Counter({
      name: 'sssd_pool_stalled_streams_total',
      help: 'Generation streams cut, and their generations cancelled, because their reader took nothing for --stalled-reader-seconds while events waited.',
      registers,
    });
    this.trieHints = new Counter({
      name: 'sssd_pool_trie_exhausted_total',
      help: "'trie-exhausted' hints sent to edges (only after an edge trie that got tokens accepted).",
      registers,
    });
    this.speculatingSteps = new StepCounterVec({
      name: 'sssd_pool_speculating_steps_total',
      help: "Steps that carried drafts, by drafter: tree (each request's fused drafter) or chain (next-token table chains in batches the fused drafter sits out).",
      labelName: 'drafter',
      values: ['tree', 'chain'] as const,
      // Both at 0 from the start, as the other series an alert may watch (below).
      zeroFromStart: true,
      registers,
    });
    this.draftSkips = new StepCounterVec({
      name: 'sssd_pool_draft_skips_total',
      help: 'Row-steps a row that could draft was kept from drafting, by reason: unpaid (its own recent acceptance does not pay for its drafts: it backs off, probing now and then) or resting (the budget refused its last drafts, or it starts too late).',
      labelName: 'reason',
      values: ['unpaid', 'resting'] as const,
      zeroFromStart: true,
      registers,
    });
    this.draftProbes = new StepCounter({ name: 'sssd_pool_draft_probes_total', help: 'Probes: small drafts by rows backed off (draft skips, reason unpaid) to see whether their drafts are accepted again.', registers });
    this.prefixCacheQueries = new Counter({ name: 'vllm:prefix_cache_queries_total', help: 'Prompt tokens looked up in the prefix cache.', registers });
    this.prefixCacheHits = new Counter({ name: 'vllm:prefix_cache_hits_total', help: 'Prompt tokens found in the prefix cache (not prefilled).', registers });
    this.prefixCacheBytes = new Gauge({ name: 'sssd_pool_prefix_cache_bytes', help: "Bytes of finished sequences' keys/values kept for prefix caching.", registers });
    this.datastoreSaves = new Counter({
      name: 'sssd_pool_datastore_saves_total',
      help: 'Saves of the datastore to --save-datastore FILE, by result (ok, error).',
      labelNames: ['result'],
      registers,
    });
    this.datastoreContributions = new Counter({
      name: 'sssd_pool_datastore_contributions_total',
      help: 'Outputs requests contributed to the datastore, by result (indexed; repeat: the same tokens as a recent one, not indexed again).',
      labelNames: ['result'],
      registers,
    });
    this.draftFailures = new Counter({
      name: 'sssd_pool_draft_failures_total',
      help: 'Drafting faults the pool recovered from, by kind: pass (a pass with draft tokens failed and ran without them), drafter (a drafter threw; its generation went on without speculation). The pool log has the first error.',
      labelNames: ['kind'],
      registers,
    });
    this.passPositionCap = new Gauge({
      name: 'sssd_pool_pass_position_cap',
      help: 'Most padded positions, rows × (longest past + most new tokens), a forward pass takes since batches failed as a whole in consecutive steps (a device out of memory); larger passes run in pieces. 0: no cap.',
      registers,
    });
    this.passFailures = new Counter({
      name: 'sssd_pool_pass_failures_total',
      help: 'Plain forward passes that failed and ran again in halves, by what followed: isolated (the rows that failed alone ended with an error, the rest went on), retried (no row failed alone; the step finished in smaller passes), batch (every generation in the batch ended with an error). The pool log has the errors.',
      labelNames: ['result'],
      registers,
    });
    this.triePushes = new Counter({
      name: 'sssd_pool_trie_pushes_total',
      help: "Fresh edge tries pushed for running generations, by result (applied; ignored: for a generation whose method reads no tries, taken unread; ended: the generation had just ended, answered 200; unknown: no such generation, 404; invalid: malformed, over the node cap, naming a token outside the vocabulary, or for output past the generation's, refused).",
      labelNames: ['result'],
      registers,
    });
    this.structuredOutputs = new Counter({
      name: 'sssd_pool_structured_outputs_total',
      help: "Generations admitted with a structured output, by kind: choices (vLLM's choice), regex (its regex, and a JSON schema, JSON mode or tool calls as the edge writes them by default) or grammar (its GBNF grammar, and JSON as the edge writes it with SSSD_JSON_GRAMMAR=1).",
      labelNames: ['kind'],
      registers,
    });
    this.regexCompiles = new Counter({
      name: 'sssd_pool_regex_compiles_total',
      help: "Structured outputs' regexes compiled into an automaton: a pattern not among the last 16 kept, or one whose automaton had used half its limits.",
      registers,
    });
    this.grammarCompiles = new Counter({
      name: 'sssd_pool_grammar_compiles_total',
      help: "Structured outputs' GBNF grammars compiled into an automaton: a grammar not among the last 16 regexes and grammars kept, or one whose automaton had used half its limits.",
      registers,
    });
    this.automatonLimits = new Counter({
      name: 'sssd_pool_automaton_limit_errors_total',
      help: "Generations ended because their structured output's automaton passed a request's limits (20,000 states, or 10M steps of building, of its own) or the automaton's (four times them).",
      registers,
    });
    this.resumedGenerations = new Counter({
      name: 'sssd_pool_resumed_generations_total',
      help: 'Generations admitted as resumed: an edge moved them here after their pool failed mid-stream (resumedOutputTokens > 0).',
      registers,
    });
    this.resumedOutputTokens = new Counter({
      name: 'sssd_pool_resumed_output_tokens_total',
      help: 'Output tokens resumed generations had produced on the pool that failed (read again here as prompt).',
      registers,
    });
    this.shippedTries = new Counter({
      name: 'sssd_pool_shipped_tries_total',
      help: 'Edge tries shipped with sssd requests, by result (used; unneeded: the row had no room to draft (max_tokens 1, or a full context); malformed: dropped, the request ran without it; invalid: naming a token outside the vocabulary, the request refused).',
      labelNames: ['result'],
      registers,
    });
    // Every series an alert may watch exists from the start at 0: Prometheus's
    // increase() and rate() miss a series' first sample, so a first failure
    // that also made its series would never alert.
    for (const finishedReason of new Set(Object.values(VLLM_FINISH_REASON))) this.requestsByReason.inc({ finished_reason: finishedReason }, 0);
    for (const reason of ['busy', 'displaced', 'draining', 'model_mismatch', 'protocol_mismatch', 'unauthorized', 'metrics_unauthorized']) this.rejected.inc({ reason }, 0);
    for (const result of ['isolated', 'retried', 'batch']) this.passFailures.inc({ result }, 0);
    for (const kind of ['pass', 'drafter']) this.draftFailures.inc({ kind }, 0);
    for (const result of ['ok', 'error']) this.datastoreSaves.inc({ result }, 0);
    for (const result of ['indexed', 'repeat']) this.datastoreContributions.inc({ result }, 0);
    for (const result of ['applied', 'ignored', 'ended', 'unknown', 'invalid']) this.triePushes.inc({ result }, 0);
    for (const result of ['used', 'unneeded', 'malformed', 'invalid']) this.shippedTries.inc({ result }, 0);
    this.speculatingStepsOf = { tree: this.speculatingSteps.child(0), chain: this.speculatingSteps.child(1) };
    this.draftSkipsOf = { unpaid: this.draftSkips.child(0), resting: this.draftSkips.child(1) };
    for (const status of ERROR_STATUSES) this.errorResponses.inc({ status }, 0);
    for (const code of GENERATION_ERROR_CODES) this.generationErrors.inc({ code }, 0);
    // Rendered after the pool's own series (render()).
    this.tenants = new TenantMetrics({ cap: metricsTenants });
  }

  /** An error answer outside a stream; statuses outside the pool's own set count as `other`, so no client can make series. */
  recordErrorResponse(status: number): void {
    const label = String(status);
    this.errorResponses.inc({ status: (ERROR_STATUSES as readonly string[]).includes(label) ? label : 'other' });
  }

  recordAccepted(position: number): void {
    if (position < this.trackedPositions) this.acceptedPerPosition.add(position);
  }

  /**
   * A generation ended (displaced ones are refusals, not this): pool-wide by
   * vLLM's reason and for its tenant's slot together, so that the per-tenant
   * series add up to the pool's whichever path ended it (review h227: a
   * waiting turn's cancel was counted pool-wide alone).
   */
  recordFinished(reason: FinishReason, tenantSlot: number): void {
    this.requestsByReason.inc({ finished_reason: VLLM_FINISH_REASON[reason] });
    this.tenants.finished(tenantSlot, reason);
  }

  /** A generation that completed (stop, length, context_length): its latency, time per output token and lengths, as vLLM's histograms take them. */
  recordCompleted(g: { promptTokens: number; completionTokens: number; queueMs: number | null; timeToFirstTokenMs: number | null; durationMs: number }): void {
    this.e2eLatency.observe(g.durationMs / 1000);
    this.requestPromptTokens.observe(g.promptTokens);
    this.requestGenerationTokens.observe(g.completionTokens);
    if (g.completionTokens > 1 && g.timeToFirstTokenMs !== null) this.timePerOutputToken.observe((g.durationMs - g.timeToFirstTokenMs) / 1000 / (g.completionTokens - 1));
    // vLLM's phases of a request once admitted: inference = prefill (to its first tokens) + decode (the rest).
    if (g.queueMs !== null) {
      this.inferenceTime.observe((g.durationMs - g.queueMs) / 1000);
      if (g.timeToFirstTokenMs !== null) this.prefillTime.observe((g.timeToFirstTokenMs - g.queueMs) / 1000);
    }
    if (g.timeToFirstTokenMs !== null) this.decodeTime.observe((g.durationMs - g.timeToFirstTokenMs) / 1000);
  }

  /** When the scheduler's loop last stopped for want of work (null while it runs). */
  private idleSince: number | null = null;

  /** The scheduler's loop stopped: nothing is running or queued. */
  startIdle(now: number): void {
    this.idleSince = now;
  }

  /** Work arrived (or a scrape came, `stillIdle`): the idle stretch so far goes into `phase="idle"`. */
  endIdle(now: number, stillIdle = false): void {
    if (this.idleSince === null) return;
    this.phase.idle.inc(Math.max(0, now - this.idleSince) / 1000);
    this.idleSince = stillIdle ? now : null;
  }

  /** Once per step: count the step's output tokens and update the rate window. */
  endStep(now: number, generated: number): void {
    this.generationTokens.inc(generated);
    const bucket = Math.floor(now / WINDOW_BUCKET_MS);
    const slot = bucket % WINDOW_BUCKETS;
    if (this.windowBucket[slot] !== bucket) {
      this.windowBucket[slot] = bucket;
      this.windowTokens[slot] = 0;
      this.windowFirst[slot] = now;
    }
    this.windowTokens[slot] += generated;
  }

  /** Output tokens of the last 10 s over the time since the first of them (at least 1 s): a pool just busy shows its rate at once. */
  currentTokensPerSecond(now: number): number {
    const newest = Math.floor(now / WINDOW_BUCKET_MS);
    let sum = 0;
    let first = Infinity;
    for (let slot = 0; slot < WINDOW_BUCKETS; slot++) {
      const b = this.windowBucket[slot];
      if (b < 0 || b > newest || newest - b >= WINDOW_BUCKETS) continue;
      sum += this.windowTokens[slot];
      if (this.windowFirst[slot] < first) first = this.windowFirst[slot];
    }
    if (first === Infinity) return 0;
    return (sum * 1000) / Math.max(1000, now - first);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    const own = await this.registry.metrics();
    // The per-tenant series' text after the registry's, a blank line between families as prom-client writes them
    // (tenant-metrics.ts: cheaper than as prom-client metrics).
    const tenants = this.tenants.exposition(this.modelLabel);
    return { contentType: this.registry.contentType, body: tenants === '' ? own : `${own}\n${tenants}` };
  }
}
