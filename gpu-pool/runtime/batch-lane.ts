/**
 * One padded sub-batch of a step: builds the graph's inputs for its rows
 * (ids, positions = past + depth, tree mask, packed past) in grow-only
 * scratch arrays reused across steps.
 *
 * The packed past persists between steps: P is rounded up to a multiple of
 * PAST_BUCKET (extra positions are masked), and a row slot that still holds
 * the same sequence only gets its newly committed positions copied. So a
 * steady decode batch copies O(new tokens), not O(whole past), per step; the
 * full past is re-packed only when P crosses a bucket or rows change slots.
 *
 * A resident lane (keys/values on the device, resident-kv.ts) packs nothing:
 * it names each row's store rows and the past length to cut them to.
 */
import { Tensor } from 'onnxruntime-node';
import type { ModelConfig } from '../model/model-config';
import { MASKED, PAST_LENGTH, PAST_ROWS, pastKeyName, pastValueName } from '../graph/llama-graph';
import type { SequenceKvCache } from './kv-cache';
import type { StepRow } from './step-types';

/** Past length is padded to a multiple of this, so packed rows keep their stride for many steps. */
export const PAST_BUCKET = 32;

export type StepRows = ReadonlyArray<{ cache: SequenceKvCache; row: StepRow }>;

/** Floats per (layer, head) below which packPast copies with a loop rather than TypedArray.set. */
const SMALL_COPY = 256;

export class BatchLane {
  /** Rows and padded new tokens per row of the last prepare(). */
  batch = 0;
  tokensPerRow = 0;

  private ids64 = new BigInt64Array(0);
  private pos64 = new BigInt64Array(0);
  private mask = new Float32Array(0);
  private depth = new Int32Array(0);
  private pastK: Float32Array[] = [];
  private pastV: Float32Array[] = [];
  private packedPast = -1;
  private readonly slotCache: Array<SequenceKvCache | null> = [];
  private readonly slotLength: number[] = [];
  private readonly slotEpoch: number[] = [];
  /** Slot each cache was packed into (a cache may be stale here; slotCache is the truth). */
  private readonly slotOf = new WeakMap<SequenceKvCache, number>();
  private spillScratch = new Int32Array(0);
  private pastRows = new BigInt64Array(0);
  private readonly pastLength = new BigInt64Array(1);

  constructor(
    private readonly config: ModelConfig,
    /** Keys/values live in a device-side store (resident-kv.ts) instead of packed host arrays. */
    private readonly resident = false,
  ) {}

  /**
   * Orders `members[0..count)` into `out` so that each row keeps the slot it
   * held in this lane's packed past last step whenever that slot still exists:
   * a row that moves slots is re-packed whole (its entire past, every layer).
   * Without this, one finished generation shifted every later row one slot
   * down, and a row moving between the two passes of a split step (it drafted
   * this step, not the last) shifted both passes, so a 128-row batch re-copied
   * most of its past every step (15% of the pool's CPU time at 128 rows).
   */
  assignSlots(rows: StepRows, members: ArrayLike<number>, count: number, out: Int32Array): void {
    out.fill(-1, 0, count);
    let spill = 0;
    const spilled = this.spillScratch.length >= count ? this.spillScratch : (this.spillScratch = new Int32Array(Math.max(count, 2 * this.spillScratch.length)));
    for (let b = 0; b < count; b++) {
      const r = members[b];
      const prev = this.slotOf.get(rows[r].cache);
      if (prev !== undefined && prev < count && out[prev] === -1 && this.slotCache[prev] === rows[r].cache) out[prev] = r;
      else spilled[spill++] = r;
    }
    let next = 0;
    for (let i = 0; i < spill; i++) {
      while (out[next] !== -1) next++;
      out[next] = spilled[i];
    }
  }

  /**
   * Graph inputs for rows[members[0..count)], in that order, each row padded
   * to at least `minTokens` new tokens (so two lanes can share one pass).
   * Throws on malformed rows before touching any state.
   */
  prepare(rows: StepRows, members: ArrayLike<number>, count: number, minTokens = 0): Record<string, Tensor> {
    const { nLayers, nKvHeads, headDim: hd, vocabSize, contextLength } = this.config;
    const B = count;
    let T = minTokens;
    let maxPast = 0;
    for (let b = 0; b < B; b++) {
      const { cache, row } = rows[members[b]];
      T = Math.max(T, row.tokens.length);
      maxPast = Math.max(maxPast, cache.length);
    }
    let P = Math.ceil(maxPast / PAST_BUCKET) * PAST_BUCKET;
    // When the longest row leaves, keep the wider stride for a while (up to
    // two buckets of masked slack): changing P re-packs every row's past.
    if (this.packedPast > P && this.packedPast - P <= 2 * PAST_BUCKET) P = this.packedPast;
    // Resident: never an empty past (a zero-length slice of the store), never past the store's length.
    if (this.resident) P = Math.min(contextLength, Math.max(P, PAST_BUCKET));
    const S = P + T;

    if (this.ids64.length < B * T) {
      this.ids64 = new BigInt64Array(Math.max(B * T, 2 * this.ids64.length));
      this.pos64 = new BigInt64Array(this.ids64.length);
    }
    if (this.mask.length < B * T * S) this.mask = new Float32Array(Math.max(B * T * S, 2 * this.mask.length));
    if (this.depth.length < T) this.depth = new Int32Array(Math.max(T, 2 * this.depth.length));
    // Little-endian int64 written as (low, high = 0) int32 pairs: no BigInt per token.
    const ids = new Int32Array(this.ids64.buffer, 0, 2 * B * T);
    const pos = new Int32Array(this.pos64.buffer, 0, 2 * B * T);
    const mask = this.mask.subarray(0, B * T * S);
    const depth = this.depth;
    ids.fill(0);
    pos.fill(0);
    mask.fill(MASKED);

    for (let b = 0; b < B; b++) {
      const { cache, row } = rows[members[b]];
      const past = cache.length;
      const n = row.tokens.length;
      for (let i = 0; i < T; i++) {
        const at = b * T + i;
        const m = at * S; // mask row of (b, i)
        if (i >= n) {
          // Padding: sees only itself, so its softmax stays finite.
          pos[2 * at] = past;
          mask[m + P + i] = 0;
          continue;
        }
        const tok = row.tokens[i];
        if (!(tok >= 0 && tok < vocabSize) || !Number.isInteger(tok)) throw new RangeError(`token id ${tok} outside the vocabulary (0..${vocabSize - 1})`);
        const parent = row.parents[i];
        if (i === 0 ? parent !== -1 : !(parent >= 0 && parent < i)) throw new RangeError(`bad parent ${parent} for tree node ${i}`);
        depth[i] = i === 0 ? 0 : depth[parent] + 1;
        const p = past + depth[i];
        if (p >= contextLength) throw new RangeError(`position ${p} exceeds the context length ${contextLength}`);
        ids[2 * at] = tok;
        pos[2 * at] = p;
        mask.fill(0, m, m + past);
        // Ancestors: the parent's tree columns, plus itself.
        if (i > 0) {
          const pm = (b * T + parent) * S;
          mask.copyWithin(m + P, pm + P, pm + P + parent + 1);
        }
        mask[m + P + i] = 0;
      }
    }

    const feeds: Record<string, Tensor> = {
      input_ids: new Tensor('int64', this.ids64.subarray(0, B * T), [B, T]),
      position_ids: new Tensor('int64', this.pos64.subarray(0, B * T), [B, T]),
      attention_mask: new Tensor('float32', mask, [B, 1, T, S]),
    };
    if (this.resident) {
      // Store rows layer-major: [keys l0, values l0, keys l1, …] × B rows.
      const perSlot = 2 * nLayers;
      if (this.pastRows.length < perSlot * B) this.pastRows = new BigInt64Array(Math.max(perSlot * B, 2 * this.pastRows.length));
      const rowIds = new Int32Array(this.pastRows.buffer, 0, 2 * perSlot * B);
      for (let b = 0; b < B; b++) {
        const slot = rows[members[b]].cache.residentSlot;
        if (slot < 1) throw new Error('a resident step needs sequences from the resident store');
        for (let j = 0; j < perSlot; j++) {
          rowIds[2 * (j * B + b)] = slot * perSlot + j;
          rowIds[2 * (j * B + b) + 1] = 0;
        }
      }
      feeds[PAST_ROWS] = new Tensor('int64', this.pastRows.subarray(0, perSlot * B), [perSlot * B]);
      this.pastLength[0] = BigInt(P);
      feeds[PAST_LENGTH] = new Tensor('int64', this.pastLength, [1]);
    } else {
      this.packPast(rows, members, B, P);
      const used = B * nKvHeads * P * hd;
      for (let l = 0; l < nLayers; l++) {
        feeds[pastKeyName(l)] = new Tensor('float32', this.pastK[l].subarray(0, used), [B, nKvHeads, P, hd]);
        feeds[pastValueName(l)] = new Tensor('float32', this.pastV[l].subarray(0, used), [B, nKvHeads, P, hd]);
      }
    }
    this.batch = B;
    this.tokensPerRow = T;
    return feeds;
  }

  /** Brings the persistent packed past up to date for these rows with past length P (bucketed). */
  private packPast(rows: StepRows, members: ArrayLike<number>, B: number, P: number): void {
    const { nLayers, nKvHeads, headDim: hd } = this.config;
    if (P !== this.packedPast) {
      // New stride: every packed row is void.
      this.packedPast = P;
      this.slotCache.fill(null);
    }
    const needed = B * nKvHeads * P * hd;
    if (this.pastK.length === 0 || this.pastK[0].length < needed) {
      // Grow (doubling), keeping packed rows: the stride is unchanged.
      const size = Math.max(needed, 2 * (this.pastK[0]?.length ?? 0));
      const grow = (old: Float32Array | undefined): Float32Array => {
        const next = new Float32Array(size);
        if (old) next.set(old);
        return next;
      };
      this.pastK = Array.from({ length: nLayers }, (_, l) => grow(this.pastK[l]));
      this.pastV = Array.from({ length: nLayers }, (_, l) => grow(this.pastV[l]));
    }
    while (this.slotCache.length < B) {
      this.slotCache.push(null);
      this.slotLength.push(0);
      this.slotEpoch.push(0);
    }
    const rowStride = P * hd; // one (row, kv head) block
    for (let b = 0; b < B; b++) {
      const cache = rows[members[b]].cache;
      const len = cache.length;
      let from = 0;
      if (this.slotCache[b] === cache && this.slotEpoch[b] === cache.epoch && this.slotLength[b] <= len) from = this.slotLength[b];
      this.slotCache[b] = cache;
      this.slotOf.set(cache, b);
      this.slotEpoch[b] = cache.epoch;
      this.slotLength[b] = len;
      if (from === len) continue;
      const cap = cache.capacity * hd;
      const keys = cache.keys;
      const values = cache.values;
      const n = (len - from) * hd;
      for (let l = 0; l < nLayers; l++) {
        const pk = this.pastK[l];
        const pv = this.pastV[l];
        for (let h = 0; h < nKvHeads; h++) {
          const src = (l * nKvHeads + h) * cap + from * hd;
          const dst = (b * nKvHeads + h) * rowStride + from * hd;
          if (n <= SMALL_COPY) {
            // A step's few new positions: a loop, not two subarray views per
            // (layer, head) (80 objects a row for stories260K, every step).
            for (let i = 0; i < n; i++) {
              pk[dst + i] = keys[src + i];
              pv[dst + i] = values[src + i];
            }
          } else {
            pk.set(keys.subarray(src, src + n), dst);
            pv.set(values.subarray(src, src + n), dst);
          }
        }
      }
    }
  }
}
