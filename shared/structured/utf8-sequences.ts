/**
 * A range of code points as the byte-range sequences that spell exactly
 * their UTF-8 encodings (the algorithm of Rust regex-syntax's
 * Utf8Sequences): [80-7FF] becomes [C2-DF][80-BF], and so on. Surrogates
 * (D800-DFFF) are left out: they have no UTF-8 encoding.
 */

/** One sequence: `[lo0, hi0, lo1, hi1, ...]`, a byte range per byte of the encoding. */
export type Utf8Sequence = readonly number[];

const MAX_BY_LENGTH = [0x7f, 0x7ff, 0xffff] as const;

/** The sequences of `[lo, hi]`, ascending, disjoint, together matching each encoding once. */
export function utf8Sequences(lo: number, hi: number): Utf8Sequence[] {
  const out: Utf8Sequence[] = [];
  const stack: number[] = [lo, hi];
  while (stack.length > 0) {
    let end = stack.pop()!;
    let start = stack.pop()!;
    for (;;) {
      if (start < 0xe000 && end > 0xd7ff) {
        // Split around the surrogates; either side may be empty.
        if (end >= 0xe000) stack.push(Math.max(start, 0xe000), end);
        end = 0xd7ff;
      }
      if (start > end) break;
      const split = splitAtLengthBoundary(start, end);
      if (split !== undefined) {
        stack.push(split + 1, end);
        end = split;
        continue;
      }
      if (end <= 0x7f) {
        out.push([start, end]);
        break;
      }
      const alignment = splitAtContinuationBoundary(start, end);
      if (alignment !== undefined) {
        stack.push(alignment.restLo, end);
        end = alignment.end;
        continue;
      }
      out.push(pairwise(encode(start), encode(end)));
      break;
    }
  }
  return out;
}

/** The last code point of a shorter encoding inside `[start, end]`, if the range spans two lengths. */
function splitAtLengthBoundary(start: number, end: number): number | undefined {
  for (const max of MAX_BY_LENGTH) if (start <= max && max < end) return max;
  return undefined;
}

/**
 * Where `[start, end]` must split so each piece's encodings differ in one
 * trailing run of full continuation ranges: `end` of the first piece, and
 * where the rest begins.
 */
function splitAtContinuationBoundary(start: number, end: number): { end: number; restLo: number } | undefined {
  for (let i = 1; i < 4; i++) {
    const mask = (1 << (6 * i)) - 1;
    if ((start & ~mask) !== (end & ~mask)) {
      if ((start & mask) !== 0) return { end: start | mask, restLo: (start | mask) + 1 };
      if ((end & mask) !== mask) return { end: (end & ~mask) - 1, restLo: end & ~mask };
    }
  }
  return undefined;
}

function pairwise(a: readonly number[], b: readonly number[]): Utf8Sequence {
  const seq: number[] = [];
  for (let i = 0; i < a.length; i++) seq.push(a[i], b[i]);
  return seq;
}

/** The UTF-8 bytes of a (non-surrogate) scalar value. */
function encode(cp: number): number[] {
  if (cp < 0x80) return [cp];
  if (cp < 0x800) return [0xc0 | (cp >> 6), 0x80 | (cp & 0x3f)];
  if (cp < 0x10000) return [0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f)];
  return [0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f)];
}
