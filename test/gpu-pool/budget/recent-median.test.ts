import { describe, expect, it } from 'vitest';
import { RecentMedian } from '../../../gpu-pool/budget/recent-median';

describe('RecentMedian', () => {
  it('is the median of the last samples, none before it has enough', () => {
    const m = new RecentMedian(5, 2);
    m.add(3);
    expect(m.value).toBeUndefined();
    m.add(1);
    expect(m.value).toBe(2);
    for (const x of [10, 2, 100]) m.add(x);
    expect(m.value).toBe(3); // 3 1 10 2 100
    m.add(0); // 1 10 2 100 0
    expect(m.value).toBe(2);
  });
});
