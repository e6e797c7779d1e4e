/**
 * A user's n-gram cache: what their past prompts and outputs teach about their
 * next request, as ONE compact binary value (a Workers KV value per user).
 *
 * Layout (little-endian; read through a Uint32Array view, so the host must be
 * little-endian too, as x86, ARM and workerd are), queried in place:
 *   header, 32 bytes: magic u32 'SUC\x01' | version u16 (2) | maxOrder u8 | 0 u8 |
 *     vocabHint u32 | slotCount u32 | usedSlots u32 | merges u32 |
 *     bodyLength u32 | checksum u32 (FNV-1a over the header's first 28 bytes
 *     and the body, as 32-bit words)
 *   body: slotCount slots of 32 bytes, then the history (below).
 *   slots: an open-addressing hash table (linear
 *     probing from key % slotCount) from the hash of a context of 1..maxOrder
 *     tokens to its most frequent next tokens:
 *     key u32 (0 = empty) | tokens u32 × 4 | counts u16 × 4 | total u16 |
 *     order u8 | n u8
 *   Entries are sorted by count, descending. `total` counts every next token
 *   seen after the context (also those not kept), so count/total estimates a
 *   probability. Different contexts whose 32-bit hashes collide share a slot:
 *   a rare, harmless mis-prediction for a cache.
 *   history (version 2): u32 H, then H u32 words: the user's latest requests
 *     (prompt + output tokens), oldest first, separated by HISTORY_SEPARATOR.
 *     The n-gram table cannot tell a repeated request from one that shares
 *     its phrases (TinyStories' stories share many 4-grams); the tokens
 *     themselves can: a context that matches 24+ tokens of the history goes
 *     on as it did ~98% of the time on dev-sessions' greedy requests (see
 *     history-match.ts).
 *   Version 1 values (no history) still decode, with an empty history.
 *
 * Recency: every merge multiplies the old counts by `decay` (0.85) before adding
 * the new request at UNIT (64) per occurrence; entries that decay to zero go,
 * and when the table would exceed the size bound the entries with the lowest
 * totals are evicted (ties: the older entry stays). A merge is linear in the
 * value's slots plus the request's tokens, on reused typed arrays (~0.24 ms
 * at 64 KiB, ~0.8 ms at 256 KiB in Node on the 2-core dev machine, see
 * `sssd bench-drafting`; ~0.2 ms at 64 KiB inside workerd, see
 * docs/benchmarks.md). Anything that fails the structure or checksum checks
 * (the checksum only where asked: see decode's `verify`) decodes as an empty
 * cache, never an exception.
 */

const MAGIC = 0x01435553; // "SUC\x01" read as little-endian u32
const VERSION = 2;
/** Values of this version have no history section. */
const VERSION_NO_HISTORY = 1;
/** Separates requests in the history (never a token id). */
export const HISTORY_SEPARATOR = 0xffffffff;
/** Most tokens of history kept by default (8 KiB); at most a quarter of maxBytes. */
export const DEFAULT_USER_CACHE_HISTORY_TOKENS = 2048;
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
  /** Most tokens of recent requests kept verbatim (default 2048, at most a quarter of maxBytes; 0 keeps none). */
  historyTokens?: number;
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
  /** Latest requests' tokens, oldest first, HISTORY_SEPARATOR between requests (a view into `bytes`). */
  readonly history: Uint32Array;

  private constructor(bytes: Uint8Array, words: Uint32Array, slotCount: number, entryCount: number, maxOrder: number, vocabHint: number, merges: number, history: Uint32Array) {
    this.bytes = bytes;
    this.words = words;
    this.history = history;
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
   * version) or other-vocabulary values give an empty cache. `verify: false`
   * skips the checksum (the structure is still checked, so every query stays
   * in bounds): the edge drafts that way on the request path, where the
   * checksum was most of its CPU time, and a damaged value there only drafts
   * badly (the pool verifies every draft, and draftEdgeTrie never names a
   * token outside `vocabHint`); the merge, off that path, verifies. Without
   * `vocabSize` the checksum is checked all the same. `verify: 'deferred'`
   * decodes as verified but leaves the checksum to the caller (the merge
   * sums it with its new value's, in one loop: see sealMerged).
   */
  static decode(bytes: Uint8Array | null | undefined, opts: { vocabSize?: number; verify?: boolean | 'deferred' } = {}): UserCache {
    const empty = (): UserCache => new UserCache(new Uint8Array(0), new Uint32Array(0), 0, 0, 4, opts.vocabSize ?? 0, 0, new Uint32Array(0));
    let aligned: Uint8Array;
    let all: Uint32Array;
    let history: Uint32Array = new Uint32Array(0);
    try {
      // isView, not instanceof: values may come from another realm (workerd, vm).
      if (!bytes || !ArrayBuffer.isView(bytes) || bytes.BYTES_PER_ELEMENT !== 1) return empty();
      if (bytes.byteLength < HEADER_BYTES || bytes.byteLength % 4 !== 0) return empty();
      // Word views need 4-byte alignment; KV hands out fresh buffers, copy otherwise (a copy made by the
      // constructor: a Node Buffer's slice() is a view at the same offset, and such a value decoded as empty).
      aligned = bytes.byteOffset % 4 === 0 ? bytes : new Uint8Array(bytes);
      all = new Uint32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
      const version = all[1] & 0xffff;
      if (all[0] !== MAGIC || (version !== VERSION && version !== VERSION_NO_HISTORY)) return empty();
      const maxOrder = (all[1] >>> 16) & 0xff;
      const slotCount = all[3];
      const bodyLength = all[6];
      if (maxOrder < 1 || maxOrder > 8) return empty();
      if (aligned.byteLength !== HEADER_BYTES + bodyLength) return empty();
      const slotWords = slotCount * SLOT_WORDS;
      if (version === VERSION_NO_HISTORY) {
        if (bodyLength !== slotCount * SLOT_BYTES) return empty();
      } else {
        const at = HEADER_BYTES / 4 + slotWords;
        if (bodyLength < slotCount * SLOT_BYTES + 4 || bodyLength !== slotCount * SLOT_BYTES + 4 + all[at] * 4) return empty();
        history = all.subarray(at + 1, at + 1 + all[at]);
      }
      if (all[4] > slotCount) return empty();
    } catch {
      return empty();
    }
    // Unchecked only where the vocabulary is known, and then a value must
    // name it: draftEdgeTrie keeps the tokens it drafts inside it.
    const unchecked = opts.verify === false && opts.vocabSize !== undefined && opts.vocabSize > 0;
    // Outside the try: V8 (Node 20) ran the checksum's loop inlined in a try block at a quarter of its speed (~90 µs at 64 KiB, ~22 outside).
    if (!unchecked && opts.verify !== 'deferred' && checksum(all) !== all[7]) return empty();
    const vocabHint = all[2];
    if (opts.vocabSize && vocabHint && vocabHint !== opts.vocabSize) return empty();
    if (unchecked && vocabHint !== opts.vocabSize) return empty();
    const slotCount = all[3];
    const words = all.subarray(HEADER_BYTES / 4, HEADER_BYTES / 4 + slotCount * SLOT_WORDS);
    return new UserCache(aligned, words, slotCount, all[4], (all[1] >>> 16) & 0xff, vocabHint, all[5], history);
  }

  /** No n-gram entries (a value with history always has some). */
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
    let s = slotOf(key, slots);
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
 * Working set of a merge: entries stored densely in insertion order (old
 * entries first, in slot order, then the request's new contexts), WORK_WORDS
 * words each: key | order | n | total | WORK_TOP tokens | WORK_TOP counts
 * (u32, exact: decayed old counts and UNIT additions are integers), found
 * through a compact open-addressing index (power-of-two slots of key hashes
 * and entry numbers; keys are already mixed hashes). Module-level and reused.
 * It replaces a Map entry and ~200 bytes of Float64 per context plus a sort of
 * boxed numbers (~1 ms per merge at 64 KiB, ~5 ms at 256 KiB, GC spikes to
 * 50 ms): typed arrays only, dense and sequential.
 */
const WORK_TOP = 8;
const W_KEY = 0;
const W_ORDER = 1;
const W_N = 2;
const W_TOTAL = 3;
const W_TOKENS = 4;
const W_COUNTS = W_TOKENS + WORK_TOP;
const WORK_WORDS = W_COUNTS + WORK_TOP;
/** Scratch kept between merges up to this many entries (~3 MiB with the index); larger one-offs are dropped after use. */
const KEEP_SCRATCH_ENTRIES = 1 << 15;
let workEntries = new Uint32Array(0);
let indexKeys = new Uint32Array(0);
let indexEntries = new Int32Array(0);
let totalsScratch = new Uint32Array(0);
let workCount = 0;

/** Makes room for `entries` working entries and clears the index. */
function resetWork(entries: number): number {
  let slots = 16;
  while (slots < entries * 2) slots *= 2;
  if (workEntries.length < entries * WORK_WORDS) workEntries = new Uint32Array(entries * WORK_WORDS);
  if (indexKeys.length < slots) {
    indexKeys = new Uint32Array(slots);
    indexEntries = new Int32Array(slots);
  } else indexKeys.fill(0, 0, slots);
  workCount = 0;
  return slots - 1;
}

/** Offset of the working entry for (key, order), created empty if missing (sized so the index never fills). */
function workEntry(mask: number, key: number, order: number): number {
  const keys = indexKeys;
  const work = workEntries;
  let s = key & mask;
  for (;;) {
    const k = keys[s];
    if (k === 0) break;
    if (k === key) {
      const at = indexEntries[s] * WORK_WORDS;
      if (work[at + W_ORDER] === order) return at;
    }
    s = (s + 1) & mask;
  }
  const e = workCount++;
  keys[s] = key;
  indexEntries[s] = e;
  const at = e * WORK_WORDS;
  work[at + W_KEY] = key;
  work[at + W_ORDER] = order;
  work[at + W_N] = 0;
  work[at + W_TOTAL] = 0;
  return at;
}

/**
 * Adds `weight` for next token `token`. Candidates are kept sorted (count
 * descending, then token ascending), so the final encode just takes the first
 * USER_CACHE_TOP. When all WORK_TOP are taken, the newest replaces the weakest
 * unless that one is heavier (recency over history, as the format always did).
 */
function workAdd(work: Uint32Array, at: number, token: number, weight: number): void {
  work[at + W_TOTAL] += weight;
  const n = work[at + W_N];
  const t0 = at + W_TOKENS;
  const c0 = at + W_COUNTS;
  let i = 0;
  while (i < n && work[t0 + i] !== token) i++;
  let c: number;
  if (i < n) c = work[c0 + i] + weight;
  else if (n < WORK_TOP) {
    work[at + W_N] = n + 1;
    c = weight;
  } else {
    i = WORK_TOP - 1; // the weakest (sorted)
    if (work[c0 + i] > weight) return;
    c = weight;
  }
  // Move up past lighter candidates (and equal ones with a larger token).
  while (i > 0 && (work[c0 + i - 1] < c || (work[c0 + i - 1] === c && work[t0 + i - 1] > token))) {
    work[c0 + i] = work[c0 + i - 1];
    work[t0 + i] = work[t0 + i - 1];
    i--;
  }
  work[c0 + i] = c;
  work[t0 + i] = token;
}

/**
 * Old slot ow[base..]'s counts, decayed, copied into the empty working entry
 * at `at` as they lie, where workAdd would leave them just so: tokens
 * distinct and still in its order (count descending, then token ascending)
 * once decayed (decay makes ties of unequal counts, so that is checked).
 * False where not, the entry left empty for the caller to add them one by
 * one. Nearly every old entry takes the copy: a workAdd per count was a
 * fifth of a merge.
 */
function copyDecayed(work: Uint32Array, at: number, ow: Uint32Array, base: number, size: number, decay: number, oldTotal: number): boolean {
  const t0 = at + W_TOKENS;
  const c0 = at + W_COUNTS;
  let m = 0;
  let sum = 0;
  for (let i = 0; i < size; i++) {
    const cw = ow[base + 5 + (i >> 1)];
    const c = Math.floor((i & 1 ? cw >>> 16 : cw & 0xffff) * decay);
    if (c === 0) continue; // workAdd is not called for it
    const t = ow[base + 1 + i];
    if (m > 0) {
      const pc = work[c0 + m - 1];
      if (pc < c || (pc === c && work[t0 + m - 1] >= t)) return false;
      for (let j = 0; j < m; j++) if (work[t0 + j] === t) return false;
    }
    work[t0 + m] = t;
    work[c0 + m] = c;
    m++;
    sum += c;
  }
  work[at + W_N] = m;
  work[at + W_TOTAL] = Math.max(sum, oldTotal);
  return true;
}

/**
 * Merges a finished request (prompt + output tokens) into a stored value and
 * returns the new value, within `maxBytes`. A corrupt or missing `old` starts
 * from empty.
 *
 * Cost: linear in the old value's slots plus the request's tokens × maxOrder,
 * on reused typed arrays; the new value is its only allocation of any size.
 */
export function mergeIntoUserCache(old: Uint8Array | null, tokens: ArrayLike<number>, opts: UserCacheOptions = {}): Uint8Array {
  const maxBytes = Math.max(HEADER_BYTES + SLOT_BYTES * 4 + 4, opts.maxBytes ?? DEFAULT_USER_CACHE_MAX_BYTES);
  const decay = Math.min(1, Math.max(0, opts.decay ?? 0.85));
  // Its checksum is summed at the end, beside the new value's (sealMerged); a value that fails it is merged again as empty.
  const prev = UserCache.decode(old, { vocabSize: opts.vocabSize, verify: 'deferred' });
  const maxOrder = prev.isEmpty ? clampOrder(opts.maxOrder) : prev.maxOrder;
  const vocabHint = opts.vocabSize ?? prev.vocabHint;

  // Size the working table for every old entry plus every context of the request.
  let newContexts = 0;
  for (let o = 1; o <= maxOrder; o++) newContexts += Math.max(0, tokens.length - o);
  // By the old table's slots, not the count its header gives: a value whose count understates its
  // entries (checksum recomputed: it is no signature) filled the index, and the probing never ended.
  const mask = resetWork(prev.slotCount + newContexts + 1);
  const work = workEntries;

  // Old entries, decayed (recency: newer material outweighs older); read in place.
  const ow = prev.slotCount === 0 ? new Uint32Array(0) : new Uint32Array(prev.bytes.buffer, prev.bytes.byteOffset + HEADER_BYTES, prev.slotCount * SLOT_WORDS);
  for (let base = 0; base < ow.length; base += SLOT_WORDS) {
    const key = ow[base];
    if (key === 0) continue;
    const meta = ow[base + 7];
    const at = workEntry(mask, key, (meta >>> 16) & 0xff);
    const size = Math.min(USER_CACHE_TOP, meta >>> 24);
    const oldTotal = Math.floor((meta & 0xffff) * decay);
    // An entry still empty (always, but where a crafted value repeats a context): copied as it lies where it can be.
    if (work[at + W_N] === 0 && work[at + W_TOTAL] === 0 && copyDecayed(work, at, ow, base, size, decay, oldTotal)) continue;
    for (let i = 0; i < size; i++) {
      const cw = ow[base + 5 + (i >> 1)];
      const c = Math.floor((i & 1 ? cw >>> 16 : cw & 0xffff) * decay);
      if (c > 0) workAdd(work, at, ow[base + 1 + i], c);
    }
    work[at + W_TOTAL] = Math.max(work[at + W_TOTAL], oldTotal);
  }
  // The request, every context of 1..maxOrder tokens, at UNIT per occurrence.
  for (let i = 1; i < tokens.length; i++) {
    const next = tokens[i] >>> 0;
    for (let o = 1; o <= maxOrder && o <= i; o++) workAdd(work, workEntry(mask, contextKey(tokens, i - o, i), o), next, UNIT);
  }

  // Entries worth keeping (some next token left); past the bound, the highest totals.
  // Their totals gathered on the way (one pass over the working set), for the cut.
  const n = workCount;
  if (totalsScratch.length < n) totalsScratch = new Uint32Array(n);
  const totals = totalsScratch;
  let live = 0;
  let top = 0;
  for (let at = 0; at < n * WORK_WORDS; at += WORK_WORDS) {
    if (work[at + W_N] === 0) continue;
    const t = work[at + W_TOTAL];
    totals[live++] = t;
    if (t > top) top = t;
  }
  const historyTokens = historyLimit(opts.historyTokens, maxBytes);
  const historyFrom = historyKeptFrom(prev.history, tokens.length, historyTokens);
  const historyLength = mergedHistoryLength(prev.history, historyFrom, tokens.length, historyTokens);
  const maxSlots = Math.floor((maxBytes - HEADER_BYTES - 4 - historyLength * 4) / SLOT_BYTES);
  const maxEntries = Math.floor(maxSlots * MAX_LOAD);
  // Keep totals > cut, and up to `ties` entries whose total equals cut.
  let cut = -1;
  let ties = 0;
  const kept = Math.min(live, maxEntries);
  if (live > maxEntries) {
    cut = nthSmallest(totals, live, live - maxEntries, top);
    ties = maxEntries - selectedAbove;
  }

  const slotCount = kept === 0 ? 0 : Math.min(maxSlots, Math.ceil(kept / MAX_LOAD) + 1);
  const all = new Uint32Array(HEADER_BYTES / 4 + slotCount * SLOT_WORDS + 1 + historyLength);
  writeMergedHistory(all, HEADER_BYTES / 4 + slotCount * SLOT_WORDS, prev.history, historyFrom, historyLength, tokens);
  // In the order the entries came (old slots, then the request's new contexts): the slots they take depend on it.
  const body = HEADER_BYTES / 4;
  const bodyEnd = body + slotCount * SLOT_WORDS;
  const end = n * WORK_WORDS;
  let used = 0;
  for (let at = 0; at < end && used < kept; at += WORK_WORDS) {
    const m = work[at + W_N];
    if (m === 0) continue;
    const total0 = work[at + W_TOTAL];
    if (total0 <= cut) {
      if (total0 < cut || ties === 0) continue;
      ties--;
    }
    used++;
    const key = work[at + W_KEY];
    let out = body + slotOf(key, slotCount) * SLOT_WORDS;
    while (all[out] !== 0) out = out + SLOT_WORDS === bodyEnd ? body : out + SLOT_WORDS;
    all[out] = key;
    // Candidates are sorted already (workAdd): the first USER_CACHE_TOP are the top.
    const t0 = at + W_TOKENS;
    const c0 = at + W_COUNTS;
    const keep = m < USER_CACHE_TOP ? m : USER_CACHE_TOP;
    let total = total0;
    if (total0 <= 0xffff) {
      // Scale 1: the counts as they are (each at most the total; clamped all the same, as the scaled ones).
      for (let i = 0; i < keep; i++) {
        const c = Math.max(1, Math.min(0xffff, work[c0 + i]));
        all[out + 1 + i] = work[t0 + i];
        all[out + 5 + (i >> 1)] |= i & 1 ? c << 16 : c;
      }
    } else {
      const scale = 0xffff / total0;
      total = Math.min(0xffff, Math.round(total0 * scale));
      for (let i = 0; i < keep; i++) {
        const c = Math.max(1, Math.min(0xffff, Math.round(work[c0 + i] * scale)));
        all[out + 1 + i] = work[t0 + i];
        all[out + 5 + (i >> 1)] |= i & 1 ? c << 16 : c;
      }
    }
    all[out + 7] = (Math.max(total, 1) & 0xffff) | (work[at + W_ORDER] << 16) | (keep << 24);
  }
  if (workEntries.length > KEEP_SCRATCH_ENTRIES * WORK_WORDS) {
    workEntries = new Uint32Array(0);
    indexKeys = new Uint32Array(0);
    indexEntries = new Int32Array(0);
  }
  if (totalsScratch.length > KEEP_SCRATCH_ENTRIES) totalsScratch = new Uint32Array(0);
  if (!sealMerged(all, slotCount, used, maxOrder, vocabHint, prev.merges + 1, prev.bytes)) return mergeIntoUserCache(null, tokens, opts);
  return new Uint8Array(all.buffer);
}

/**
 * writeHeader for a merge's new value, and the old value's checksum checked
 * in the same loop (true where it holds, or there was no old value). FNV-1a
 * is one chain of multiplies, as long as the value, bound by their latency:
 * two chains side by side cost about what one does alone (~20 µs of a merge
 * at 64 KiB), where decode summed the old one first.
 */
function sealMerged(all: Uint32Array, slotCount: number, used: number, maxOrder: number, vocabHint: number, merges: number, oldBytes: Uint8Array): boolean {
  writeHeader(all, slotCount, used, maxOrder, vocabHint, merges, false);
  const b = new Uint32Array(oldBytes.buffer, oldBytes.byteOffset, oldBytes.byteLength >>> 2);
  let ha = 0x811c9dc5;
  let hb = 0x811c9dc5;
  const na = all.length;
  const nb = b.length;
  for (let i = 0; i < 7; i++) {
    ha = Math.imul(ha ^ all[i], 0x01000193);
    hb = Math.imul(hb ^ b[i], 0x01000193);
  }
  const both = Math.min(na, nb);
  let i = 8;
  for (; i < both; i++) {
    ha = Math.imul(ha ^ all[i], 0x01000193);
    hb = Math.imul(hb ^ b[i], 0x01000193);
  }
  for (let j = i; j < na; j++) ha = Math.imul(ha ^ all[j], 0x01000193);
  for (let j = i; j < nb; j++) hb = Math.imul(hb ^ b[j], 0x01000193);
  all[7] = ha >>> 0;
  return nb === 0 || hb >>> 0 === b[7];
}

/**
 * key % slots for a u32 key, without the fmod call V8 makes for a % of
 * numbers past 2^31 (~15 µs of a merge at 64 KiB). Exact: for a key below
 * 2^32 the float quotient never rounds up to the next integer.
 */
function slotOf(key: number, slots: number): number {
  return key - Math.floor(key / slots) * slots;
}

const selectBins = new Uint32Array(256);
/** How many of the values nthSmallest last looked at are greater than the one it returned. */
let selectedAbove = 0;

/**
 * The k-th smallest (from 0) of values[0..n), all at most `top`, and in
 * selectedAbove how many are greater: a radix select, a byte at a time from
 * the highest byte `top` uses (two passes for 16-bit totals). Linear; the typed-array sort it replaces took ~120 µs for
 * the ~2,700 totals of a merge at 64 KiB in Node.
 */
function nthSmallest(values: Uint32Array, n: number, k: number, top: number): number {
  const bins = selectBins;
  let prefix = 0;
  let known = 0; // mask of the bits of `prefix` fixed so far
  let rank = k;
  let above = 0;
  for (let shift = 24; shift >= 0; shift -= 8) {
    if (shift > 0 && top >>> shift === 0) continue; // every value's byte here is 0
    bins.fill(0);
    for (let i = 0; i < n; i++) {
      const v = values[i];
      if ((v & known) === prefix) bins[(v >>> shift) & 0xff]++;
    }
    let d = 0;
    while (rank >= bins[d]) rank -= bins[d++];
    for (let b = d + 1; b < 256; b++) above += bins[b]; // past the value from this byte on
    prefix |= d << shift;
    known |= 0xff << shift;
  }
  selectedAbove = above;
  return prefix >>> 0;
}

/** History tokens a value of `maxBytes` keeps: as asked, within a quarter of the value. */
function historyLimit(asked: number | undefined, maxBytes: number): number {
  const want = Math.max(0, Math.floor(asked ?? DEFAULT_USER_CACHE_HISTORY_TOKENS));
  // 2^20 at most: edge-trie.ts packs a history index into 23 bits.
  return Math.min(want, Math.floor(maxBytes / 16), 1 << 20);
}

/**
 * The merged history is the old one with the request appended, cut to `limit`
 * tokens by dropping whole requests from the front (a request longer than the
 * limit alone keeps its last `limit` tokens). Where the old one's kept part
 * starts (old.length: none of it).
 */
function historyKeptFrom(old: Uint32Array, n: number, limit: number): number {
  if (limit === 0 || n >= limit) return old.length;
  // Keep old[from..] with from just after a separator, so that old + separator + request fits.
  const added = n > 0 ? n + 1 : 0;
  const room = limit - added;
  let from = 0;
  if (old.length > room) {
    from = old.length;
    for (let i = Math.max(0, old.length - room - 1); i < old.length; i++) {
      if (old[i] === HISTORY_SEPARATOR) {
        from = i + 1;
        break;
      }
    }
  }
  return from;
}

/** Tokens of the merged history (historyKeptFrom). */
function mergedHistoryLength(old: Uint32Array, from: number, n: number, limit: number): number {
  if (limit === 0) return 0;
  if (n >= limit) return limit;
  const kept = old.length - from;
  return kept + (kept > 0 && n > 0 ? 1 : 0) + n;
}

/** Writes the merged history's length at all[at], then its tokens, straight into the new value. */
function writeMergedHistory(all: Uint32Array, at: number, old: Uint32Array, from: number, length: number, tokens: ArrayLike<number>): void {
  all[at] = length;
  const n = tokens.length;
  const kept = old.length - from;
  const take = Math.min(n, length); // the request's last `take` tokens
  const sep = length - kept - take;
  all.set(old.subarray(from), at + 1);
  if (sep) all[at + 1 + kept] = HISTORY_SEPARATOR;
  for (let i = 0, o = at + 1 + kept + sep; i < take; i++) all[o + i] = tokens[n - take + i] >>> 0;
}

function encodeSlots(words: Uint32Array, slotCount: number, used: number, maxOrder: number, vocabHint: number, merges: number): Uint8Array {
  const all = new Uint32Array(HEADER_BYTES / 4 + words.length + 1);
  all.set(words, HEADER_BYTES / 4);
  writeHeader(all, slotCount, used, maxOrder, vocabHint, merges);
  return new Uint8Array(all.buffer);
}

/** Fills the header words of a value whose body is in place, checksum last (unless the caller sums it). */
function writeHeader(all: Uint32Array, slotCount: number, used: number, maxOrder: number, vocabHint: number, merges: number, sum = true): void {
  all[0] = MAGIC;
  all[1] = VERSION | (maxOrder << 16);
  all[2] = vocabHint >>> 0;
  all[3] = slotCount;
  all[4] = used;
  all[5] = merges >>> 0;
  all[6] = all.length * 4 - HEADER_BYTES;
  if (sum) all[7] = checksum(all);
}

/**
 * FNV-1a over 32-bit words: header words 0..6, then the body. Two loops, not
 * one that tests for word 7 at every word: the same sum, ~22 against ~37 µs
 * at 64 KiB in Node.
 */
function checksum(all: Uint32Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < 7; i++) h = Math.imul(h ^ all[i], 0x01000193);
  const n = all.length;
  for (let i = 8; i < n; i++) h = Math.imul(h ^ all[i], 0x01000193);
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
