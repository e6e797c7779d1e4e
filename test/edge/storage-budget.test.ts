import { describe, expect, it } from 'vitest';
import { StorageBudget } from '../../edge/storage-budget';

const MB = 1024 * 1024;
const DAY_MS = 86_400_000;

describe('StorageBudget', () => {
  it("takes up to a day's worth at once, then what has refilled since, and says when the rest is there", () => {
    const budget = new StorageBudget();
    expect(budget.take('a', 3 * MB, 4 * MB, 0)).toBeNull();
    expect(budget.take('a', MB, 4 * MB, 0)).toBeNull();
    // Empty: 1 MiB refills in a quarter of a day.
    expect(budget.take('a', MB, 4 * MB, 0)).toBe(DAY_MS / 4 / 1000);
    expect(budget.take('a', MB, 4 * MB, DAY_MS / 8)).toBe(DAY_MS / 8 / 1000);
    expect(budget.take('a', MB, 4 * MB, DAY_MS / 4)).toBeNull();
    // Another scope has its own.
    expect(budget.take('b', 4 * MB, 4 * MB, DAY_MS / 4)).toBeNull();
    // Never more than a day's worth, however long idle.
    expect(budget.take('a', 4 * MB, 4 * MB, 10 * DAY_MS)).toBeNull();
    expect(budget.take('a', 1, 4 * MB, 10 * DAY_MS)).toBe(1);
  });

  it("takes a whole day's worth for a request of more than that, and forgets the least lately used scope past its bound", () => {
    const budget = new StorageBudget(2);
    expect(budget.take('a', 10 * MB, MB, 0)).toBeNull();
    expect(budget.take('a', 1, MB, 0)).not.toBeNull();
    budget.take('b', MB, MB, 0);
    budget.take('c', MB, MB, 0);
    // 'a' was the least lately used: forgotten, it starts full.
    expect(budget.take('a', MB, MB, 0)).toBeNull();
    expect(budget.take('c', 1, MB, 0)).not.toBeNull();
  });
});
