import { describe, expect, it } from 'vitest';
import { BatchSizeCaps } from '../../../gpu-pool/budget/batch-size-caps';

describe('BatchSizeCaps', () => {
  it('caps by the largest batch size key at or below the running batch, the most nodes below the smallest', () => {
    const caps = new BatchSizeCaps(32, { '8': 16, '32': 4, '4': 24 });
    expect([1, 3, 4, 7, 8, 31, 32, 500].map((n) => caps.capFor(n))).toEqual([32, 32, 24, 24, 16, 16, 4, 4]);
    expect(caps.entries).toEqual([
      { fromBatchSize: 1, maxTreeNodes: 32 },
      { fromBatchSize: 4, maxTreeNodes: 24 },
      { fromBatchSize: 8, maxTreeNodes: 16 },
      { fromBatchSize: 32, maxTreeNodes: 4 },
    ]);
  });

  it('drafts nothing from the disable batch size, whatever the table says above it', () => {
    const caps = new BatchSizeCaps(16, { '2': 8, '64': 2 }, 16);
    expect([1, 2, 15, 16, 64, 128].map((n) => caps.capFor(n))).toEqual([16, 8, 8, 0, 0, 0]);
    expect(new BatchSizeCaps(16, {}, 1).capFor(1)).toBe(0);
    // A key of 1 replaces the default for lone requests.
    expect(new BatchSizeCaps(16, { '1': 5 }).capFor(1)).toBe(5);
    expect(new BatchSizeCaps(16).entries).toEqual([{ fromBatchSize: 1, maxTreeNodes: 16 }]);
  });

  it('refuses caps above the most nodes per request, and batch sizes that are not positive integers', () => {
    expect(() => new BatchSizeCaps(16, { '8': 17 })).toThrow(/more than the most draft nodes per request \(16\)/);
    expect(() => new BatchSizeCaps(16, { '0': 4 })).toThrow(/positive integer/);
    expect(() => new BatchSizeCaps(16, { two: 4 })).toThrow(/positive integer/);
    expect(() => new BatchSizeCaps(16, { '2': -1 })).toThrow(/non-negative/);
    expect(() => new BatchSizeCaps(16, {}, 0)).toThrow(/positive integer/);
  });
});
