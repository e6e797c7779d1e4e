/**
 * Serving benchmark against a running pool: replays a workload with
 * `concurrency` generations in flight, for each method, and reports output
 * tokens/s, time per output token, time to first token and tokens per step.
 *
 * Fairness: at each concurrency level every method replays the same requests;
 * methods take turns round by round (so they see the same machine load over
 * time), and the order changes from round to round (methodOrder: a rotation,
 * then its reverse), so that no method always goes first; above concurrency 4 each level starts with an
 * unmeasured round of every method (see below). User caches start empty at each level (the
 * edge learns during the level, never from a previous replay of the same
 * request).
 *
 * Spread: with `repeats` > 1 each level is replayed that many times (caches
 * emptied each time) and every ratio to `off` also comes per replay, so a
 * reader sees how far one run's ratio can be trusted (on the 2-core VM a
 * single run's ratio moves by ±5-10% at concurrency 8-128).
 *
 * Closed loop: a level keeps `concurrency` requests in flight, the next sent
 * as one ends; the workload's `arrival_s` is not used (a bursty trace is
 * replayed as a steady one).
 */
import cliProgress from 'cli-progress';
import { speculationMethods, type PoolInfo, type SpeculationMethod } from '../../shared/protocol';
import { SCHEDULER_PHASES } from '../metrics/pool-metrics';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import { edgeTrieDepth } from '../../shared/drafting/edge-trie';
import { startBenchEdge } from './edge-emulator-thread';
import { quantile } from './latency-stats';
import { methodOrder } from './method-order';
import { clearPoolDraftCache } from './pool-draft-cache';
import { addPhaseDelta, readPoolPhases, zeroPhases, type PhaseSeconds } from './pool-phases';
import { runGeneration, type TimedGeneration } from './pool-stream-client';
import type { PoolEventFormat } from '../../shared/pool-event-stream';
import { poolFieldsOf, unhonouredFields, type ServedWorkloadRequest } from './workload';
import { measuredPool, type MeasuredPool } from './measured-pool';

export interface BenchServeOptions {
  poolUrl: string;
  token: string | null;
  /** The token the pool's /metrics wants, where it wants one (SSSD_METRICS_TOKEN); else `token` is sent. */
  metricsToken?: string | null;
  workload: ServedWorkloadRequest[];
  concurrencies: number[];
  methods: SpeculationMethod[];
  /** Requests per concurrency level (at least 4 × the concurrency, cycling through the workload). */
  limit: number;
  /** Measured replays of each level (default 1); figures pool them, ratios also come per replay. */
  repeats?: number;
  useDatastore: boolean;
  /** Play the edge for `sssd` (per-user caches, shipped tries); default true. */
  edgeTries?: boolean;
  /** Read the pool's phase counters around each round (MethodResult.poolSeconds); default false. */
  phases?: boolean;
  progress: boolean;
  /** The form of the pool's event streams: frames (default, as the edge asks) or NDJSON. */
  events?: PoolEventFormat;
  /** A structured output every request is sent with (the pool's `regex`; a JSON schema as the edge writes it); absent: none. */
  regex?: string;
  /** Told which pool the run measures (its /v1/info), once, before the first request. */
  onPool?: (pool: MeasuredPool) => void;
  /** Called after each concurrency level with every result so far (what an interrupted run still has to show). */
  onLevel?: (results: readonly MethodResult[]) => void;
  /** Told once where the pool's draft cache could not be emptied before a replay (a pool from before DELETE /v1/draft-cache). */
  onWarmDraftCache?: () => void;
}

export interface MethodResult {
  concurrency: number;
  method: SpeculationMethod;
  requests: number;
  failed: number;
  /** The distinct errors of the failed requests (at most 5), each with how many had it. */
  errors: Array<{ error: string; count: number }>;
  outputTokens: number;
  wallSeconds: number;
  outputTokensPerSecond: number;
  /**
   * Latencies: NaN (null in `--json`) where the level had no sample (every
   * request one token long has no TPOT nor ITL). TPOT is vLLM's: per request,
   * (last token event - first) / (tokens - 1), so a request whose tokens all
   * came in one event (a step's speculation, or a short one) counts 0 however
   * long it took; E2E is a request's whole time, send to last token.
   */
  tpotMedianMs: number;
  tpotP99Ms: number;
  ttftMedianMs: number;
  ttftP99Ms: number;
  e2eMedianMs: number;
  /** How many samples each latency's quantiles are of: requests of more than one token; requests that did not fail (TTFT, E2E); gaps between token events. */
  tpotSamples: number;
  ttftSamples: number;
  itlSamples: number;
  /**
   * Inter-token latency: time between a stream's consecutive token events
   * (a speculative step's tokens arrive as one), p99 and the longest, over
   * every stream of the level: where a stream stalls, say behind another
   * request's long prefill.
   */
  itlP99Ms: number;
  itlMaxMs: number;
  /**
   * Tokens emitted per verification step (bonus included), every step
   * counted, those that carried no draft and a prompt's first included: the
   * table's "tok/step". Not vLLM's mean acceptance length (1 + accepted /
   * drafts, over drafting steps only), which is higher where few steps draft.
   */
  meanAcceptanceLength: number;
  /** Accepted / drafted tokens. */
  acceptanceRate: number;
  /** Output tokens/s relative to `off` at the same concurrency (when measured). */
  speedupVsOff?: number;
  /** The same ratio for each replay of the level (with `repeats` > 1). */
  speedupVsOffRuns?: number[];
  /**
   * With `phases`: the pool's seconds by scheduler phase over this method's
   * measured rounds (its `/metrics`, read before and after each round, outside
   * their timing; absent where the pool does not expose them). With nothing
   * else on the pool they add up to about `wallSeconds`.
   */
  poolSeconds?: PhaseSeconds;
}

interface Prepared {
  user: string;
  promptIds: number[];
  request: ServedWorkloadRequest;
}

export async function benchServe(opts: BenchServeOptions): Promise<MethodResult[]> {
  const headers = opts.token ? { authorization: `Bearer ${opts.token}` } : undefined;
  const infoRes = await fetch(`${opts.poolUrl}/v1/info`, { headers }).catch((err: Error) => {
    throw new Error(`cannot reach ${opts.poolUrl}/v1/info: ${err.cause instanceof Error ? err.cause.message : err.message}`);
  });
  if (!infoRes.ok) throw new Error(`GET /v1/info answered ${infoRes.status}: ${(await infoRes.text()).slice(0, 200)}`);
  const info = (await infoRes.json()) as PoolInfo;
  // A field the pool would strip unread changes the workload without a word (it answers 200).
  const unhonoured = unhonouredFields(opts.workload, info.features ?? []);
  if (unhonoured.length > 0) throw new Error(`the workload's requests use what this pool does not honour: ${unhonoured.join(', ')}`);
  opts.onPool?.(measuredPool(opts.poolUrl, info, opts.useDatastore));
  const tokRes = await fetch(`${opts.poolUrl}${info.tokenizer.path}`, { headers });
  if (!tokRes.ok) throw new Error(`GET ${info.tokenizer.path} answered ${tokRes.status}`);
  const tokenizer = loadTokenizer(new Uint8Array(await tokRes.arrayBuffer()), info.tokenizer.format);
  const prepared: Prepared[] = opts.workload.map((request, i) => {
    const promptIds = tokenizer.encode(request.prompt, { bos: true });
    // Cut to the context, a prompt left no room to generate and the run measured nothing, without a word.
    if (promptIds.length >= info.model.contextLength) {
      throw new Error(`workload request ${i + 1}: its prompt (with any --prompt-prefix) is ${promptIds.length} tokens, and the model's context ${info.model.contextLength}: no room to generate`);
    }
    return { user: request.user, promptIds, request };
  });

  const results: MethodResult[] = [];
  let runId = 0;
  /** A workload request as served (its own sampling), under `method`. */
  const bodyOf = (p: Prepared, method: SpeculationMethod, idPrefix: string) => ({
    id: `${idPrefix}-${process.pid}-${++runId}`,
    promptIds: p.promptIds,
    maxTokens: p.request.max_tokens,
    ...poolFieldsOf(p.request),
    speculation: method,
    useDatastore: opts.useDatastore,
    contributeToDatastore: false,
    ...(opts.regex !== undefined ? { regex: opts.regex } : {}),
  });
  const edge = opts.methods.includes('sssd') && opts.edgeTries !== false ? startBenchEdge(info.model.vocabSize) : null;
  try {
    // The edge's merge thread loads its modules first (~0.5 s of CPU on two
    // threads): left to overlap the measurement, it slowed whichever rounds
    // ran first (`sssd` alone at concurrency 1: 4-14% slower with the edge
    // than without, in 7 of 8 pairs; after waiting, within noise).
    await edge?.ready();
    // Warm-up (not measured): the runtime's first batch shapes and the JIT.
    for (const method of opts.methods) {
      await replay(prepared.slice(0, 8), 4, (p) =>
        runGeneration(opts.poolUrl, opts.token, {
          id: `bench-warmup-${process.pid}-${++runId}`,
          promptIds: p.promptIds,
          maxTokens: Math.min(32, p.request.max_tokens),
          speculation: method,
          useDatastore: opts.useDatastore,
        }, { events: opts.events }),
      );
    }
    /** One workload request as served under `method`: for `sssd` the edge ships the user's trie, refreshes it, and learns from the answer. */
    const serve = async (p: Prepared & { repeat: boolean }, method: SpeculationMethod, idPrefix: string): Promise<TimedGeneration> => {
      // A reply of one token drafts nothing, and the edge neither reads nor writes its user's cache (edgeTrieDepth).
      const playEdge = edge !== null && method === 'sssd' && !p.repeat && edgeTrieDepth(p.request.max_tokens, 0) > 0;
      const greedy = p.request.temperature === 0;
      // The request starts before its trie is drafted, as at the edge: its time to first token includes the drafting.
      const startedAt = performance.now();
      // As deep as the tokens left allow, as at the edge.
      const maxTokens = p.request.max_tokens;
      const trie = playEdge ? await edge.trieFor(p.user, p.promptIds, greedy, edgeTrieDepth(maxTokens, 0)) : undefined;
      const r = await runGeneration(opts.poolUrl, opts.token, { ...bodyOf(p, method, idPrefix), ...(trie ? { trie } : {}) }, { events: opts.events, ...(playEdge ? { freshTrie: (outputIds) => edge.trieFor(p.user, [...p.promptIds, ...outputIds], greedy, edgeTrieDepth(maxTokens, outputIds.length)) } : {}) });
      r.sentAt = startedAt;
      // As the edge's waitUntil: the cache update happens after the response, off the request path.
      if (playEdge && r.ok) edge.record(p.user, p.promptIds, r.outputIds);
      return r;
    };
    let draftCacheWarned = false;
    for (const concurrency of opts.concurrencies) {
      // High concurrency needs enough requests to stay at that concurrency for a
      // while: at least 4 × concurrency, cycling through the workload (a repeat
      // ships no edge trie: the user cache would already hold its answer).
      const count = levelRequestCount(prepared.length, opts.limit, concurrency);
      const requests = Array.from({ length: count }, (_, i) => ({ ...prepared[i % prepared.length], repeat: i >= prepared.length }));
      const roundSize = Math.min(count, Math.max(2 * concurrency, 16));
      // One unmeasured round per method, at full length and as served (the
      // edge played for `sssd`, its caches emptied again before the first
      // replay). A pool's first seconds at a new load run its garbage
      // collector several times as often while its heap grows: without an
      // `off` round the method listed first measured 8-18% slower at
      // concurrency 32 than the same work listed later (`pld` against `off`,
      // both at 1.00 tokens/step). And a level's first `sssd` replay ran
      // 10-15% under its later ones (concurrency 32, a fresh pool: 1.10-1.20x
      // against 1.26-1.46x, seven runs) while only `off` was warmed: the
      // edge's and the drafters' code paths at that load were cold. The round
      // takes requests the level does not measure where the workload has
      // them (warmupRound), so no draft cache holds a measured request's
      // queries that a cold replay would not.
      if (concurrency > 4) {
        const warm = warmupRound(prepared, count, roundSize).map((p) => ({ ...p, repeat: false }));
        for (const method of opts.methods) await replay(warm, concurrency, (p) => serve(p, method, 'bench-warmup'));
      }
      const runsOf = new Map<SpeculationMethod, TimedGeneration[]>();
      for (const m of opts.methods) runsOf.set(m, []);
      // Read around each round, outside its timing; one failed read and the level reports none.
      const phasesOf = new Map<SpeculationMethod, PhaseSeconds>();
      for (const m of opts.methods) phasesOf.set(m, zeroPhases());
      let phasesRead = opts.phases === true;
      const repeats = Math.max(1, opts.repeats ?? 1);
      /** Output tokens and wall seconds per replay and method. */
      const perReplay = Array.from({ length: repeats }, () => new Map<SpeculationMethod, { tokens: number; wall: number }>());
      const bar = opts.progress
        ? new cliProgress.SingleBar({ format: `c=${concurrency} {bar} {value}/{total} generations`, stream: process.stderr }, cliProgress.Presets.shades_classic)
        : null;
      bar?.start(count * opts.methods.length * repeats, 0);
      for (let replayIndex = 0, turn = 0; replayIndex < repeats; replayIndex++) {
        // Each replay starts a pair of turns (methodOrder balances a pair): a level of an odd number of rounds
        // started the next replay at an odd turn, whose pair with the one after put a method last twice.
        turn += turn % 2;
        // User caches start empty at each level, and at each replay of it; so does the pool's draft cache, which
        // held every datastore lookup of the requests replayed (the warm-up rounds' and earlier levels' included).
        edge?.reset();
        if (!(await clearPoolDraftCache(opts.poolUrl, opts.token)) && !draftCacheWarned) {
          draftCacheWarned = true;
          opts.onWarmDraftCache?.();
        }
        for (let start = 0; start < count; start += roundSize, turn++) {
          const round = requests.slice(start, start + roundSize);
          const order = methodOrder(opts.methods, turn);
          for (const method of order) {
            const before = phasesRead ? await readPoolPhases(opts.poolUrl, opts.metricsToken ?? opts.token) : null;
            const t0 = performance.now();
            const runs = await replay(round, concurrency, async (p) => {
              const r = await serve(p, method, 'bench');
              bar?.increment();
              return r;
            });
            const wall = (performance.now() - t0) / 1000;
            const after = before ? await readPoolPhases(opts.poolUrl, opts.metricsToken ?? opts.token) : null;
            if (before && after) addPhaseDelta(phasesOf.get(method)!, before, after);
            else phasesRead = false;
            runsOf.get(method)!.push(...runs);
            const figures = perReplay[replayIndex].get(method) ?? { tokens: 0, wall: 0 };
            figures.wall += wall;
            for (const r of runs) if (r.ok) figures.tokens += r.outputIds.length;
            perReplay[replayIndex].set(method, figures);
          }
        }
      }
      bar?.stop();
      for (const method of opts.methods) {
        // The level's wall time for a method: the sum of its replays'.
        const wall = perReplay.reduce((s, m) => s + (m.get(method)?.wall ?? 0), 0);
        const result = summarise(concurrency, method, runsOf.get(method)!, wall);
        if (phasesRead) result.poolSeconds = phasesOf.get(method);
        results.push(result);
      }
      const off = results.find((r) => r.concurrency === concurrency && r.method === 'off');
      // A level with failed requests has no ratio: its throughput counts only what did not fail.
      const clean = results.every((r) => r.concurrency !== concurrency || r.failed === 0);
      if (off && clean) {
        for (const r of results) {
          if (r.concurrency !== concurrency) continue;
          r.speedupVsOff = r.outputTokensPerSecond / off.outputTokensPerSecond;
          if (repeats > 1) r.speedupVsOffRuns = perReplay.map((m) => rate(m.get(r.method)) / rate(m.get('off')));
        }
      }
      opts.onLevel?.(results);
    }
  } finally {
    await edge?.close();
  }
  return results;
}

/** Requests a level measures: the workload's first `limit`, and at least 4 × the concurrency (cycling through the workload for that). */
function levelRequestCount(workloadLength: number, limit: number, concurrency: number): number {
  return Math.max(Math.min(workloadLength, limit), 4 * concurrency);
}

/** What the levels measured, in words: the figures of each are of those requests, not of the whole workload. */
export function describeLevelRequests(workloadLength: number, limit: number, concurrencies: readonly number[]): string {
  const parts = concurrencies.map((c) => {
    const n = levelRequestCount(workloadLength, limit, c);
    return `${n <= workloadLength ? `the first ${n}` : `all ${workloadLength} and ${n - workloadLength} repeats`} at ${c}`;
  });
  return `${workloadLength} workload requests; measured: ${parts.join(', ')}`;
}

/** The line Ctrl-C prints before the levels finished so far: with none, it says so, not a colon with nothing after (review h166). */
export function describeInterruption(finishedLevels: readonly number[]): string {
  if (finishedLevels.length === 0) return 'bench-serve: interrupted; no level was finished, so there are no figures';
  return `bench-serve: interrupted; the finished levels (concurrency ${finishedLevels.join(', ')}):`;
}

/**
 * The requests of a level's unmeasured round (`roundSize` of them): the ones
 * after the level's `count` where the workload has that many more, else the
 * level's first round (a level that cycles through the whole workload has no
 * others).
 */
export function warmupRound<T>(prepared: readonly T[], count: number, roundSize: number): T[] {
  if (count + roundSize <= prepared.length) return prepared.slice(count, count + roundSize);
  return Array.from({ length: Math.min(roundSize, count) }, (_, i) => prepared[i % prepared.length]);
}

function rate(figures: { tokens: number; wall: number } | undefined): number {
  return figures && figures.wall > 0 ? figures.tokens / figures.wall : NaN;
}

/** Runs `items` keeping at most `concurrency` in flight; results in input order. */
async function replay<T, R>(items: readonly T[], concurrency: number, run: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await run(items[i]);
    }
  });
  await Promise.all(workers);
  return out;
}

/** A refusal's retry hint, which differs from one `busy` to the next: `"retryAfterMs":139`. */
const RETRY_AFTER = /,?"retryAfterMs":(\d+)/;

/**
 * The failed runs' errors, most frequent first (at most 5), each with how many had it. One error with different retry
 * hints is one error, its hints' range said after it: four `503 busy` lines, one per retryAfterMs (review h166).
 */
export function distinctErrors(runs: readonly TimedGeneration[]): Array<{ error: string; count: number }> {
  const groups = new Map<string, { count: number; retryMin: number; retryMax: number }>();
  for (const r of runs) {
    if (r.ok) continue;
    const error = r.error ?? 'unknown error';
    const retry = RETRY_AFTER.exec(error);
    const key = retry ? error.replace(RETRY_AFTER, '') : error;
    const ms = retry ? Number(retry[1]) : NaN;
    const group = groups.get(key) ?? { count: 0, retryMin: Infinity, retryMax: -Infinity };
    group.count++;
    if (retry) {
      group.retryMin = Math.min(group.retryMin, ms);
      group.retryMax = Math.max(group.retryMax, ms);
    }
    groups.set(key, group);
  }
  return [...groups]
    .sort((a, b) => b[1].count - a[1].count)
    .slice(0, 5)
    .map(([error, g]) => ({
      error: g.retryMax < 0 ? error : `${error} (retryAfterMs ${g.retryMin === g.retryMax ? g.retryMin : `${g.retryMin} to ${g.retryMax}`})`,
      count: g.count,
    }));
}

/** What failed, per level and method, for the end of a run's output (empty when nothing did). */
export function formatFailures(results: readonly MethodResult[]): string {
  return results
    .filter((r) => r.failed > 0)
    .flatMap((r) => r.errors.map((e) => `concurrency ${r.concurrency}, ${r.method}: ${e.count} failed: ${e.error}`))
    .join('\n');
}

function summarise(concurrency: number, method: SpeculationMethod, runs: TimedGeneration[], wall: number): MethodResult {
  const ok = runs.filter((r) => r.ok);
  const outputTokens = ok.reduce((s, r) => s + r.outputIds.length, 0);
  const tpot = ok.filter((r) => r.outputIds.length > 1).map((r) => (r.lastTokenAt - r.firstTokenAt) / (r.outputIds.length - 1));
  const ttft = ok.map((r) => r.firstTokenAt - r.sentAt);
  const e2e = ok.map((r) => r.lastTokenAt - r.sentAt);
  const gaps = ok.flatMap((r) => r.gaps);
  const steps = ok.reduce((s, r) => s + (r.usage?.steps ?? 0), 0);
  const drafted = ok.reduce((s, r) => s + (r.usage?.draftTokens ?? 0), 0);
  const accepted = ok.reduce((s, r) => s + (r.usage?.acceptedTokens ?? 0), 0);
  return {
    concurrency,
    method,
    requests: runs.length,
    failed: runs.length - ok.length,
    errors: distinctErrors(runs),
    outputTokens,
    wallSeconds: wall,
    outputTokensPerSecond: outputTokens / wall,
    tpotMedianMs: quantile(tpot, 0.5),
    tpotP99Ms: quantile(tpot, 0.99),
    ttftMedianMs: quantile(ttft, 0.5),
    ttftP99Ms: quantile(ttft, 0.99),
    e2eMedianMs: quantile(e2e, 0.5),
    tpotSamples: tpot.length,
    ttftSamples: ttft.length,
    itlSamples: gaps.length,
    itlP99Ms: quantile(gaps, 0.99),
    itlMaxMs: gaps.length > 0 ? gaps.reduce((a, b) => Math.max(a, b), 0) : NaN,
    meanAcceptanceLength: steps > 0 ? outputTokens / steps : 0,
    acceptanceRate: drafted > 0 ? accepted / drafted : 0,
  };
}

/** A latency for the table; '-' where the level had no sample of it (every request one token long: no TPOT, no ITL). */
function millis(ms: number, digits: number): string {
  return Number.isFinite(ms) ? `${ms.toFixed(digits)}ms` : '-';
}

/**
 * Fewest samples a p99 is shown of: from 4 requests linear interpolation made
 * it about their maximum, printed as a tail latency (review h192). `--json`
 * keeps the figure, with its sample count.
 */
export const MIN_P99_SAMPLES = 100;

/** A p99 for the table: '-' below MIN_P99_SAMPLES samples. */
function p99Millis(ms: number, samples: number, digits: number): string {
  return samples < MIN_P99_SAMPLES ? '-' : millis(ms, digits);
}

/** What the latency columns are, under the table: TPOT's 0 for a request served in one event reads as fast otherwise. */
export const LATENCY_LEGEND = [
  "TPOT: per request, (last token event - first) / (tokens - 1), vLLM's: 0 where a request's tokens came in one event, however long it took; E2E: a request's time from send to its last token",
  `p99: '-' below ${MIN_P99_SAMPLES} samples (requests for TPOT and TTFT, gaps between token events for ITL); --repeat N gives N times as many`,
].join('\n');

export function formatTable(results: readonly MethodResult[]): string {
  // With repeats, the per-replay ratios' range follows the pooled ratio.
  const spread = results.some((r) => (r.speedupVsOffRuns?.length ?? 0) > 1);
  const head = ['conc', 'method', 'reqs', 'fail', 'out tok/s', 'x off', ...(spread ? ['x off runs'] : []), 'TPOT med', 'TPOT p99', 'TTFT med', 'TTFT p99', 'E2E med', 'ITL p99', 'ITL max', 'tok/step', 'accept'];
  const rows = results.map((r) => [
    String(r.concurrency),
    r.method,
    String(r.requests),
    String(r.failed),
    // A method with failures counts only what did not fail: marked, so that it is not read as its throughput.
    r.failed > 0 ? `${r.outputTokensPerSecond.toFixed(0)}*` : r.outputTokensPerSecond.toFixed(0),
    r.speedupVsOff === undefined ? '-' : `${r.speedupVsOff.toFixed(2)}x`,
    ...(spread ? [r.speedupVsOffRuns ? `${Math.min(...r.speedupVsOffRuns).toFixed(2)}-${Math.max(...r.speedupVsOffRuns).toFixed(2)}x` : '-'] : []),
    millis(r.tpotMedianMs, 2),
    p99Millis(r.tpotP99Ms, r.tpotSamples, 2),
    millis(r.ttftMedianMs, 1),
    p99Millis(r.ttftP99Ms, r.ttftSamples, 1),
    millis(r.e2eMedianMs, 1),
    p99Millis(r.itlP99Ms, r.itlSamples, 2),
    millis(r.itlMaxMs, 1),
    r.meanAcceptanceLength.toFixed(2),
    r.method === 'off' ? '-' : `${(r.acceptanceRate * 100).toFixed(0)}%`,
  ]);
  const partial = results.some((r) => r.failed > 0);
  return [renderColumns(head, rows), ...(partial ? ['* counts only the requests that did not fail; the time includes the failed ones'] : []), LATENCY_LEGEND].join('\n');
}

/** Aligned columns under a rule: the first two (concurrency, method) to the left, figures to the right. */
function renderColumns(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** Where the pool's time went per output token, by scheduler phase (µs): rows with `poolSeconds` only. */
export function formatPhaseTable(results: readonly MethodResult[]): string {
  const head = ['conc', 'method', ...SCHEDULER_PHASES, 'total', 'busy'];
  const rows = results
    .filter((r) => r.poolSeconds && r.outputTokens > 0)
    .map((r) => {
      const p = r.poolSeconds!;
      const total = SCHEDULER_PHASES.reduce((sum, k) => sum + p[k], 0);
      const perToken = (seconds: number): string => ((seconds / r.outputTokens) * 1e6).toFixed(1);
      // Busy: the share of the pool's time with a generation running.
      return [String(r.concurrency), r.method, ...SCHEDULER_PHASES.map((k) => perToken(p[k])), perToken(total), total > 0 ? `${((1 - p.idle / total) * 100).toFixed(0)}%` : '-'];
    });
  if (rows.length === 0) return '(the pool exposed no phase counters)';
  return `pool µs per output token, by scheduler phase\n${renderColumns(head, rows)}`;
}

export function parseMethods(list: string): SpeculationMethod[] {
  const methods = list.split(',').map((m) => m.trim()).filter(Boolean);
  for (const m of methods) {
    if (!(speculationMethods as readonly string[]).includes(m)) throw new Error(`unknown method "${m}" (use ${speculationMethods.join(', ')})`);
  }
  if (methods.length === 0) throw new Error('--methods needs at least one method');
  // A method twice ran every round twice, under one merged row.
  return [...new Set(methods)] as SpeculationMethod[];
}
