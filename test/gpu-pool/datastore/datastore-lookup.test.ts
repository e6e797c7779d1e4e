import { describe, expect, it } from 'vitest';
import { createDatastoreMatches, Datastore, type DatastoreLookupOptions } from '../../../gpu-pool/datastore/datastore';
import { randomDocuments, seededRandom } from './random-corpus';

interface Match {
  tokens: number[];
  length: number;
}

function matchesOf(out: { count: number; width: number; tokens: Int32Array; matchLengths: Uint8Array }): Match[] {
  const res: Match[] = [];
  for (let i = 0; i < out.count; i++) {
    res.push({ tokens: Array.from(out.tokens.subarray(i * out.width, (i + 1) * out.width)), length: out.matchLengths[i] });
  }
  return res;
}

/**
 * Reference lookup by brute force: scan every position of every chunk for the
 * query, order the hits by direct suffix comparison, then apply the documented
 * sampling (evenly spaced over the chunks' ranges in chunk order), back-off and
 * de-duplication rules.
 */
function bruteForceLookup(chunks: Int32Array[], context: number[], o: Required<DatastoreLookupOptions>, sep = 1): Match[] {
  const L = context.length;
  const occurs = (k: number): boolean =>
    chunks.some((toks) => {
      for (let p = 0; p + k <= toks.length; p++) if (context.slice(L - k).every((t, i) => toks[p + i] === t)) return true;
      return false;
    });
  // Levels start at the longest context suffix that occurs at all.
  let top = Math.min(o.maxQuery, L, 255);
  while (top > 0 && !occurs(top)) top--;
  const res: Match[] = [];
  for (let k = top; k >= 1; k--) {
    if (k < top && (res.length >= o.minMatches || res.length >= o.maxMatches)) break;
    const q = context.slice(L - k);
    const hits: Array<{ c: number; p: number }> = [];
    chunks.forEach((toks, c) => {
      const inChunk: number[] = [];
      for (let p = 0; p + k <= toks.length; p++) {
        if (q.every((t, i) => toks[p + i] === t)) inChunk.push(p);
      }
      inChunk.sort((a, b) => {
        while (a < toks.length && b < toks.length) {
          if (toks[a] !== toks[b]) return toks[a] - toks[b];
          a++;
          b++;
        }
        return a === toks.length ? -1 : 1;
      });
      for (const p of inChunk) hits.push({ c, p });
    });
    const total = hits.length;
    if (total === 0) continue;
    const take = Math.min(total, o.maxMatches - res.length);
    for (let j = 0; j < take; j++) {
      const { c, p } = hits[Math.floor((j * total) / take)];
      const toks = chunks[c];
      if (k < top && p > 0 && toks[p - 1] === context[L - k - 1]) continue;
      const cont: number[] = [];
      for (let q2 = p + k; cont.length < o.width && q2 < toks.length; q2++) {
        cont.push(toks[q2]);
        if (toks[q2] === sep) break;
      }
      while (cont.length < o.width) cont.push(-1);
      res.push({ tokens: cont, length: k });
    }
  }
  return res;
}

describe('Datastore.lookup', () => {
  it('returns the continuations after the longest match, stopping at the end of a story', () => {
    const store = Datastore.fromDocuments([
      [1, 5, 6, 7, 8, 1],
      [1, 9, 6, 7, 2],
    ]);
    // Layout: 1 5 6 7 8 1 9 6 7 2; "6 7" occurs twice; "7" alone adds nothing new.
    const got = matchesOf(store.lookup([3, 6, 7], undefined, { width: 4 }));
    expect(got).toHaveLength(2);
    expect(got).toEqual(
      expect.arrayContaining([
        { tokens: [8, 1, -1, -1], length: 2 },
        { tokens: [2, -1, -1, -1], length: 2 },
      ]),
    );
    expect(store.lookup([42]).count).toBe(0);
    expect(store.lookup([]).count).toBe(0);
  });

  it('backs off to shorter suffixes, accumulating distinct occurrences with their own match length', () => {
    const store = Datastore.fromDocuments([
      [1, 4, 5, 6, 7],
      [1, 8, 5, 6, 9],
      [1, 8, 8, 6, 3],
    ]);
    const got = matchesOf(store.lookup([4, 5, 6], undefined, { width: 2, minMatches: 3 }));
    expect(got).toEqual([
      { tokens: [7, 1], length: 3 }, // "4 5 6", then the next story's separator
      { tokens: [9, 1], length: 2 }, // "5 6" elsewhere
      { tokens: [3, -1], length: 1 }, // "6" elsewhere, at the very end
    ]);
    // Without back-off pressure only the longest level is used.
    expect(matchesOf(store.lookup([4, 5, 6], undefined, { width: 2, minMatches: 1 }))).toEqual([{ tokens: [7, 1], length: 3 }]);
  });

  it('matches a brute-force scan on random corpora, across chunks and options', () => {
    const next = seededRandom(2024);
    const optionSets: Array<Required<DatastoreLookupOptions>> = [
      { maxQuery: 12, width: 8, maxMatches: 100, minMatches: 50 },
      { maxQuery: 4, width: 3, maxMatches: 10, minMatches: 5 },
      { maxQuery: 6, width: 5, maxMatches: 7, minMatches: 7 },
      { maxQuery: 3, width: 1, maxMatches: 30, minMatches: 0 },
    ];
    // Searches start in the bucket of the query's first two tokens where that
    // table is small next to the chunk, else of its first token: both are covered.
    for (const [vocab, chunkTokens, pairs] of [
      [8, 1 << 20, true],
      [8, 300, true],
      [20, 300, false],
      [60, 97, false],
      [200, 1 << 20, false],
    ] as const) {
      const docs = randomDocuments(next, 60, vocab);
      const store = Datastore.fromDocuments(docs, { chunkTokens });
      const chunks = store.indexedChunks.map((c) => c.tokens);
      if (chunkTokens < 1000) expect(chunks.length).toBeGreaterThan(1);
      expect(store.indexedChunks.some((c) => c.pairStart !== null), `vocab ${vocab}: pair tables`).toBe(pairs);
      const out = createDatastoreMatches(100, 8);
      for (let trial = 0; trial < 60; trial++) {
        // Contexts drawn from the corpus (so long matches exist) and random ones.
        const doc = docs[Math.floor(next() * docs.length)];
        const end = 1 + Math.floor(next() * doc.length);
        const context = next() < 0.7 ? doc.slice(Math.max(0, end - 1 - Math.floor(next() * 15)), end) : Array.from({ length: 1 + Math.floor(next() * 6) }, () => 2 + Math.floor(next() * (vocab - 2)));
        for (const o of optionSets) {
          const got = matchesOf(store.lookup(context, out, o));
          expect(got, `vocab ${vocab} context ${context} opts ${JSON.stringify(o)}`).toEqual(bruteForceLookup(chunks, context, o));
        }
      }
    }
  });

  it('samples at evenly spaced positions when a query has more matches than wanted', () => {
    // 1000 documents "0 x" with x = 2..1001: the suffixes "0 x" sort by x.
    const docs = Array.from({ length: 1000 }, (_, i) => [0, 2 + i]);
    const store = Datastore.fromDocuments(docs);
    const got = matchesOf(store.lookup([0], undefined, { width: 1, maxMatches: 100 }));
    expect(got.map((m) => m.tokens[0])).toEqual(Array.from({ length: 100 }, (_, j) => 2 + j * 10));
    const few = matchesOf(store.lookup([0], undefined, { width: 1, maxMatches: 3 }));
    expect(few.map((m) => m.tokens[0])).toEqual([2, 2 + 333, 2 + 666]);
  });

  it('writes into the buffer it is given and rejects one that is too small', () => {
    const store = Datastore.fromDocuments([[1, 2, 3, 4]]);
    const out = createDatastoreMatches(100, 8);
    expect(store.lookup([2, 3], out)).toBe(out);
    expect(matchesOf(out)).toEqual([{ tokens: [4, -1, -1, -1, -1, -1, -1, -1], length: 2 }]);
    expect(() => store.lookup([2], createDatastoreMatches(10, 8))).toThrow(RangeError);
  });

  it('rejects token ids outside the vocabulary', () => {
    expect(() => Datastore.fromDocuments([[1, 600]], { vocabSize: 512 })).toThrow(RangeError);
    expect(() => Datastore.empty({ vocabSize: 512 }).append([1, -3])).toThrow(RangeError);
  });
});
