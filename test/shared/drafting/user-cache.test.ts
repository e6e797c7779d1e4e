import { describe, expect, it } from 'vitest';
import { HISTORY_SEPARATOR, USER_CACHE_TOP, USER_CACHE_UNIT, UserCache, contextKey, mergeIntoUserCache } from '../../../shared/drafting/user-cache';
import { seededRandom, tokenStream } from './random-tokens';
import { draftEdgeTrie, edgeTrieTokenOutside } from '../../../shared/drafting/edge-trie';

/** Brute force: for each context of length 1..maxOrder, counts of the next token. */
function bruteNext(tokens: number[], order: number): Map<string, Map<number, number>> {
  const m = new Map<string, Map<number, number>>();
  for (let i = order; i < tokens.length; i++) {
    const k = tokens.slice(i - order, i).join(',');
    const inner = m.get(k) ?? new Map<number, number>();
    inner.set(tokens[i], (inner.get(tokens[i]) ?? 0) + 1);
    m.set(k, inner);
  }
  return m;
}

/** Decoded contents: "key/order" -> "total|token:count,...". */
function contents(bytes: Uint8Array): Map<string, string> {
  const c = UserCache.decode(bytes);
  const m = new Map<string, string>();
  for (let s = 0; s < c.slotCount; s++) {
    if (c.slotKey(s) === 0) continue;
    const t: string[] = [];
    for (let i = 0; i < c.slotSize(s); i++) t.push(`${c.slotToken(s, i)}:${c.slotTokenCount(s, i)}`);
    m.set(`${c.slotKey(s)}/${c.slotOrder(s)}`, `${c.slotTotal(s)}|${t.join(',')}`);
  }
  return m;
}

/**
 * The merge as first written (Map + Float64 working set + stable sort by
 * total), kept as the reference the typed-array merge must reproduce.
 */
function referenceMerge(old: Uint8Array | null, tokens: number[], maxBytes: number, historyTokens: number, decay = 0.85): Map<string, string> {
  const prev = UserCache.decode(old);
  const maxOrder = prev.isEmpty ? 4 : prev.maxOrder;
  const entries = new Map<string, { key: number; order: number; total: number; next: Array<[number, number]> }>();
  const entry = (key: number, order: number) => {
    const id = `${key}/${order}`;
    let e = entries.get(id);
    if (!e) entries.set(id, (e = { key, order, total: 0, next: [] }));
    return e;
  };
  const add = (e: { total: number; next: Array<[number, number]> }, token: number, w: number): void => {
    e.total += w;
    const hit = e.next.find((x) => x[0] === token);
    if (hit) hit[1] += w;
    else if (e.next.length < 8) e.next.push([token, w]);
    else {
      let weakest = 0;
      for (let i = 1; i < 8; i++) if (e.next[i][1] < e.next[weakest][1]) weakest = i;
      if (e.next[weakest][1] <= w) e.next[weakest] = [token, w];
    }
  };
  for (let s = 0; s < prev.slotCount; s++) {
    if (prev.slotKey(s) === 0) continue;
    const e = entry(prev.slotKey(s), prev.slotOrder(s));
    for (let i = 0; i < prev.slotSize(s); i++) {
      const c = Math.floor(prev.slotTokenCount(s, i) * decay);
      if (c > 0) add(e, prev.slotToken(s, i), c);
    }
    e.total = Math.max(e.total, Math.floor(prev.slotTotal(s) * decay));
  }
  for (let i = 1; i < tokens.length; i++) for (let o = 1; o <= maxOrder && o <= i; o++) add(entry(contextKey(tokens, i - o, i), o), tokens[i], USER_CACHE_UNIT);
  let live = [...entries.values()].filter((e) => e.next.length > 0);
  // The history (its length word and tokens) shares the bound with the slots.
  const maxEntries = Math.floor(Math.floor((maxBytes - 32 - 4 - 4 * historyTokens) / 32) * 0.8);
  if (live.length > maxEntries) live = live.sort((a, b) => b.total - a.total).slice(0, maxEntries);
  const out = new Map<string, string>();
  for (const e of live) {
    const sorted = [...e.next].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, USER_CACHE_TOP);
    const total0 = Math.max(e.total, 1);
    const scale = total0 > 0xffff ? 0xffff / total0 : 1;
    const total = Math.min(0xffff, Math.round(total0 * scale));
    const t = sorted.map(([tok, c]) => `${tok}:${Math.max(1, Math.min(0xffff, Math.round(c * scale)))}`);
    out.set(`${e.key}/${e.order}`, `${Math.max(total, 1)}|${t.join(',')}`);
  }
  return out;
}

describe('UserCache', () => {
  it('answers in place with the same next-token counts as a brute-force n-gram count', () => {
    const rand = seededRandom(11);
    const tokens = tokenStream(rand, 600, 6); // ≤ 6 followers per context: none dropped
    const bytes = mergeIntoUserCache(null, tokens, { decay: 1 });
    const cache = UserCache.decode(bytes);
    expect(cache.isEmpty).toBe(false);
    for (let order = 1; order <= 4; order++) {
      for (const [k, followers] of bruteNext(tokens, order)) {
        const ctx = k.split(',').map(Number);
        const slot = cache.find(ctx, ctx.length, order);
        expect(slot).toBeGreaterThanOrEqual(0);
        const want = [...followers.entries()]
          .sort((a, b) => b[1] - a[1] || a[0] - b[0])
          .slice(0, USER_CACHE_TOP)
          .map(([token, c]) => ({ token, count: c * USER_CACHE_UNIT }));
        expect(cache.nextTokens(ctx, order)).toEqual(want);
        const total = [...followers.values()].reduce((a, b) => a + b, 0);
        expect(cache.slotTotal(slot)).toBe(total * USER_CACHE_UNIT);
      }
    }
    expect(cache.find([99, 98], 2, 2)).toBe(-1);
  });

  it('round-trips: a decoded value re-encodes to the same bytes and merges keep old knowledge', () => {
    const a = mergeIntoUserCache(null, [1, 10, 11, 12, 13]);
    expect(UserCache.decode(a).bytes).toEqual(a);
    expect(UserCache.decode(a.slice()).nextTokens([11, 12], 2)).toEqual([{ token: 13, count: USER_CACHE_UNIT }]);
    const b = mergeIntoUserCache(a, [1, 20, 21]);
    const cb = UserCache.decode(b);
    expect(cb.merges).toBe(2);
    expect(cb.nextTokens([20], 1)).toEqual([{ token: 21, count: USER_CACHE_UNIT }]);
    // Older material decays: 13 after (11,12) now weighs less than a fresh occurrence.
    const old = cb.nextTokens([11, 12], 2);
    expect(old).toHaveLength(1);
    expect(old[0].count).toBeLessThan(USER_CACHE_UNIT);
  });

  it('decodes a value handed over at an unaligned offset, a Node Buffer view included (its slice() copies nothing)', () => {
    const value = mergeIntoUserCache(null, tokenStream(seededRandom(5), 200, 30));
    const entries = UserCache.decode(value).entryCount;
    expect(entries).toBeGreaterThan(50);
    const plain = new Uint8Array(value.byteLength + 1);
    plain.set(value, 1);
    const buffer = Buffer.alloc(value.byteLength + 1);
    buffer.set(value, 1);
    for (const view of [plain.subarray(1), buffer.subarray(1)]) {
      expect(UserCache.decode(view).entryCount).toBe(entries);
      // A merge into it keeps what it held.
      expect(UserCache.decode(mergeIntoUserCache(view, [1, 2])).entryCount).toBeGreaterThanOrEqual(entries);
    }
  });

  it('newer material outweighs older for the same context', () => {
    let bytes: Uint8Array | null = null;
    for (let i = 0; i < 3; i++) bytes = mergeIntoUserCache(bytes, [1, 7, 8, 9]);
    bytes = mergeIntoUserCache(bytes, [1, 7, 8, 4]);
    bytes = mergeIntoUserCache(bytes, [1, 7, 8, 4]);
    bytes = mergeIntoUserCache(bytes, [1, 7, 8, 4]);
    expect(UserCache.decode(bytes).nextTokens([7, 8], 2)[0].token).toBe(4);
  });

  it('stays within its size bound under 10,000 merges', () => {
    const rand = seededRandom(5);
    const maxBytes = 4096;
    let bytes: Uint8Array | null = null;
    let peak = 0;
    for (let i = 0; i < 10_000; i++) {
      bytes = mergeIntoUserCache(bytes, tokenStream(rand, 24, 300), { maxBytes });
      peak = Math.max(peak, bytes.length);
    }
    expect(peak).toBeLessThanOrEqual(maxBytes);
    const cache = UserCache.decode(bytes);
    expect(cache.merges).toBe(10_000);
    expect(cache.entryCount).toBeGreaterThan(0);
  });

  it('treats truncated, corrupted, random and foreign values as empty, never throwing', () => {
    const good = mergeIntoUserCache(null, tokenStream(seededRandom(2), 200, 30));
    const rand = seededRandom(9);
    const bad: Array<Uint8Array | null> = [null, new Uint8Array(0), new TextEncoder().encode('{"hello":"world"}')];
    for (let i = 0; i < 50; i++) bad.push(good.subarray(0, Math.floor(rand() * good.length)));
    for (let i = 0; i < 50; i++) {
      const c = good.slice();
      c[Math.floor(rand() * c.length)] ^= 1 + Math.floor(rand() * 255);
      bad.push(c);
    }
    for (let i = 0; i < 50; i++) bad.push(Uint8Array.from({ length: Math.floor(rand() * 2000) }, () => Math.floor(rand() * 256)));
    // Odd alignment of a good value still decodes.
    const shifted = new Uint8Array(good.length + 1);
    shifted.set(good, 1);
    expect(UserCache.decode(shifted.subarray(1)).entryCount).toBe(UserCache.decode(good).entryCount);
    for (const b of bad) {
      const c = UserCache.decode(b);
      expect(c.isEmpty).toBe(true);
      expect(c.find([1, 2], 2, 2)).toBe(-1);
      // Merging into garbage starts afresh.
      expect(UserCache.decode(mergeIntoUserCache(b, [1, 2, 3])).nextTokens([2], 1)).toEqual([{ token: 3, count: USER_CACHE_UNIT }]);
    }
  });

  it('merges into a value whose header understates its entries (its checksum made again) without hanging, keeping them', () => {
    const tokens = tokenStream(seededRandom(4), 300, 40);
    const forged = mergeIntoUserCache(null, tokens).slice();
    const all = new Uint32Array(forged.buffer, forged.byteOffset, forged.byteLength / 4);
    all[4] = 0; // usedSlots
    // The checksum is FNV-1a over every word but itself: anyone can make it again.
    let h = 0x811c9dc5;
    for (let i = 0; i < all.length; i++) if (i !== 7) h = Math.imul(h ^ all[i], 0x01000193);
    all[7] = h >>> 0;
    expect(UserCache.decode(forged).isEmpty).toBe(true); // decodes, as a table with nothing in it
    const merged = UserCache.decode(mergeIntoUserCache(forged, [7, 8, 9]));
    expect(merged.nextTokens([8], 1)[0]?.token).toBe(9);
    // What the old table held survives the merge.
    expect(merged.nextTokens([tokens[0]], 1).length).toBeGreaterThan(0);
  });

  it('decodes damaged values unchecked for drafting, in bounds and inside the vocabulary; the merge still checks them', () => {
    const vocab = 512;
    const good = mergeIntoUserCache(null, tokenStream(seededRandom(3), 300, 40), { vocabSize: vocab });
    const rand = seededRandom(11);
    let damagedButDrafted = 0;
    for (let i = 0; i < 200; i++) {
      const c = good.slice();
      // Damage in the body (the header's structure is what the unchecked decode still checks).
      for (let k = 0; k < 4; k++) c[32 + Math.floor(rand() * (c.length - 32))] = Math.floor(rand() * 256);
      expect(UserCache.decode(c, { vocabSize: vocab }).isEmpty).toBe(true);
      const unchecked = UserCache.decode(c, { vocabSize: vocab, verify: false });
      if (!unchecked.isEmpty) damagedButDrafted++;
      const trie = draftEdgeTrie(unchecked, tokenStream(seededRandom(i), 12, 40), { maxNodes: 128 });
      expect(edgeTrieTokenOutside(trie, vocab)).toBeNull();
      // The merge checks: the damaged value is dropped, the new request starts afresh.
      expect(UserCache.decode(mergeIntoUserCache(c, [1, 2, 3], { vocabSize: vocab })).nextTokens([2], 1)).toEqual([{ token: 3, count: USER_CACHE_UNIT }]);
    }
    expect(damagedButDrafted).toBeGreaterThan(100);
    // Unchecked, a value must name the vocabulary it was written for.
    const anonymous = mergeIntoUserCache(null, [1, 2, 3]);
    expect(UserCache.decode(anonymous, { vocabSize: vocab, verify: false }).isEmpty).toBe(true);
    expect(UserCache.decode(anonymous, { vocabSize: vocab }).isEmpty).toBe(false);
  });

  it("decodes with the checksum left to the caller (verify: 'deferred', the merge's), as verified otherwise", () => {
    const vocab = 512;
    const good = mergeIntoUserCache(null, tokenStream(seededRandom(5), 300, 40), { vocabSize: vocab });
    const damaged = good.slice();
    damaged[40] ^= 0x10; // a slot word: the structure holds, the checksum fails
    expect(UserCache.decode(damaged, { vocabSize: vocab }).isEmpty).toBe(true);
    const deferred = UserCache.decode(damaged, { vocabSize: vocab, verify: 'deferred' });
    expect(deferred.isEmpty).toBe(false);
    expect(deferred.entryCount).toBe(UserCache.decode(good).entryCount);
    // The verified rules otherwise: a value without a vocabulary is taken, one of another is not.
    expect(UserCache.decode(mergeIntoUserCache(null, [1, 2, 3]), { vocabSize: vocab, verify: 'deferred' }).isEmpty).toBe(false);
    expect(UserCache.decode(good, { vocabSize: 32000, verify: 'deferred' }).isEmpty).toBe(true);
    // The merge checks the sum at its end: a damaged value gives exactly the value merged from nothing.
    const req = tokenStream(seededRandom(6), 120, 40);
    expect(mergeIntoUserCache(damaged, req, { vocabSize: vocab, maxBytes: 4096 })).toEqual(mergeIntoUserCache(null, req, { vocabSize: vocab, maxBytes: 4096 }));
  });

  it('rejects a cache written for another vocabulary when asked to', () => {
    const bytes = mergeIntoUserCache(null, [1, 2, 3], { vocabSize: 512 });
    expect(UserCache.decode(bytes, { vocabSize: 512 }).isEmpty).toBe(false);
    expect(UserCache.decode(bytes, { vocabSize: 32000 }).isEmpty).toBe(true);
  });

  it('merges a long request into a full-size cache in a few milliseconds', () => {
    const rand = seededRandom(4);
    let bytes: Uint8Array | null = null;
    for (let i = 0; i < 30; i++) bytes = mergeIntoUserCache(bytes, tokenStream(rand, 400, 512));
    expect(bytes!.length).toBeLessThanOrEqual(256 * 1024);
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      bytes = mergeIntoUserCache(bytes, tokenStream(rand, 400, 512));
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    expect(times[2]).toBeLessThan(50);
  });
  it('merges exactly like the reference merge, below and at the size bound', () => {
    // ≤ 8 distinct next tokens per context, so the working set never drops one
    // (where the two differ only in which of equally weak candidates goes).
    for (const maxBytes of [1 << 20, 16 * 1024, 4096]) {
      const rand = seededRandom(maxBytes);
      let bytes: Uint8Array | null = null;
      for (let r = 0; r < 25; r++) {
        const req = tokenStream(rand, 50 + Math.floor(rand() * 250), 8);
        const next = mergeIntoUserCache(bytes, req, { maxBytes });
        const want = referenceMerge(bytes, req, maxBytes, UserCache.decode(next).history.length);
        bytes = next;
        expect(bytes.length).toBeLessThanOrEqual(maxBytes);
        expect(contents(bytes)).toEqual(want);
      }
    }
  });

  it('merges a request larger than the whole bound, keeping its strongest contexts', () => {
    const rand = seededRandom(5);
    const req = tokenStream(rand, 5000, 8);
    const bytes = mergeIntoUserCache(null, req, { maxBytes: 4096 });
    expect(bytes.length).toBeLessThanOrEqual(4096);
    expect(contents(bytes)).toEqual(referenceMerge(null, req, 4096, UserCache.decode(bytes).history.length));
  });
  it('keeps the latest requests verbatim, dropping the oldest whole, within its history bound', () => {
    let bytes = mergeIntoUserCache(null, [1, 10, 11, 12], { historyTokens: 12 });
    expect(Array.from(UserCache.decode(bytes).history)).toEqual([1, 10, 11, 12]);
    bytes = mergeIntoUserCache(bytes, [1, 20, 21], { historyTokens: 12 });
    expect(Array.from(UserCache.decode(bytes).history)).toEqual([1, 10, 11, 12, HISTORY_SEPARATOR, 1, 20, 21]);
    // 8 + 1 + 5 > 12: the oldest request goes, not part of it.
    bytes = mergeIntoUserCache(bytes, [1, 30, 31, 32, 33], { historyTokens: 12 });
    expect(Array.from(UserCache.decode(bytes).history)).toEqual([1, 20, 21, HISTORY_SEPARATOR, 1, 30, 31, 32, 33]);
    // A request longer than the bound alone keeps its end.
    bytes = mergeIntoUserCache(bytes, Array.from({ length: 20 }, (_, i) => 100 + i), { historyTokens: 12 });
    expect(Array.from(UserCache.decode(bytes).history)).toEqual(Array.from({ length: 12 }, (_, i) => 108 + i));
    // An empty request adds nothing, not even a separator.
    expect(Array.from(UserCache.decode(mergeIntoUserCache(bytes, [], { historyTokens: 12 })).history)).toEqual(Array.from(UserCache.decode(bytes).history));
    // The n-gram table still knows the older requests; 0 keeps no history.
    expect(UserCache.decode(bytes).nextTokens([10], 1)).toHaveLength(1);
    expect(UserCache.decode(mergeIntoUserCache(bytes, [1, 2, 3], { historyTokens: 0 })).history).toHaveLength(0);
  });

  it('gives the history at most a quarter of the value, and keeps the default 2,048 tokens of it', () => {
    const rand = seededRandom(8);
    let small: Uint8Array | null = null;
    let large: Uint8Array | null = null;
    for (let i = 0; i < 40; i++) {
      const req = tokenStream(rand, 300, 64);
      small = mergeIntoUserCache(small, req, { maxBytes: 8192 });
      large = mergeIntoUserCache(large, req);
      expect(small.length).toBeLessThanOrEqual(8192);
    }
    expect(UserCache.decode(small).history.length).toBeLessThanOrEqual(8192 / 16);
    const history = UserCache.decode(large).history;
    expect(history.length).toBeGreaterThan(1800);
    expect(history.length).toBeLessThanOrEqual(2048);
  });

  it('still reads a value written before the history (version 1)', () => {
    const v2 = mergeIntoUserCache(null, [1, 10, 11, 12, 13]);
    const cache = UserCache.decode(v2);
    // Version 1: the same header and slots, no history section.
    const words = new Uint32Array(8 + cache.slotCount * 8);
    words.set(new Uint32Array(v2.buffer, v2.byteOffset, words.length));
    words[1] = (words[1] & ~0xffff) | 1;
    words[6] = cache.slotCount * 32;
    let h = 0x811c9dc5;
    for (let i = 0; i < words.length; i++) if (i !== 7) h = Math.imul(h ^ words[i], 0x01000193);
    words[7] = h >>> 0;
    const v1 = UserCache.decode(new Uint8Array(words.buffer));
    expect(v1.isEmpty).toBe(false);
    expect(v1.history).toHaveLength(0);
    expect(v1.nextTokens([11, 12], 2)).toEqual([{ token: 13, count: USER_CACHE_UNIT }]);
    // Merging into it upgrades it, old knowledge kept.
    const upgraded = UserCache.decode(mergeIntoUserCache(new Uint8Array(words.buffer), [1, 20, 21]));
    expect(Array.from(upgraded.history)).toEqual([1, 20, 21]);
    expect(upgraded.nextTokens([11, 12], 2)[0].token).toBe(13);
  });
});
