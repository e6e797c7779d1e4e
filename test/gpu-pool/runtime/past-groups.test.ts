import { describe, expect, it } from 'vitest';
import { MIN_GROUPED_ROWS, pastGroupThreshold } from '../../../gpu-pool/runtime/past-groups';

const threshold = (pasts: number[]): number => pastGroupThreshold(pasts, pasts.length, 32, new Int32Array(pasts.length));

describe('pastGroupThreshold', () => {
  it('cuts a batch whose pasts spread wide where it drops the most padding', () => {
    // Eight short pasts and four long: the short ones stop attending over 320 positions.
    expect(threshold([10, 300, 12, 20, 15, 290, 18, 9, 11, 310, 14, 305])).toBe(20);
  });

  it('keeps one group where pasts are alike, the batch is small, or the saving is under a fifth', () => {
    expect(threshold(Array.from({ length: 16 }, (_, i) => 100 + i))).toBe(-1);
    expect(threshold(Array.from({ length: MIN_GROUPED_ROWS - 1 }, (_, i) => (i < 3 ? 10 : 300)))).toBe(-1);
    // One short row among 15 long ones saves ~6% of the padded positions.
    expect(threshold([10, ...Array.from({ length: 15 }, () => 300)])).toBe(-1);
  });

  it('never separates rows of equal past', () => {
    const pasts = [50, 50, 50, 50, 300, 300, 300, 300, 50, 50];
    const cut = threshold(pasts);
    expect(cut).toBe(50);
    expect(pasts.filter((p) => p <= cut).length).toBe(6);
  });
});
