import { describe, expect, it } from 'vitest';
import { formatEvalTable } from '../../../gpu-pool/eval/eval-report';
import type { ReplayResult } from '../../../gpu-pool/eval/replay';

const result = (draftMicrosMedian: number, draftMicrosP99: number): ReplayResult => ({
  method: 'pld',
  budget: 8,
  steps: 10,
  emitted: 30,
  tau: 3,
  draftTokens: 40,
  acceptedTokens: 20,
  draftMicrosMedian,
  draftMicrosP99,
  mergeMillisMedian: 0,
  mergeMillisP99: 0,
  sampledSteps: 0,
  sampledEmitted: 0,
  sampledTau: 0,
});

describe("eval-drafts' table", () => {
  it('prints the drafting time median and p99 at one precision, so the p99 never reads below the median (review h141)', () => {
    const table = formatEvalTable([result(12.4, 12.46)], ['pld'], [8]);
    const row = table.split('\n').find((line) => line.startsWith('pld') && line.includes(' / '));
    expect(row).toMatch(/ 12\.4 \/ 12\.5$/);
  });
});
