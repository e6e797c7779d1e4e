import { describe, expect, it } from 'vitest';
import { settledWithin } from '../../edge/settled-within';

const after = <T>(ms: number, value: T): Promise<T> => new Promise((resolve) => setTimeout(() => resolve(value), ms));

describe('settledWithin', () => {
  it("gives the value of a promise that settles in time, and null for one that does not, which goes on", async () => {
    expect(await settledWithin(after(5, 'cache'), 1000)).toBe('cache');
    const slow = after(60, 'late cache');
    const started = performance.now();
    expect(await settledWithin(slow, 10)).toBeNull();
    expect(performance.now() - started).toBeLessThan(50);
    expect(await slow).toBe('late cache');
  });

  it('does not wait at all for 0', async () => {
    expect(await settledWithin(Promise.resolve('ready'), 0)).toBeNull();
  });

  it('passes a rejection on', async () => {
    await expect(settledWithin(Promise.reject(new Error('kv down')), 100)).rejects.toThrow('kv down');
  });
});
