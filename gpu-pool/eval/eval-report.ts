/** The evaluator's table: τ per method × budget, then drafting time per step. */
import type { EvalMethod, ReplayResult } from './replay';

export function formatEvalTable(results: readonly ReplayResult[], methods: readonly EvalMethod[], budgets: readonly number[]): string {
  const find = (m: EvalMethod, b: number): ReplayResult | undefined => results.find((r) => r.method === m && r.budget === b);
  const w0 = Math.max(6, ...methods.map((m) => m.length));
  const cell = (s: string): string => s.padStart(9);
  const lines: string[] = [];
  lines.push(`mean acceptance length τ (tokens per verification step, bonus included)`);
  lines.push(`${'method'.padEnd(w0)}${budgets.map((b) => cell(`N=${b}`)).join('')}`);
  for (const m of methods) lines.push(`${m.padEnd(w0)}${budgets.map((b) => cell(find(m, b)?.tau.toFixed(2) ?? '-')).join('')}`);
  if (results.some((r) => r.sampledSteps > 0)) {
    // As served: greedy and sampled requests draft very differently; each gets its own τ.
    const part = (r: ReplayResult | undefined, sampled: boolean): string => {
      if (!r) return '-';
      const steps = sampled ? r.sampledSteps : r.steps - r.sampledSteps;
      const emitted = sampled ? r.sampledEmitted : r.emitted - r.sampledEmitted;
      return steps > 0 ? (emitted / steps).toFixed(2) : '-';
    };
    for (const sampled of [false, true]) {
      lines.push('');
      lines.push(`τ, ${sampled ? 'sampled' : 'greedy'} requests only`);
      lines.push(`${'method'.padEnd(w0)}${budgets.map((b) => cell(`N=${b}`)).join('')}`);
      for (const m of methods) lines.push(`${m.padEnd(w0)}${budgets.map((b) => cell(part(find(m, b), sampled))).join('')}`);
    }
  }
  lines.push('');
  lines.push(`drafting time per step, µs (median / p99)`);
  lines.push(`${'method'.padEnd(w0)}${budgets.map((b) => `N=${b}`.padStart(15)).join('')}`);
  for (const m of methods) {
    lines.push(
      `${m.padEnd(w0)}${budgets
        .map((b) => {
          const r = find(m, b);
          // One precision for both: a p99 rounded to whole µs printed below its median (review h141).
          return (r ? `${r.draftMicrosMedian.toFixed(1)} / ${r.draftMicrosP99.toFixed(1)}` : '-').padStart(15);
        })
        .join('')}`,
    );
  }
  const merges = results.filter((r) => r.mergeMillisMedian > 0);
  if (merges.length > 0) {
    const med = merges.map((r) => r.mergeMillisMedian).sort((a, b) => a - b)[Math.floor(merges.length / 2)];
    const p99 = Math.max(...merges.map((r) => r.mergeMillisP99));
    lines.push('');
    lines.push(`user-cache merge per request: median ${med.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms`);
  }
  return lines.join('\n');
}
