import { describe, expect, it } from 'vitest';
import { DepthCalibration } from '../../../gpu-pool/budget/depth-calibration';

describe('DepthCalibration', () => {
  it("corrects each depth by its own accepted / predicted, so estimates that run low by more at depth look right at every depth", () => {
    const c = new DepthCalibration(4);
    // Raw estimates 0.5, 0.25, 0.125 (path products of 0.5); truly accepted 0.8, 0.6, 0.45 of the time.
    const raw = Float32Array.from([1, 0.5, 0.25, 0.125]);
    const truth = [0.8, 0.6, 0.45];
    let seed = 7;
    const rand = (): number => (seed = (seed * 16807) % 2147483647) / 2147483647;
    for (let i = 0; i < 4000; i++) {
      const u = rand();
      const accepted = u < truth[2] ? 3 : u < truth[1] ? 2 : u < truth[0] ? 1 : 0;
      c.record(raw, 3, accepted);
    }
    const out = new Float32Array(4);
    c.apply(raw, 3, out);
    expect(out[0]).toBe(1);
    for (let d = 1; d <= 3; d++) expect(out[d]).toBeCloseTo(truth[d - 1], 1);
    // One scale per depth: depth 3's is the largest here.
    expect(c.scale(3)).toBeGreaterThan(c.scale(1));
  });

  it('never lets a deeper node look likelier than its parent, nor any above 1', () => {
    const c = new DepthCalibration(3);
    for (let i = 0; i < 500; i++) c.record(Float32Array.from([1, 0.2, 0.19, 0.18]), 3, 3);
    const out = new Float32Array(4);
    c.apply(Float32Array.from([1, 0.9, 0.85, 0.8]), 3, out);
    expect(Array.from(out)).toEqual([1, 1, 1, 1]);
    c.apply(Float32Array.from([1, 0.01, 0.2, 0.2]), 3, out);
    expect(out[2]).toBeLessThanOrEqual(out[1]);
    expect(out[3]).toBeLessThanOrEqual(out[2]);
  });

  it('starts optimistic, so a depth no chain has reached yet still gets sent and measured', () => {
    const c = new DepthCalibration(4);
    expect(c.scale(4)).toBeGreaterThan(1);
    // Depths past those recorded keep their prior.
    for (let i = 0; i < 200; i++) c.record(Float32Array.from([1, 0.5, 0.25]), 1, 0);
    expect(c.scale(1)).toBeLessThan(0.2);
    expect(c.scale(3)).toBeGreaterThan(1);
  });
});
