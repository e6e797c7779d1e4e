/**
 * A line on stderr every few seconds while the pool works, for operators who
 * read logs rather than scrape /metrics (vLLM logs the same figures): tokens
 * per second in and out, the batch and the queue, how much of the speculation
 * was accepted, the prefix cache's hit rate, the requests refused busy (or
 * displaced from the queue). Read off the Prometheus counters,
 * so the line and /metrics never disagree. Nothing is printed while idle.
 */
import type { PoolMetrics } from './pool-metrics';

/** Counter totals the line is made of. */
export interface StatsTotals {
  generationTokens: number;
  promptTokens: number;
  drafts: number;
  draftTokens: number;
  acceptedTokens: number;
  prefixQueries: number;
  prefixHits: number;
  /** sssd_pool_rejected_requests_total{reason="busy"} and {reason="displaced"}. */
  refusedBusy: number;
  displaced: number;
}

export interface StatsSnapshot {
  totals: StatsTotals;
  running: number;
  waiting: number;
  prefixCacheBytes: number;
}

async function valueOf(metric: { get(): Promise<{ values: { value: number }[] }> }): Promise<number> {
  const { values } = await metric.get();
  return values.reduce((sum, v) => sum + v.value, 0);
}

async function rejectedFor(metrics: PoolMetrics): Promise<(reason: string) => number> {
  const { values } = await metrics.rejected.get();
  return (reason) => values.filter((v) => v.labels.reason === reason).reduce((sum, v) => sum + v.value, 0);
}

export async function readStats(metrics: PoolMetrics): Promise<StatsSnapshot> {
  const [generationTokens, promptTokens, drafts, draftTokens, acceptedTokens, prefixQueries, prefixHits, running, waiting, prefixCacheBytes] = await Promise.all(
    [
      metrics.generationTokens,
      metrics.promptTokens,
      metrics.numDrafts,
      metrics.numDraftTokens,
      metrics.numAcceptedTokens,
      metrics.prefixCacheQueries,
      metrics.prefixCacheHits,
      metrics.running,
      metrics.waiting,
      metrics.prefixCacheBytes,
    ].map(valueOf),
  );
  const rejected = await rejectedFor(metrics);
  return {
    totals: { generationTokens, promptTokens, drafts, draftTokens, acceptedTokens, prefixQueries, prefixHits, refusedBusy: rejected('busy'), displaced: rejected('displaced') },
    running,
    waiting,
    prefixCacheBytes,
  };
}

const percent = (part: number, whole: number): string => (whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '-');

/** The line for what happened between two snapshots `seconds` apart; null when nothing did. */
export function formatStats(before: StatsTotals, now: StatsSnapshot, seconds: number): string | null {
  const d = (k: keyof StatsTotals): number => now.totals[k] - before[k];
  const refused = d('refusedBusy') + d('displaced');
  if (d('generationTokens') === 0 && d('promptTokens') === 0 && now.running === 0 && now.waiting === 0 && refused === 0) return null;
  // Refusals since the last line: a page for overload is answered by this line, not only by /metrics.
  const turnedAway = refused === 0 ? '' : `, ${d('refusedBusy')} refused busy${d('displaced') > 0 ? `, ${d('displaced')} displaced` : ''}`;
  const parts = [
    `${(d('generationTokens') / seconds).toFixed(1)} tok/s out, ${(d('promptTokens') / seconds).toFixed(1)} tok/s prompt`,
    `${now.running} running, ${now.waiting} waiting${turnedAway}`,
  ];
  if (d('drafts') > 0) {
    // vLLM's definitions: acceptance rate over draft tokens; mean acceptance length = 1 + accepted / drafts.
    parts.push(`speculation ${percent(d('acceptedTokens'), d('draftTokens'))} of ${d('draftTokens')} draft tokens accepted, mean acceptance length ${(1 + d('acceptedTokens') / d('drafts')).toFixed(2)}`);
  }
  if (d('prefixQueries') > 0 || now.prefixCacheBytes > 0) {
    parts.push(`prefix cache ${percent(d('prefixHits'), d('prefixQueries'))} of prompt tokens hit, ${(now.prefixCacheBytes / 2 ** 20).toFixed(1)} MiB kept`);
  }
  return `pool: last ${seconds.toFixed(0)} s: ${parts.join('; ')}`;
}

/** Writes formatStats' line every `seconds` (unref'd: it never keeps the process alive); returns a stop function. */
export function startStatsLog(metrics: PoolMetrics, seconds: number, write: (line: string) => void): () => void {
  let last: StatsTotals | null = null;
  let at = performance.now();
  let busy = false;
  void readStats(metrics).then((s) => (last = s.totals));
  const timer = setInterval(() => {
    if (busy || last === null) return;
    busy = true;
    void readStats(metrics)
      .then((now) => {
        const t = performance.now();
        const line = formatStats(last!, now, (t - at) / 1000);
        last = now.totals;
        at = t;
        if (line) write(line);
      })
      .finally(() => (busy = false));
  }, seconds * 1000);
  timer.unref();
  return () => clearInterval(timer);
}
