/**
 * Sets of Unicode scalar values as flat sorted range lists
 * `[lo0, hi0, lo1, hi1, ...]` (inclusive, disjoint, not touching): what a
 * regex's character, class or escape matches. Surrogates (D800-DFFF) are
 * never members: they have no UTF-8 encoding, so no output text holds one.
 */

export type CodePointSet = readonly number[];

export const MAX_CODE_POINT = 0x10ffff;
const SURROGATE_LO = 0xd800;
const SURROGATE_HI = 0xdfff;

/** Sorts and merges `[lo, hi]` pairs, dropping the surrogates. */
export function normalizeSet(pairs: readonly number[]): CodePointSet {
  const ranges: [number, number][] = [];
  for (let i = 0; i < pairs.length; i += 2) ranges.push([pairs[i], pairs[i + 1]]);
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: number[] = [];
  for (const [lo, hi] of ranges) {
    const last = merged.length - 1;
    if (last > 0 && lo <= merged[last] + 1) merged[last] = Math.max(merged[last], hi);
    else merged.push(lo, hi);
  }
  return withoutSurrogates(merged);
}

function withoutSurrogates(set: CodePointSet): CodePointSet {
  const out: number[] = [];
  for (let i = 0; i < set.length; i += 2) {
    const lo = set[i];
    const hi = set[i + 1];
    if (hi < SURROGATE_LO || lo > SURROGATE_HI) out.push(lo, hi);
    else {
      if (lo < SURROGATE_LO) out.push(lo, SURROGATE_LO - 1);
      if (hi > SURROGATE_HI) out.push(SURROGATE_HI + 1, hi);
    }
  }
  return out;
}

/** Every scalar value outside `set` (a normalized one). */
export function complementSet(set: CodePointSet): CodePointSet {
  const out: number[] = [];
  let next = 0;
  for (let i = 0; i < set.length; i += 2) {
    if (set[i] > next) out.push(next, set[i] - 1);
    next = set[i + 1] + 1;
  }
  if (next <= MAX_CODE_POINT) out.push(next, MAX_CODE_POINT);
  return withoutSurrogates(out);
}

export function setOf(codePoint: number): CodePointSet {
  return [codePoint, codePoint];
}

/** The scalar values in both `a` and `b` (normalized sets). */
export function intersectSets(a: CodePointSet, b: CodePointSet): CodePointSet {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const lo = Math.max(a[i], b[j]);
    const hi = Math.min(a[i + 1], b[j + 1]);
    if (lo <= hi) out.push(lo, hi);
    // Whichever range ends first can meet nothing further in the other.
    if (a[i + 1] < b[j + 1]) i += 2;
    else j += 2;
  }
  return out;
}

/** Whether `codePoint` is in `set` (a normalized one): a binary search over its ranges. */
export function hasCodePoint(set: CodePointSet, codePoint: number): boolean {
  let lo = 0;
  let hi = set.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (codePoint < set[2 * mid]) hi = mid - 1;
    else if (codePoint > set[2 * mid + 1]) lo = mid + 1;
    else return true;
  }
  return false;
}
