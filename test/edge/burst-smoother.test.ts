import { describe, expect, it } from 'vitest';
import { BurstSmoother } from '../../edge/burst-smoother';

describe('BurstSmoother', () => {
  it('spreads a burst over the expected step time', () => {
    const s = new BurstSmoother();
    s.onBurst(1, 0);
    for (let t = 40; t <= 400; t += 40) s.onBurst(4, t);
    const gap = s.gapMs(3, false);
    // about 40 ms per step / ~4 tokens per step
    expect(gap).toBeGreaterThan(5);
    expect(gap).toBeLessThan(15);
  });

  it('never waits with nothing queued and drains fast at the end', () => {
    const s = new BurstSmoother();
    s.onBurst(1, 0);
    s.onBurst(2, 500);
    expect(s.gapMs(0, false)).toBe(0);
    expect(s.gapMs(1, true)).toBeLessThanOrEqual(8);
  });

  it('shortens the gap when a backlog builds up', () => {
    const s = new BurstSmoother();
    s.onBurst(1, 0);
    for (let t = 40; t <= 400; t += 40) s.onBurst(4, t);
    expect(s.gapMs(40, false)).toBeLessThan(s.gapMs(3, false) / 5);
  });
});
