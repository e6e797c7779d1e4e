// Key/value buffers handed from finished sequences to new ones: the same
// arrays come back for the same size class, and the pool never keeps more
// than its limit.
import { describe, expect, it } from 'vitest';
import { KvBufferPool, kvCapacityClass } from '../../../gpu-pool/runtime/kv-buffer-pool';
import { SequenceKvCache } from '../../../gpu-pool/runtime/kv-cache';

const layout = { nLayers: 2, nKvHeads: 2, headDim: 4, maxCapacity: 512 };
const perPosition = layout.nLayers * layout.nKvHeads * layout.headDim;

describe('kvCapacityClass', () => {
  it('rounds up to a quarter of the power of two below (16 at least), capped at the context length', () => {
    expect([1, 16, 17, 63, 64, 65, 81, 200, 300].map((n) => kvCapacityClass(n, 512))).toEqual([16, 16, 32, 64, 64, 80, 96, 224, 320]);
    expect(kvCapacityClass(500, 512)).toBe(512);
    expect(kvCapacityClass(700, 512)).toBe(512);
    // At most a quarter of slack from 64 positions on.
    for (let n = 64; n <= 4096; n++) expect(kvCapacityClass(n, 1 << 20) / n).toBeLessThanOrEqual(1.25);
  });
});

describe('KvBufferPool', () => {
  it('hands a released sequence its buffers to the next one of the same class', () => {
    const pool = new KvBufferPool(perPosition, 4 * 512);
    const a = new SequenceKvCache(layout, 100, null, pool);
    expect(a.capacity).toBe(112);
    const keys = a.keys;
    a.release();
    expect(pool.pooledTokens).toBe(112);
    expect(pool.keptBytes).toBe(112 * perPosition * 4 * 2);
    const b = new SequenceKvCache(layout, 110, null, pool);
    expect(b.keys).toBe(keys);
    expect(b.length).toBe(0);
    expect(pool.reused).toBe(1);
    // Another class allocates.
    const c = new SequenceKvCache(layout, 300, null, pool);
    expect(c.keys).not.toBe(keys);
    expect(pool.allocated).toBe(2);
  });

  it('gives back the smaller buffers when a sequence grows, and keeps what it had written', () => {
    const pool = new KvBufferPool(perPosition, 4 * 512);
    const a = new SequenceKvCache(layout, 16, null, pool);
    const small = a.keys;
    a.keys[3] = 7; // position 0, layer 0, head 0
    a.advance(1);
    a.reserve(40);
    expect(a.capacity).toBe(48);
    expect(a.keys[3]).toBe(7);
    expect(pool.pooledTokens).toBe(16);
    expect(new SequenceKvCache(layout, 10, null, pool).keys).toBe(small);
  });

  it('keeps at most its limit, and drops buffers of classes no longer asked for', () => {
    const pool = new KvBufferPool(perPosition, 300);
    const seqs = [0, 1, 2].map(() => new SequenceKvCache(layout, 128, null, pool));
    for (const s of seqs) s.release();
    expect(pool.pooledTokens).toBe(256); // the third did not fit
    // Two takes of another class drop 128 kept positions each.
    new SequenceKvCache(layout, 64, null, pool);
    expect(pool.pooledTokens).toBe(128);
    new SequenceKvCache(layout, 64, null, pool);
    expect(pool.pooledTokens).toBe(0);
    expect(pool.reused).toBe(0);
  });

  it('is not used by resident sequences', () => {
    const pool = new KvBufferPool(perPosition, 512);
    let released = 0;
    const r = new SequenceKvCache(layout, 100, { slot: 1, onRelease: () => released++ }, pool);
    expect(r.keys.length).toBe(0);
    r.release();
    expect(released).toBe(1);
    expect(pool.pooledTokens).toBe(0);
    expect(pool.allocated).toBe(0);
  });
});
