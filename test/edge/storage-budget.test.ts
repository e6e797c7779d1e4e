import { describe, expect, it } from 'vitest';
import { StorageBudget } from '../../edge/storage-budget';

const MB = 1024 * 1024;
const DAY_MS = 86_400_000;

describe('StorageBudget', () => {
  it("takes up to a day's worth at once, then what has refilled since, and says when the rest is there", () => {
    const budget = new StorageBudget();
    expect(budget.take('s', 'a', 3 * MB, 4 * MB, 0)).toBeNull();
    expect(budget.take('s', 'a', MB, 4 * MB, 0)).toBeNull();
    // Empty: 1 MiB refills in a quarter of a day.
    expect(budget.take('s', 'a', MB, 4 * MB, 0)).toBe(DAY_MS / 4 / 1000);
    expect(budget.take('s', 'a', MB, 4 * MB, DAY_MS / 8)).toBe(DAY_MS / 8 / 1000);
    expect(budget.take('s', 'a', MB, 4 * MB, DAY_MS / 4)).toBeNull();
    // Another key has its own.
    expect(budget.take('s', 'b', 4 * MB, 4 * MB, DAY_MS / 4)).toBeNull();
    // Never more than a day's worth, however long idle.
    expect(budget.take('s', 'a', 4 * MB, 4 * MB, 10 * DAY_MS)).toBeNull();
    expect(budget.take('s', 'a', 1, 4 * MB, 10 * DAY_MS)).toBe(1);
  });

  it("takes a whole day's worth for a request of more than that, and forgets the least lately used bucket past its bound", () => {
    const budget = new StorageBudget(2);
    expect(budget.take('s', 'a', 10 * MB, MB, 0)).toBeNull();
    expect(budget.take('s', 'a', 1, MB, 0)).not.toBeNull();
    budget.take('s', 'b', MB, MB, 0);
    budget.take('s', 'c', MB, MB, 0);
    // 'a' was the least lately used: forgotten, it starts full.
    expect(budget.take('s', 'a', MB, MB, 0)).toBeNull();
    expect(budget.take('s', 'c', 1, MB, 0)).not.toBeNull();
  });

  it("gives each key of a shared scope its own record's figure: a 1 MiB key's requests do not hold a 64 MiB key to 1 MiB (review h217, finding 2)", () => {
    const budget = new StorageBudget();
    // The rotation's new key, of 1 MiB a day, stores first; then the old one of 64 MiB, in the same scope.
    expect(budget.take('scope', 'small', 1024, MB, 0)).toBeNull();
    expect(budget.take('scope', 'large', 60 * MB, 64 * MB, 1000)).toBeNull();
    expect(budget.take('scope', 'small', 1024, MB, 2000)).toBeNull();
    expect(budget.take('scope', 'large', 4 * MB, 64 * MB, 3000)).toBeNull();
    // Each spent at its own figure: the large key is empty, the small one has what its own day left it.
    expect(budget.take('scope', 'large', MB, 64 * MB, 3000)).toBe(Math.ceil(((MB - ((3000 - 1000) * 64 * MB) / DAY_MS) * DAY_MS) / (64 * MB) / 1000));
    expect(budget.take('scope', 'small', MB - 2048, MB, 3000)).toBeNull();
    expect(budget.take('scope', 'small', 1024, MB, 3000)).not.toBeNull();
  });
});
