import { describe, expect, it } from 'vitest';
import { SpeculationGovernor } from '../../../gpu-pool/budget/speculation-governor';

/** Runs the governor against a world where each arm has a fixed throughput; returns the share of speculating steps. */
function share(specRate: number, plainRate: number, batch: number, steps = 400): number {
  const g = new SpeculationGovernor(10, 0.1);
  let spec = 0;
  for (let i = 0; i < steps; i++) {
    const s = g.decide(batch);
    if (s) spec++;
    g.record(batch, s, s ? specRate : plainRate, 1);
  }
  return spec / steps;
}

describe('speculation governor', () => {
  it('keeps speculation on where it measures faster', () => {
    expect(share(3, 1, 1)).toBeGreaterThan(0.85);
  });

  it('switches it off where it measures slower, still probing now and then', () => {
    const s = share(0.8, 1, 128);
    expect(s).toBeLessThan(0.15);
    expect(s).toBeGreaterThan(0);
  });

  it('decides per batch size', () => {
    const g = new SpeculationGovernor(10, 0.1);
    for (let i = 0; i < 200; i++) {
      for (const [batch, spec, plain] of [[2, 3, 1], [128, 0.5, 1]] as const) {
        const s = g.decide(batch);
        g.record(batch, s, s ? spec : plain, 1);
      }
    }
    let small = 0;
    let large = 0;
    for (let i = 0; i < 100; i++) {
      if (g.decide(2)) small++;
      if (g.decide(128)) large++;
    }
    expect(small).toBeGreaterThan(80);
    expect(large).toBeLessThan(20);
  });

  it('judges each speculation method on its own record', () => {
    const g = new SpeculationGovernor(10, 0.1);
    for (let i = 0; i < 300; i++) {
      for (const [key, spec] of [['sssd', 3], ['pld', 0.5]] as const) {
        // Rounds of one method at a time, as batches usually are.
        for (let k = 0; k < 5; k++) {
          const s = g.decide(1, key);
          g.record(1, s, s ? spec : 1, 1, key);
        }
      }
    }
    let sssd = 0;
    let pld = 0;
    for (let i = 0; i < 100; i++) {
      if (g.decide(1, 'sssd')) sssd++;
      if (g.decide(1, 'pld')) pld++;
    }
    expect(sssd).toBeGreaterThan(80);
    expect(pld).toBeLessThan(20);
  });

  it('judges every method against the one plain arm that any plain cycle feeds', () => {
    const g = new SpeculationGovernor(10, 0.1);
    // sssd at batch 16: its own plain probes were slowed (stale, 0.5), so 0.9 looked like a win...
    for (let i = 0; i < 200; i++) {
      const s = g.decide(16, 'sssd');
      g.record(16, s, s ? 0.9 : 0.5, 1, 'sssd');
    }
    // ...until plain cycles of rows that do not speculate ('off') show the pool's real plain rate.
    for (let i = 0; i < 40; i++) g.record(16, false, 1, 1, 'off');
    expect(g.state(16, 'sssd').plainRate).toBeGreaterThan(0.95);
    let on = 0;
    for (let i = 0; i < 100; i++) if (g.decide(16, 'sssd')) on++;
    expect(on).toBeLessThan(20);
  });

  it('is not switched by one stalled cycle', () => {
    const g = new SpeculationGovernor(10, 0.1);
    for (let i = 0; i < 200; i++) {
      const s = g.decide(4);
      g.record(4, s, 4 * (s ? 1.5 : 1), 1);
    }
    // A garbage-collection pause: one speculating cycle takes 40 times as long.
    g.record(4, true, 6, 40);
    expect(g.state(4).specRate).toBeGreaterThan(g.state(4).plainRate * 1.05);
    let on = 0;
    for (let i = 0; i < 40; i++) if (g.decide(4)) on++;
    expect(on).toBeGreaterThan(30);
  });

  it('corrects a losing arm\'s stale estimate quickly once it is probed', () => {
    const g = new SpeculationGovernor(10, 0.1);
    // Cold start: speculating cycles measure at a third of plain decoding.
    for (let i = 0; i < 60; i++) {
      const s = g.decide(4);
      g.record(4, s, s ? 2 : 6, 1);
    }
    expect(g.state(4).specRate).toBeLessThan(g.state(4).plainRate);
    // Warm: speculation is 17% faster; the probes alone must turn the decision
    // (with every sample weighed alike this took ~300 steps).
    let firstOn = -1;
    for (let i = 0; i < 400 && firstOn < 0; i++) {
      const s = g.decide(4);
      g.record(4, s, s ? 7 : 6, 1);
      if (g.state(4).specRate > g.state(4).plainRate * 1.05) firstOn = i;
    }
    expect(firstOn).toBeGreaterThanOrEqual(0);
    expect(firstOn).toBeLessThan(150);
  });

  it('follows a change of load', () => {
    const g = new SpeculationGovernor(10, 0.1);
    for (let i = 0; i < 200; i++) {
      const s = g.decide(16);
      g.record(16, s, s ? 2 : 1, 1);
    }
    for (let i = 0; i < 400; i++) {
      const s = g.decide(16);
      g.record(16, s, s ? 0.5 : 1, 1);
    }
    let on = 0;
    for (let i = 0; i < 100; i++) if (g.decide(16)) on++;
    expect(on).toBeLessThan(20);
  });
});
