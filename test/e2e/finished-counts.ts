/**
 * The pool's finished generations by reason (vLLM's request_success_total),
 * read off its /metrics: what the e2e tests of cancellation count.
 */
import { seriesValue } from '../gpu-pool/server/pool-process';

export interface FinishedCounts {
  total: number;
  /** finished_reason "abort": cancelled (a client gone, a shutdown). */
  cancelled: number;
  /** finished_reason "stop". */
  stopped: number;
}

/** vLLM's finish reasons as the pool labels them (pool-metrics.ts, VLLM_FINISH_REASON). */
const REASONS = ['stop', 'length', 'abort', 'error'] as const;

export async function finishedCounts(poolUrl: string): Promise<FinishedCounts> {
  const text = await (await fetch(`${poolUrl}/metrics`)).text();
  const count = (reason: string): number => seriesValue(text, 'vllm:request_success_total', `finished_reason="${reason}"`);
  return { total: REASONS.reduce((sum, reason) => sum + count(reason), 0), cancelled: count('abort'), stopped: count('stop') };
}

/** The counts once `more` generations past `before` have finished, or as they stand after `tries` tenths of a second. */
export async function finishedAfter(poolUrl: string, before: FinishedCounts, more: number, tries = 50): Promise<FinishedCounts> {
  let after = before;
  for (let i = 0; i < tries && after.total < before.total + more; i++) {
    await new Promise((r) => setTimeout(r, 100));
    after = await finishedCounts(poolUrl);
  }
  return after;
}
