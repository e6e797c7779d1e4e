/**
 * Host key/value buffers handed from finished sequences to new ones.
 *
 * Why: every request used to allocate its cache's two Float32Arrays
 * (prompt + max_tokens positions, 100-350 KB on stories260K) on the pool's
 * main thread, and the prefix cache's compaction one more at its end. Fresh
 * memory that size cost 0.48-0.53 ms median per request in `newSequence` on
 * the 2-core VM (zeroing pages the process had not touched yet: ~6 µs per
 * 4 KB page fault there), time every running stream waited for.
 *
 * Capacities come in size classes (four per doubling, so at most a quarter
 * of a buffer is slack), and a freed pair is kept for the next sequence of
 * its class, up to `limitTokens` positions kept. A take its class has none
 * for drops as many kept positions of other classes, so buffers of sizes the
 * traffic no longer asks for go back to the garbage collector over time.
 * Reused buffers are not zeroed: a cache only ever reads the positions it
 * has written (packing the past copies [0, length) of each row).
 *
 * With the prefix cache on, finished sequences go to it, and their buffers
 * come back here when it evicts them: until it is full, new sequences still
 * allocate.
 */
export interface KvBuffers {
  keys: Float32Array;
  values: Float32Array;
  /** Positions the buffers hold (a size class). */
  capacity: number;
}

/** Smallest class step, in positions. */
const MIN_STEP = 16;

/** The size class `positions` rounds up to: a multiple of a quarter of its power of two (16 at least), at most `max`. */
export function kvCapacityClass(positions: number, max: number): number {
  const n = Math.max(1, Math.ceil(positions));
  const step = Math.max(MIN_STEP, 2 ** Math.floor(Math.log2(n)) / 4);
  return Math.min(max, Math.ceil(n / step) * step);
}

export class KvBufferPool {
  private readonly free = new Map<number, KvBuffers[]>();
  private pooled = 0;
  private reusedCount = 0;
  private allocatedCount = 0;

  constructor(
    /** Floats per position in one of the two buffers (layers × kv heads × head dim). */
    private readonly floatsPerPosition: number,
    /** Positions the kept buffers may hold together. */
    private readonly limitTokens: number,
  ) {
    if (!(floatsPerPosition >= 1)) throw new RangeError(`floatsPerPosition must be at least 1, not ${floatsPerPosition}`);
  }

  /** Buffers of exactly `capacity` positions (a size class): a kept pair when there is one, else new ones. */
  take(capacity: number): KvBuffers {
    const kept = this.free.get(capacity);
    const reused = kept?.pop();
    if (reused) {
      this.pooled -= capacity;
      this.reusedCount++;
      return reused;
    }
    this.allocatedCount++;
    if (this.pooled > 0) this.evict(capacity);
    const n = capacity * this.floatsPerPosition;
    return { keys: new Float32Array(n), values: new Float32Array(n), capacity };
  }

  /** Returns buffers from `take` (not to be used after): kept for reuse while the limit allows, else left to the garbage collector. */
  give(buffers: KvBuffers): void {
    if (this.pooled + buffers.capacity > this.limitTokens) return;
    let list = this.free.get(buffers.capacity);
    if (!list) this.free.set(buffers.capacity, (list = []));
    list.push(buffers);
    this.pooled += buffers.capacity;
  }

  /** Drops kept buffers, largest classes first, until `positions` are freed or none is left. */
  private evict(positions: number): void {
    const classes = [...this.free.keys()].sort((a, b) => b - a);
    for (const capacity of classes) {
      const list = this.free.get(capacity)!;
      while (list.length > 0 && positions > 0) {
        list.pop();
        this.pooled -= capacity;
        positions -= capacity;
      }
      if (list.length === 0) this.free.delete(capacity);
      if (positions <= 0) return;
    }
  }

  /** Positions held by kept (free) buffers. */
  get pooledTokens(): number {
    return this.pooled;
  }

  /** Bytes held by kept (free) buffers, keys and values. */
  get keptBytes(): number {
    return this.pooled * this.floatsPerPosition * Float32Array.BYTES_PER_ELEMENT * 2;
  }

  /** Takes served from kept buffers, and takes that allocated. */
  get reused(): number {
    return this.reusedCount;
  }

  get allocated(): number {
    return this.allocatedCount;
  }
}
