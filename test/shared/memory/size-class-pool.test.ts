// The free lists behind the pool's reused key/value buffers and context
// tries: a kept item goes to the next take of its class, readied by the
// reuse hook, within the weight bound.
import { describe, expect, it } from 'vitest';
import { SizeClassPool, sizeClass } from '../../../shared/memory/size-class-pool';

describe('SizeClassPool', () => {
  it('hands a kept item to the next take of its class, readied for reuse, and makes one otherwise', () => {
    const readied: Int32Array[] = [];
    const pool = new SizeClassPool<Int32Array>({ weightOf: (n) => n, maxWeight: 1000, make: (n) => new Int32Array(n), reuse: (a) => readied.push(a) });
    const a = pool.take(sizeClass(100, 1 << 20));
    expect(a.length).toBe(112);
    a[0] = 7;
    pool.give(112, a);
    expect(pool.kept).toBe(112);
    expect(pool.take(112)).toBe(a);
    expect(readied).toEqual([a]);
    expect(pool.take(112)).not.toBe(a);
    expect([pool.reused, pool.made, pool.kept]).toEqual([1, 2, 0]);
  });

  it('keeps no more than its bound, and a take with nothing of its class drops as much of the others, largest first', () => {
    const pool = new SizeClassPool<number[]>({ weightOf: (n) => n, maxWeight: 300, make: (n) => new Array<number>(n) });
    pool.give(64, []);
    pool.give(128, []);
    pool.give(128, []); // over the bound: dropped
    expect(pool.kept).toBe(192);
    pool.take(32); // drops the 128
    expect(pool.kept).toBe(64);
    pool.take(80); // drops the 64
    expect(pool.kept).toBe(0);
  });
});
