// When a step is worth splitting into two padded passes.
import { describe, expect, it } from 'vitest';
import { paddingSplitThreshold } from '../../../gpu-pool/runtime/padding-split';

const split = (lengths: number[], overhead = 32) => paddingSplitThreshold(Int32Array.from(lengths), lengths.length, overhead, new Int32Array(lengths.length));

describe('paddingSplitThreshold', () => {
  it('splits a long prompt off many short rows', () => {
    expect(split([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 30])).toBe(1);
    expect(split([4, 30, 6, 5, 6, 4, 6, 5])).toBe(6);
  });

  it('keeps one pass when padding is cheap or splitting is disabled', () => {
    expect(split([8, 8, 8, 8])).toBe(-1);
    expect(split([6, 8, 7, 8])).toBe(-1);
    expect(split([1, 30])).toBe(-1); // 2 rows: 60 padded tokens vs 31 + 32 overhead
    expect(split([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 30], Infinity)).toBe(-1);
    expect(split([5])).toBe(-1);
  });
});
