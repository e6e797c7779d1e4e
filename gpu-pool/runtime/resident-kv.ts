/**
 * Keys/values kept on the device (GPU providers): the store that the resident
 * graph takes and hands back every pass (llama-graph.ts, `residentKv`), the
 * slots sequences hold in it, and the commits of accepted tokens, which the
 * next pass applies before it reads the past.
 *
 * Why: with the past packed in host memory, every pass uploaded all of it.
 * On an H200 (WebGPU, stories260K) a pass of 128 rows at past 256 took 22 ms
 * fed from the host and 4.5 ms with the same past already on the GPU; 32
 * rows of 4 tokens, 9.6 against 3.9 ms.
 *
 * Slot 0 is never handed out: a pass with nothing to commit scatters its one
 * dummy row there. A released slot is reused at once: the previous owner's
 * pending commits may still land in it, but only at positions the new owner
 * has not reached yet, which the mask hides until its own commits overwrite
 * them. The store starts with INITIAL_SLOTS slots and doubles when none is
 * free: before the next pass, a small graph of its own pads it with zero
 * rows on the device (buildKvStoreGrowGraph). Doubling stops at `maxSlots`
 * (the pool's most sequences at once, plus slot 0), past which it grows one
 * slot at a time: every slot is a whole context of keys/values, and every
 * pass copies the store, so 128 sequences doubled to 256 slots held twice the
 * memory they needed.
 */
import { Tensor } from 'onnxruntime-node';
import { COMMIT_DST, COMMIT_SRC, GROW_PADS, KV_STORE, KV_STORE_OUT, NEW_KV, PREV_NEW_KV } from '../graph/llama-graph';
import type { ModelConfig } from '../model/model-config';

/** Runs the store-growth graph (buildKvStoreGrowGraph) on the runner's provider. */
export type GrowStore = (feeds: Record<string, Tensor>) => Promise<Tensor>;

const INITIAL_SLOTS = 16;

export class ResidentKvStore {
  /** Store rows per slot: keys and values of every layer. */
  private readonly rowsPerSlot: number;
  /** Floats per store row: [kvH, C, hd]. */
  private readonly rowFloats: number;
  private slots = INITIAL_SLOTS;
  private readonly free: number[] = [];
  /** The store as the next pass takes it; null until the first pass makes it. */
  private store: Tensor | null = null;
  private storeSlots = 0;
  /** The last pass's new_kv, which pending commits point into; null before the first pass. */
  private newKv: Tensor | null = null;
  private readonly noNewKv: Tensor;
  private pass = 0;
  private commits = 0;
  private src = new BigInt64Array(256);
  private dst = new BigInt64Array(3 * 256);
  // Little-endian int64 written as (low, high = 0) int32 pairs, as the lane writes ids: no BigInt per commit.
  private src32 = new Int32Array(this.src.buffer);
  private dst32 = new Int32Array(this.dst.buffer);
  private disposed = false;

  constructor(
    private readonly config: ModelConfig,
    private readonly grow: GrowStore,
    /** Slots (slot 0 included) past which the store grows one slot at a time instead of doubling. */
    private readonly maxSlots = Infinity,
  ) {
    if (!(maxSlots >= 2)) throw new RangeError(`a resident store needs at least 2 slots (slot 0 and one sequence), not ${maxSlots}`);
    this.rowsPerSlot = 2 * config.nLayers;
    this.rowFloats = config.nKvHeads * config.contextLength * config.headDim;
    this.slots = Math.min(INITIAL_SLOTS, maxSlots);
    for (let s = this.slots - 1; s >= 1; s--) this.free.push(s);
    this.noNewKv = new Tensor('float32', new Float32Array(config.nKvHeads * config.headDim), [1, config.nKvHeads, 1, config.headDim]);
  }

  /** Number of the pass whose results commits go to (bumped by each completed pass). */
  get passNumber(): number {
    return this.pass;
  }

  /** Slots the store holds (slot 0 included), for tests and logs. */
  get capacity(): number {
    return this.slots;
  }

  /** A free slot, growing the store (at the next pass) when none is left. */
  allocate(): { slot: number; onRelease: () => void } {
    if (this.free.length === 0) {
      const grown = Math.max(this.slots + 1, Math.min(this.slots * 2, this.maxSlots));
      for (let s = grown - 1; s >= this.slots; s--) this.free.push(s);
      this.slots = grown;
    }
    const slot = this.free.pop()!;
    return { slot, onRelease: () => this.free.push(slot) };
  }

  /**
   * Records that token `token` of row `row` of the last pass (B rows of T
   * tokens) is kept at `position` of slot `slot`; the next pass writes it.
   */
  commit(pass: number, row: number, batch: number, tokens: number, slot: number, token: number, position: number): void {
    if (pass !== this.pass) throw new Error('commit on a step result after the next step has run (resident keys/values)');
    const { nKvHeads: kvH } = this.config;
    const need = this.commits + this.rowsPerSlot * kvH;
    if (need > this.src.length) {
      const grow = (old: BigInt64Array<ArrayBuffer>, n: number): BigInt64Array<ArrayBuffer> => {
        const next = new BigInt64Array(n);
        next.set(old);
        return next;
      };
      const n = Math.max(need, 2 * this.src.length);
      this.src = grow(this.src, n);
      this.dst = grow(this.dst, 3 * n);
      this.src32 = new Int32Array(this.src.buffer);
      this.dst32 = new Int32Array(this.dst.buffer);
    }
    const src = this.src32;
    const dst = this.dst32;
    for (let j = 0; j < this.rowsPerSlot; j++) {
      for (let h = 0; h < kvH; h++) {
        const c = this.commits++;
        src[2 * c] = ((j * batch + row) * kvH + h) * tokens + token;
        src[2 * c + 1] = 0;
        dst[6 * c] = slot * this.rowsPerSlot + j;
        dst[6 * c + 1] = 0;
        dst[6 * c + 2] = h;
        dst[6 * c + 3] = 0;
        dst[6 * c + 4] = position;
        dst[6 * c + 5] = 0;
      }
    }
  }

  /** The store and commit inputs of the next pass (growing the store first if slots were added). */
  async feeds(): Promise<Record<string, Tensor>> {
    if (this.disposed) throw new Error('resident KV store used after dispose');
    const { nKvHeads: kvH, contextLength: C, headDim: hd } = this.config;
    if (this.store === null) {
      this.store = new Tensor('float32', new Float32Array(this.slots * this.rowsPerSlot * this.rowFloats), [this.slots * this.rowsPerSlot, kvH, C, hd]);
      this.storeSlots = this.slots;
    } else if (this.storeSlots < this.slots) {
      const extra = (this.slots - this.storeSlots) * this.rowsPerSlot;
      const pads = new Tensor('int64', BigInt64Array.of(0n, 0n, 0n, 0n, BigInt(extra), 0n, 0n, 0n), [8]);
      const grown = await this.grow({ [KV_STORE]: this.store, [GROW_PADS]: pads });
      this.store.dispose();
      this.store = grown;
      this.storeSlots = this.slots;
    }
    const n = Math.max(1, this.commits);
    if (this.commits === 0) {
      // One dummy row into slot 0, which no sequence holds.
      this.src[0] = 0n;
      this.dst.fill(0n, 0, 3);
    }
    return {
      [KV_STORE]: this.store,
      [PREV_NEW_KV]: this.newKv ?? this.noNewKv,
      [COMMIT_SRC]: new Tensor('int64', this.src.subarray(0, n), [n]),
      [COMMIT_DST]: new Tensor('int64', this.dst.subarray(0, 3 * n), [n, 3]),
    };
  }

  /** Takes a finished pass's store and new keys/values; the commits it applied are done. */
  afterPass(outputs: Record<string, Tensor>): void {
    const store = outputs[KV_STORE_OUT];
    const newKv = outputs[NEW_KV];
    if (!store || !newKv) throw new Error('the resident graph returned no key/value store');
    this.store?.dispose();
    this.newKv?.dispose();
    this.store = store;
    this.newKv = newKv;
    this.commits = 0;
    this.pass++;
  }

  dispose(): void {
    this.disposed = true;
    this.store?.dispose();
    this.newKv?.dispose();
    this.store = null;
    this.newKv = null;
  }
}
