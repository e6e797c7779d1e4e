import { describe, expect, it } from 'vitest';
import { buildSuffixArray } from '../../../gpu-pool/datastore/suffix-array';
import { seededRandom } from '../../support/seeded-random';

/** Reference: every suffix start, sorted by direct lexicographic comparison. */
function naiveSuffixArray(s: Int32Array): number[] {
  const n = s.length;
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => {
    while (a < n && b < n) {
      if (s[a] !== s[b]) return s[a] - s[b];
      a++;
      b++;
    }
    return a === n ? -1 : 1;
  });
  return order;
}


function randomCorpus(next: () => number, length: number, vocab: number): Int32Array {
  const out = new Int32Array(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(next() * vocab);
  return out;
}

describe('buildSuffixArray', () => {
  it('handles empty, single-token and two-token inputs', () => {
    expect(Array.from(buildSuffixArray(new Int32Array(0)))).toEqual([]);
    expect(Array.from(buildSuffixArray(Int32Array.of(7)))).toEqual([0]);
    expect(Array.from(buildSuffixArray(Int32Array.of(3, 3)))).toEqual([1, 0]);
    expect(Array.from(buildSuffixArray(Int32Array.of(2, 5)))).toEqual([0, 1]);
    expect(Array.from(buildSuffixArray(Int32Array.of(5, 2)))).toEqual([1, 0]);
  });

  it('equals a naive sort on random corpora of many sizes and vocabularies', () => {
    const next = seededRandom(12345);
    for (const vocab of [1, 2, 3, 5, 26, 512, 1 << 17]) {
      for (const length of [3, 9, 10, 11, 17, 64, 257, 1000, 3000]) {
        const s = randomCorpus(next, length, vocab);
        expect(Array.from(buildSuffixArray(s)), `vocab ${vocab} length ${length}`).toEqual(naiveSuffixArray(s));
      }
    }
  });

  it('equals a naive sort on highly repetitive corpora (periodic, runs, document separators)', () => {
    const next = seededRandom(99);
    const cases: Int32Array[] = [];
    cases.push(new Int32Array(2000).fill(4)); // one long run
    cases.push(Int32Array.from({ length: 2001 }, (_, i) => i % 3)); // periodic
    cases.push(Int32Array.from({ length: 1500 }, (_, i) => (i % 7 === 0 ? 1 : 2 + (i % 2)))); // separators every 7
    // Repeated random blocks with small perturbations: what a story corpus looks like.
    const block = randomCorpus(next, 50, 40);
    const rep = new Int32Array(2500);
    for (let i = 0; i < rep.length; i++) rep[i] = next() < 0.02 ? Math.floor(next() * 40) : block[i % 50];
    cases.push(rep);
    for (const s of cases) expect(Array.from(buildSuffixArray(s))).toEqual(naiveSuffixArray(s));
  });

  it('rejects negative token ids', () => {
    expect(() => buildSuffixArray(Int32Array.of(1, -1, 2))).toThrow(RangeError);
  });
});
