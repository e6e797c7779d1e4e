/**
 * Reading the pool's phase counters back from its Prometheus text, as
 * bench-serve does around each round.
 */
import { describe, expect, it } from 'vitest';
import { addPhaseDelta, parsePhaseSeconds, zeroPhases } from '../../../gpu-pool/bench/pool-phases';
import { PoolMetrics } from '../../../gpu-pool/metrics/pool-metrics';

describe('pool phases', () => {
  it("reads every phase off the pool's own /metrics text, and what a window added", async () => {
    const metrics = new PoolMetrics();
    metrics.phase.draft.inc(0.25);
    metrics.phase.forward.inc(1.5);
    metrics.phase.accept.inc(0.125);
    metrics.phase.between.inc(0.5);
    const before = parsePhaseSeconds((await metrics.render()).body);
    expect(before).toEqual({ draft: 0.25, forward: 1.5, accept: 0.125, between: 0.5, idle: 0 });
    metrics.phase.forward.inc(2);
    metrics.phase.idle.inc(0.75);
    const after = parsePhaseSeconds((await metrics.render()).body)!;
    const window = zeroPhases();
    addPhaseDelta(window, before!, after);
    expect(window).toEqual({ draft: 0, forward: 2, accept: 0, between: 0, idle: 0.75 });
  });

  it("reads them whatever other labels the pool adds (its model_name)", async () => {
    // A model's name is its file's or folder's: any character, '}' and quotes included.
    for (const name of ['stories260K', 'my}model', 'say "hi", \\ok']) {
      const metrics = new PoolMetrics(undefined, undefined, name);
      metrics.phase.forward.inc(1.5);
      expect(parsePhaseSeconds((await metrics.render()).body), name).toEqual({ draft: 0, forward: 1.5, accept: 0, between: 0, idle: 0 });
    }
  });

  it('says none where the text has no phase counters (another server, an older pool)', () => {
    expect(parsePhaseSeconds('# HELP other_total x\nother_total 3\n')).toBeNull();
    expect(parsePhaseSeconds('')).toBeNull();
  });
});
