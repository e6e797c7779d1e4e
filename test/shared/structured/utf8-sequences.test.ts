import { describe, expect, it } from 'vitest';
import { utf8Sequences, type Utf8Sequence } from '../../../shared/structured/utf8-sequences';

const encoder = new TextEncoder();

function spells(seq: Utf8Sequence, bytes: Uint8Array): boolean {
  if (seq.length !== bytes.length * 2) return false;
  for (let i = 0; i < bytes.length; i++) if (bytes[i] < seq[2 * i] || bytes[i] > seq[2 * i + 1]) return false;
  return true;
}

/** Every code point to try in [lo, hi]: each one near a boundary, a sample between. */
function probes(lo: number, hi: number): number[] {
  const marks = [0x7f, 0x80, 0x7ff, 0x800, 0xfff, 0x1000, 0xd7ff, 0xd800, 0xdfff, 0xe000, 0xffff, 0x10000, 0x3ffff, 0x40000, 0xfffff, 0x100000, 0x10ffff];
  const out = new Set<number>();
  for (let cp = lo; cp <= hi; cp += 61) out.add(cp);
  for (const m of [lo, hi, ...marks]) for (let d = -2; d <= 2; d++) if (m + d >= lo && m + d <= hi) out.add(m + d);
  return [...out];
}

const ranges: [number, number][] = [
  [0, 0x10ffff],
  [0, 0x7f],
  [0x7f, 0x80],
  [0x7ff, 0x800],
  [0xffff, 0x10000],
  [0xd7ff, 0xe000],
  [0xd800, 0xdfff],
  [0x41, 0x1f600],
  [0x3b1, 0x3c9],
  [0x2000, 0x2fff],
  [0x1f600, 0x1f64f],
  [0x10fffe, 0x10ffff],
];

describe('UTF-8 byte sequences of a code point range', () => {
  it.each(ranges)('spell each encoding in [%i, %i] exactly once, and no surrogate', (lo, hi) => {
    const seqs = utf8Sequences(lo, hi);
    for (const cp of probes(lo, hi)) {
      const isSurrogate = cp >= 0xd800 && cp <= 0xdfff;
      // A surrogate's would-be bytes (generalized UTF-8: ED A0-BF xx).
      const bytes = isSurrogate
        ? Uint8Array.of(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f))
        : encoder.encode(String.fromCodePoint(cp));
      expect(seqs.filter((s) => spells(s, bytes)).length, cp.toString(16)).toBe(isSurrogate ? 0 : 1);
    }
  });

  it.each(ranges)('spell nothing outside [%i, %i]: every corner decodes into the range', (lo, hi) => {
    const decoder = new TextDecoder('utf-8', { fatal: true });
    const seqs = utf8Sequences(lo, hi);
    // None at all for surrogates alone, which have no encoding; some for any other range.
    expect(seqs.length === 0).toBe(lo >= 0xd800 && hi <= 0xdfff);
    for (const seq of seqs) {
      for (const pick of [0, 1]) {
        const bytes = Uint8Array.from({ length: seq.length / 2 }, (_, i) => seq[2 * i + pick]);
        const cp = decoder.decode(bytes).codePointAt(0)!;
        expect(cp >= lo && cp <= hi).toBe(true);
      }
    }
  });

  it('follows the standard splits (as Rust regex-syntax)', () => {
    const hex = (s: Utf8Sequence) => s.map((b) => b.toString(16)).join(' ');
    expect(utf8Sequences(0, 0x10ffff).map(hex)).toEqual([
      '0 7f',
      'c2 df 80 bf',
      'e0 e0 a0 bf 80 bf',
      'e1 ec 80 bf 80 bf',
      'ed ed 80 9f 80 bf',
      'ee ef 80 bf 80 bf',
      'f0 f0 90 bf 80 bf 80 bf',
      'f1 f3 80 bf 80 bf 80 bf',
      'f4 f4 80 8f 80 bf 80 bf',
    ]);
    expect(utf8Sequences(0xd800, 0xdfff)).toEqual([]);
  });
});
