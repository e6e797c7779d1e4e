/**
 * The keys/values of one sequence's accepted tokens, laid out
 * [layer][kvHead][capacity][headDim] so that packing the past of a row into
 * the graph's [B,kvH,P,hd] inputs is one contiguous copy per layer and head.
 * Grows by doubling up to the model's context length; with a KvBufferPool,
 * capacities are its size classes and the buffers come from and go back to it.
 *
 * A resident sequence (GPU providers, resident-kv.ts) holds no host storage:
 * its keys/values live in a slot of the device-side store, and this object
 * only counts its positions.
 */
import { kvCapacityClass, type KvBufferPool } from './kv-buffer-pool';

export interface KvLayout {
  nLayers: number;
  nKvHeads: number;
  headDim: number;
  /** Upper bound for capacity (the model's context length). */
  maxCapacity: number;
}

/** Where a resident sequence's keys/values are, and what to call when it is released. */
export interface ResidentSlot {
  slot: number;
  onRelease: () => void;
}

export class SequenceKvCache {
  private keyData: Float32Array;
  private valueData: Float32Array;
  private len = 0;
  private cap: number;
  private released = false;
  private epochValue = 0;
  /** Slot in the device-side store, or -1 for host storage. */
  readonly residentSlot: number;
  private readonly onRelease: (() => void) | null;

  constructor(
    readonly layout: KvLayout,
    initialCapacity = layout.maxCapacity,
    resident: ResidentSlot | null = null,
    /** Where host buffers come from and go back to (capacities then round up to its size classes); null: allocated here. */
    private readonly buffers: KvBufferPool | null = null,
  ) {
    this.residentSlot = resident ? resident.slot : -1;
    this.onRelease = resident ? resident.onRelease : null;
    if (resident) {
      this.cap = layout.maxCapacity;
      this.keyData = new Float32Array(0);
      this.valueData = new Float32Array(0);
      this.buffers = null;
      return;
    }
    const wanted = Math.max(1, Math.min(initialCapacity, layout.maxCapacity));
    if (buffers) {
      const got = buffers.take(kvCapacityClass(wanted, layout.maxCapacity));
      this.cap = got.capacity;
      this.keyData = got.keys;
      this.valueData = got.values;
    } else {
      this.cap = wanted;
      this.keyData = new Float32Array(layout.nLayers * layout.nKvHeads * this.cap * layout.headDim);
      this.valueData = new Float32Array(this.keyData.length);
    }
  }

  /** Number of cached positions (tokens whose keys/values are stored). */
  get length(): number {
    return this.len;
  }

  get capacity(): number {
    return this.cap;
  }

  /** Changes whenever stored positions are invalidated (truncate, release): packed copies of the past must be redone. */
  get epoch(): number {
    return this.epochValue;
  }

  get isReleased(): boolean {
    return this.released;
  }

  /** Raw storage; valid until the next `reserve` that grows it. */
  get keys(): Float32Array {
    return this.keyData;
  }

  get values(): Float32Array {
    return this.valueData;
  }

  /** Makes room for `total` positions (grow-only, doubling). */
  reserve(total: number): void {
    this.assertLive();
    if (total <= this.cap) return;
    if (total > this.layout.maxCapacity) {
      throw new RangeError(`KV cache: ${total} positions exceed the context length ${this.layout.maxCapacity}`);
    }
    const max = this.layout.maxCapacity;
    const doubled = Math.min(max, Math.max(total, this.cap * 2));
    const { nLayers, nKvHeads, headDim } = this.layout;
    const got = this.buffers ? this.buffers.take(kvCapacityClass(doubled, max)) : null;
    const next = got ? got.capacity : doubled;
    const keys = got ? got.keys : new Float32Array(nLayers * nKvHeads * next * headDim);
    const values = got ? got.values : new Float32Array(keys.length);
    for (let lh = 0; lh < nLayers * nKvHeads; lh++) {
      const n = this.len * headDim;
      keys.set(this.keyData.subarray(lh * this.cap * headDim, lh * this.cap * headDim + n), lh * next * headDim);
      values.set(this.valueData.subarray(lh * this.cap * headDim, lh * this.cap * headDim + n), lh * next * headDim);
    }
    this.buffers?.give({ keys: this.keyData, values: this.valueData, capacity: this.cap });
    this.keyData = keys;
    this.valueData = values;
    this.cap = next;
  }

  /** Marks `count` more positions as filled (the runner wrote them). */
  advance(count: number): void {
    this.assertLive();
    if (this.len + count > this.cap) throw new RangeError('KV cache: advance past capacity');
    this.len += count;
  }

  /**
   * Fills this (empty) cache with the first `length` positions of `source`
   * (prompt prefix caching: a request whose prompt starts with tokens another
   * generation already ran takes their keys/values instead of prefilling them).
   */
  copyPrefixFrom(source: SequenceKvCache, length: number): void {
    this.assertLive();
    if (this.residentSlot >= 0 || source.residentSlot >= 0) throw new Error('KV cache: resident sequences cannot copy a prefix on the host');
    if (this.len !== 0) throw new Error('KV cache: a prefix can only be copied into an empty cache');
    if (source.isReleased || !(length >= 0 && length <= source.length)) throw new RangeError(`KV cache: cannot copy ${length} positions of ${source.length}`);
    this.reserve(length);
    const { nLayers, nKvHeads, headDim } = this.layout;
    const n = length * headDim;
    for (let lh = 0; lh < nLayers * nKvHeads; lh++) {
      const from = lh * source.cap * headDim;
      const to = lh * this.cap * headDim;
      this.keyData.set(source.keyData.subarray(from, from + n), to);
      this.valueData.set(source.valueData.subarray(from, from + n), to);
    }
    this.len = length;
  }

  /** Bytes of host storage held (keys and values at the current capacity). */
  get byteLength(): number {
    return this.keyData.byteLength + this.valueData.byteLength;
  }

  /** Forgets positions from `length` on (e.g. to roll back a rejected suffix). */
  truncate(length: number): void {
    this.assertLive();
    if (length < 0 || length > this.len) throw new RangeError(`KV cache: cannot truncate ${this.len} to ${length}`);
    if (length < this.len) this.epochValue++;
    this.len = length;
  }

  /** Drops the storage; the cache must not be used afterwards. */
  release(): void {
    if (!this.released) {
      this.onRelease?.();
      this.buffers?.give({ keys: this.keyData, values: this.valueData, capacity: this.cap });
    }
    this.released = true;
    this.epochValue++;
    this.len = 0;
    this.cap = 0;
    this.keyData = new Float32Array(0);
    this.valueData = new Float32Array(0);
  }

  private assertLive(): void {
    if (this.released) throw new Error('KV cache used after release()');
  }
}
