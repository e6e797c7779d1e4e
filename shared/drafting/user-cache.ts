/**
 * A user's n-gram cache: what their past prompts and outputs teach about their
 * next request, as ONE compact binary value (a Workers KV value per user).
 *
 * Layout (little-endian; read through a Uint32Array view, so the host must be
 * little-endian too, as x86, ARM and workerd are), queried in place:
 *   header, 32 bytes: magic u32 'SUC\x01' | version u16 | maxOrder u8 | 0 u8 |
 *     vocabHint u32 | slotCount u32 | usedSlots u32 | merges u32 |
 *     bodyLength u32 | checksum u32 (FNV-1a over the header's first 28 bytes
 *     and the body, as 32-bit words)
 *   body: slotCount slots of 32 bytes, an open-addressing hash table (linear
 *     probing from key % slotCount) from the hash of a context of 1..maxOrder
 *     tokens to its most frequent next tokens:
 *     key u32 (0 = empty) | tokens u32 × 4 | counts u16 × 4 | total u16 |
 *     order u8 | n u8
 *   Entries are sorted by count, descending. `total` counts every next token
 *   seen after the context (also those not kept), so count/total estimates a
 *   probability. Different contexts whose 32-bit hashes collide share a slot:
 *   a rare, harmless mis-prediction for a cache.
 *
 * Recency: every merge multiplies the old counts by `decay` (0.85) before adding
 * the new request at UNIT (64) per occurrence; entries that decay to zero go,
 * and when the table would exceed the size bound the entries with the lowest
 * totals are evicted. Anything that fails the structure or checksum checks
 * decodes as an empty cache, never an exception.
 */

const MAGIC = 0x01435553; // "SUC\x01" read as little-endian u32
const VERSION = 1;
const HEADER_BYTES = 32;
const SLOT_WORDS = 8;
const SLOT_BYTES = SLOT_WORDS * 4;
/** Next tokens kept per context. */
export const USER_CACHE_TOP = 4;
/** Weight of one occurrence in a fresh merge. */
export const USER_CACHE_UNIT = 64;
const UNIT = USER_CACHE_UNIT;
/** Fill at most this fraction of the slots (keeps probes short). */
const MAX_LOAD = 0.8;

export interface UserCacheOptions {
  /** Size bound of the encoded value, bytes (default 256 KiB). */
  maxBytes?: number;
  /** Longest context, tokens (1..8, default 4). */
  maxOrder?: number;
  /** Multiplier applied to old counts at each merge (default 0.85). */
  decay?: number;
  /** Vocabulary size of the model; recorded, and a cache for another vocabulary decodes as empty. */
  vocabSize?: number;
}

export const DEFAULT_USER_CACHE_MAX_BYTES = 256 * 1024;

export class UserCache {
  /** Words of the body (slot table); empty array for an empty cache. */
  private readonly words: Uint32Array;
  readonly slotCount: number;
  readonly entryCount: number;
  readonly maxOrder: number;
  readonly vocabHint: number;
  readonly merges: number;
  /** The encoded value (what goes to KV). */
  readonly bytes: Uint8Array;

  private constructor(bytes: Uint8Array, words: Uint32Array, slotCount: number, entryCount: number, maxOrder: number, vocabHint: number, merges: number) {
    this.bytes = bytes;
    this.words = words;
    this.slotCount = slotCount;
    this.entryCount = entryCount;
    this.maxOrder = maxOrder;
    this.vocabHint = vocabHint;
    this.merges = merges;
  }

  static empty(opts: UserCacheOptions = {}): UserCache {
    return UserCache.decode(encodeSlots(new Uint32Array(0), 0, 0, clampOrder(opts.maxOrder), opts.vocabSize ?? 0, 0));
  }

  /**
   * Views a stored value. Null, truncated, corrupt, foreign (other magic or
   * version) or other-vocabulary values give an empty cache.
   */
  static decode(bytes: Uint8Array | null | undefined, opts: { vocabSize?: number } = {}): UserCache {
    const empty = (): UserCache => new UserCache(new Uint8Array(0), new Uint32Array(0), 0, 0, 4, opts.vocabSize ?? 0, 0);
    try {
      // isView, not instanceof: values may come from another realm (workerd, vm).
      if (!bytes || !ArrayBuffer.isView(bytes) || bytes.BYTES_PER_ELEMENT !== 1) return empty();
      if (bytes.byteLength < HEADER_BYTES || bytes.byteLength % 4 !== 0) return empty();
      // Word views need 4-byte alignment; KV hands out fresh buffers, copy otherwise.
      const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
      const all = new Uint32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
      if (all[0] !== MAGIC || (all[1] & 0xffff) !== VERSION) return empty();
      const maxOrder = (all[1] >>> 16) & 0xff;
      const vocabHint = all[2];
      const slotCount = all[3];
      const used = all[4];
      const merges = all[5];
      const bodyLength = all[6];
      if (maxOrder < 1 || maxOrder > 8) return empty();
      if (bodyLength !== slotCount * SLOT_BYTES || aligned.byteLength !== HEADER_BYTES + bodyLength) return empty();
      if (used > slotCount) return empty();
      if (checksum(all) !== all[7]) return empty();
      if (opts.vocabSize && vocabHint && vocabHint !== opts.vocabSize) return empty();
      const words = all.subarray(HEADER_BYTES / 4);
      return new UserCache(aligned, words, slotCount, used, maxOrder, vocabHint, merges);
    } catch {
      return empty();
    }
  }

  get isEmpty(): boolean {
    return this.entryCount === 0;
  }

  /**
   * The slot holding the next-token counts of context[end-order .. end), or -1.
   * In place: one hash and a few probes, no allocation.
   */
  find(context: ArrayLike<number>, end: number, order: number): number {
    const slots = this.slotCount;
    if (slots === 0 || order < 1 || order > this.maxOrder || end < order) return -1;
    const key = contextKey(context, end - order, end);
    const w = this.words;
    let s = key % slots;
    for (let probes = 0; probes < slots; probes++) {
      const base = s * SLOT_WORDS;
      const k = w[base];
      if (k === 0) return -1;
      if (k === key && ((w[base + 7] >>> 16) & 0xff) === order) return s;
      s = s + 1 === slots ? 0 : s + 1;
    }
    return -1;
  }

  /** The slot's context hash (0 = empty slot). */
  slotKey(slot: number): number {
    return this.words[slot * SLOT_WORDS];
  }

  /** Length of the slot's context. */
  slotOrder(slot: number): number {
    return (this.words[slot * SLOT_WORDS + 7] >>> 16) & 0xff;
  }

  /** Number of next tokens kept in a slot (≤ USER_CACHE_TOP). */
  slotSize(slot: number): number {
    return Math.min(USER_CACHE_TOP, this.words[slot * SLOT_WORDS + 7] >>> 24);
  }

  slotToken(slot: number, i: number): number {
    return this.words[slot * SLOT_WORDS + 1 + i];
  }

  slotTokenCount(slot: number, i: number): number {
    const w = this.words[slot * SLOT_WORDS + 5 + (i >> 1)];
    return i & 1 ? w >>> 16 : w & 0xffff;
  }

  /** Total weight of next tokens after the slot's context (kept or not). */
  slotTotal(slot: number): number {
    return this.words[slot * SLOT_WORDS + 7] & 0xffff;
  }

  /** Next tokens after context[end-order..end) with their counts (diagnostics and tests; allocates). */
  nextTokens(context: ArrayLike<number>, order: number, end = context.length): Array<{ token: number; count: number }> {
    const slot = this.find(context, end, order);
    if (slot < 0) return [];
    const out: Array<{ token: number; count: number }> = [];
    for (let i = 0; i < this.slotSize(slot); i++) out.push({ token: this.slotToken(slot, i), count: this.slotTokenCount(slot, i) });
    return out;
  }
}

/**
 * Merges a finished request (prompt + output tokens) into a stored value and
 * returns the new value, within `maxBytes`. A corrupt or missing `old` starts
 * from empty.
 */
export function mergeIntoUserCache(old: Uint8Array | null, tokens: ArrayLike<number>, opts: UserCacheOptions = {}): Uint8Array {
  const maxBytes = Math.max(HEADER_BYTES + SLOT_BYTES * 4, opts.maxBytes ?? DEFAULT_USER_CACHE_MAX_BYTES);
  const decay = Math.min(1, Math.max(0, opts.decay ?? 0.85));
  const prev = UserCache.decode(old, { vocabSize: opts.vocabSize });
  const maxOrder = prev.isEmpty ? clampOrder(opts.maxOrder) : prev.maxOrder;
  const vocabHint = opts.vocabSize ?? prev.vocabHint;

  // Working set: entries keyed by (key, order); up to WORK_TOP next tokens each.
  const WORK_TOP = 8;
  const capacity = prev.entryCount + tokens.length * maxOrder + 1;
  const keys = new Uint32Array(capacity);
  const orders = new Uint8Array(capacity);
  const totals = new Float64Array(capacity);
  const nexts = new Int32Array(capacity * WORK_TOP).fill(-1);
  const counts = new Float64Array(capacity * WORK_TOP);
  const index = new Map<number, number>();
  let n = 0;
  const slotOf = (key: number, order: number): number => {
    const id = key * 16 + order; // exact in a double: key < 2^32
    let e = index.get(id);
    if (e === undefined) {
      e = n++;
      keys[e] = key;
      orders[e] = order;
      index.set(id, e);
    }
    return e;
  };
  const add = (e: number, token: number, weight: number): void => {
    totals[e] += weight;
    const base = e * WORK_TOP;
    let weakest = base;
    for (let i = base; i < base + WORK_TOP; i++) {
      if (nexts[i] === token) {
        counts[i] += weight;
        return;
      }
      if (nexts[i] < 0) {
        nexts[i] = token;
        counts[i] = weight;
        return;
      }
      if (counts[i] < counts[weakest]) weakest = i;
    }
    // Full: the newest observation replaces the weakest (recency over history).
    if (counts[weakest] <= weight) {
      nexts[weakest] = token;
      counts[weakest] = weight;
    }
  };

  for (let s = 0; s < prev.slotCount; s++) {
    const key = prev.slotKey(s);
    if (key === 0) continue;
    const e = slotOf(key, prev.slotOrder(s));
    const size = prev.slotSize(s);
    for (let i = 0; i < size; i++) {
      const c = Math.floor(prev.slotTokenCount(s, i) * decay);
      if (c > 0) add(e, prev.slotToken(s, i), c);
    }
    totals[e] = Math.max(totals[e], Math.floor(prev.slotTotal(s) * decay));
  }
  for (let i = 1; i < tokens.length; i++) {
    const next = tokens[i];
    for (let o = 1; o <= maxOrder && o <= i; o++) add(slotOf(contextKey(tokens, i - o, i), o), next, UNIT);
  }

  // Entries worth keeping, strongest first; the bound decides how many.
  const live: number[] = [];
  for (let e = 0; e < n; e++) if (counts[e * WORK_TOP] > 0) live.push(e);
  const maxSlots = Math.floor((maxBytes - HEADER_BYTES) / SLOT_BYTES);
  const maxEntries = Math.floor(maxSlots * MAX_LOAD);
  if (live.length > maxEntries) {
    live.sort((a, b) => totals[b] - totals[a]);
    live.length = maxEntries;
  }
  const slotCount = live.length === 0 ? 0 : Math.min(maxSlots, Math.ceil(live.length / MAX_LOAD) + 1);
  const words = new Uint32Array(slotCount * SLOT_WORDS);
  const order = new Int32Array(WORK_TOP);
  for (const e of live) {
    // Top next tokens by count; counts scaled so the total fits a u16.
    const base = e * WORK_TOP;
    let m = 0;
    for (let i = 0; i < WORK_TOP; i++) if (nexts[base + i] >= 0 && counts[base + i] > 0) order[m++] = base + i;
    // Insertion sort of ≤ WORK_TOP candidates: count descending, then token ascending.
    for (let i = 1; i < m; i++) {
      const x = order[i];
      let j = i - 1;
      while (j >= 0 && (counts[order[j]] < counts[x] || (counts[order[j]] === counts[x] && nexts[order[j]] > nexts[x]))) {
        order[j + 1] = order[j];
        j--;
      }
      order[j + 1] = x;
    }
    const sorted = order;
    const keep = Math.min(USER_CACHE_TOP, m);
    let total = Math.max(totals[e], 1);
    const scale = total > 0xffff ? 0xffff / total : 1;
    total = Math.min(0xffff, Math.round(total * scale));
    let s = keys[e] % slotCount;
    while (words[s * SLOT_WORDS] !== 0) s = s + 1 === slotCount ? 0 : s + 1;
    const at = s * SLOT_WORDS;
    words[at] = keys[e];
    let kept = 0;
    for (let i = 0; i < keep; i++) {
      const c = Math.max(1, Math.min(0xffff, Math.round(counts[sorted[i]] * scale)));
      words[at + 1 + i] = nexts[sorted[i]];
      words[at + 5 + (i >> 1)] |= i & 1 ? c << 16 : c;
      kept++;
    }
    words[at + 7] = (Math.max(total, 1) & 0xffff) | (orders[e] << 16) | (kept << 24);
  }
  return encodeSlots(words, slotCount, live.length, maxOrder, vocabHint, prev.merges + 1);
}

function encodeSlots(words: Uint32Array, slotCount: number, used: number, maxOrder: number, vocabHint: number, merges: number): Uint8Array {
  const all = new Uint32Array(HEADER_BYTES / 4 + words.length);
  all[0] = MAGIC;
  all[1] = VERSION | (maxOrder << 16);
  all[2] = vocabHint >>> 0;
  all[3] = slotCount;
  all[4] = used;
  all[5] = merges >>> 0;
  all[6] = slotCount * SLOT_BYTES;
  all.set(words, HEADER_BYTES / 4);
  all[7] = checksum(all);
  return new Uint8Array(all.buffer);
}

/** FNV-1a over 32-bit words: header words 0..6, then the body. */
function checksum(all: Uint32Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < all.length; i++) {
    if (i === 7) continue;
    h = Math.imul(h ^ all[i], 0x01000193);
  }
  return h >>> 0;
}

/** Hash of tokens[from..to) (the context), never 0 (0 marks an empty slot). */
export function contextKey(tokens: ArrayLike<number>, from: number, to: number): number {
  let h = 0x811c9dc5 ^ (to - from);
  for (let i = from; i < to; i++) {
    h = Math.imul(h ^ (tokens[i] & 0xffff), 0x01000193);
    h = Math.imul(h ^ (tokens[i] >>> 16), 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  return h >>> 0 || 1;
}

function clampOrder(order: number | undefined): number {
  return Math.max(1, Math.min(8, order ?? 4));
}
