/**
 * Host key/value buffers handed from finished sequences to new ones (a
 * SizeClassPool, shared/memory/size-class-pool.ts, weighed in positions).
 *
 * Why: every request allocated its cache's two Float32Arrays (prompt +
 * max_tokens positions, 100-350 KB on stories260K) on the pool's main thread,
 * and the prefix cache's compaction one more at its end: 0.48-0.53 ms median
 * per request in `newSequence` on the 2-core VM, time every running stream
 * waited for; reused, 0.034 ms.
 *
 * Reused buffers are not zeroed: a cache only ever reads the positions it
 * has written (packing the past copies [0, length) of each row). With the
 * prefix cache on, finished sequences go to it, and their buffers come back
 * here when it evicts them: until it is full, new sequences still allocate.
 */
import { SizeClassPool, sizeClass } from '../../shared/memory/size-class-pool';

export interface KvBuffers {
  keys: Float32Array;
  values: Float32Array;
  /** Positions the buffers hold (a size class). */
  capacity: number;
}

/** The size class `positions` rounds up to (at most a quarter more from 64 on), at most `max`. */
export function kvCapacityClass(positions: number, max: number): number {
  return sizeClass(positions, max);
}

export class KvBufferPool {
  private readonly pool: SizeClassPool<KvBuffers>;

  constructor(
    /** Floats per position in one of the two buffers (layers × kv heads × head dim). */
    private readonly floatsPerPosition: number,
    /** Positions the kept buffers may hold together. */
    limitTokens: number,
  ) {
    if (!(floatsPerPosition >= 1)) throw new RangeError(`floatsPerPosition must be at least 1, not ${floatsPerPosition}`);
    this.pool = new SizeClassPool<KvBuffers>({
      weightOf: (capacity) => capacity,
      maxWeight: limitTokens,
      make: (capacity) => ({ keys: new Float32Array(capacity * floatsPerPosition), values: new Float32Array(capacity * floatsPerPosition), capacity }),
    });
  }

  /** Buffers of exactly `capacity` positions (a size class): a kept pair when there is one, else new ones. */
  take(capacity: number): KvBuffers {
    return this.pool.take(capacity);
  }

  /** Returns buffers from `take` (not to be used after): kept for reuse while the limit allows. */
  give(buffers: KvBuffers): void {
    this.pool.give(buffers.capacity, buffers);
  }

  /** Positions held by kept (free) buffers. */
  get pooledTokens(): number {
    return this.pool.kept;
  }

  /** Bytes held by kept (free) buffers, keys and values. */
  get keptBytes(): number {
    return this.pool.kept * this.floatsPerPosition * Float32Array.BYTES_PER_ELEMENT * 2;
  }

  /** Takes served from kept buffers, and takes that allocated. */
  get reused(): number {
    return this.pool.reused;
  }

  get allocated(): number {
    return this.pool.made;
  }
}
