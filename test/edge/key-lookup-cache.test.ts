import { describe, expect, it } from 'vitest';
import { KeyLookupCache } from '../../edge/key-lookup-cache';

const opts = { hitMs: 30_000, missMs: 2_000, staleMs: 60_000, maxHits: 3, maxMisses: 5 };

describe('KeyLookupCache', () => {
  it('remembers known keys for their time to live, then serves them stale (for a key store outage) for a while', () => {
    const cache = new KeyLookupCache<string>(opts);
    cache.set('a', 'tenant-a', 0);
    expect(cache.get('a', 29_999)).toEqual({ record: 'tenant-a', fresh: true });
    expect(cache.get('a', 30_000)).toEqual({ record: 'tenant-a', fresh: false });
    expect(cache.get('a', 90_000)).toEqual({ record: 'tenant-a', fresh: false });
    // Past that, a key revoked while it sat here is not served through an outage: it is gone.
    expect(cache.get('a', 90_001)).toBeUndefined();
    expect(cache.size.hits).toBe(0);
    cache.set('x', null, 0);
    expect(cache.get('x', 1_999)).toEqual({ record: null, fresh: true });
    expect(cache.get('x', 2_000)).toEqual({ record: null, fresh: false });
    expect(cache.get('never', 0)).toBeUndefined();
  });

  it('stays bounded under a flood of random keys, and the flood never pushes out known keys', () => {
    const cache = new KeyLookupCache<string>(opts);
    cache.set('a', 'tenant-a', 0);
    cache.set('b', 'tenant-b', 0);
    for (let i = 0; i < 10_000; i++) cache.set(`random-${i}`, null, i);
    expect(cache.size).toEqual({ hits: 2, misses: 5 });
    expect(cache.get('a', 10_000)?.record).toBe('tenant-a');
    expect(cache.get('random-9999', 10_000)).toEqual({ record: null, fresh: true });
    expect(cache.get('random-0', 10_000)).toBeUndefined();
  });

  it('drops the least recently stored known key past its bound, and forgets a key that was revoked', () => {
    const cache = new KeyLookupCache<string>(opts);
    for (const k of ['a', 'b', 'c']) cache.set(k, k, 0);
    cache.set('a', 'a', 1); // refreshed: now the newest
    cache.set('d', 'd', 2);
    expect(cache.get('b', 3)).toBeUndefined();
    expect(cache.get('a', 3)?.record).toBe('a');
    cache.set('a', null, 4);
    expect(cache.get('a', 5)).toEqual({ record: null, fresh: true });
    expect(cache.size).toEqual({ hits: 2, misses: 1 });
  });
});
