/**
 * JSON numbers between integer bounds, as a regex: split on the integer part
 * (the digit ranges of integer-range-regex.ts) and the fraction, so the bound
 * holds exactly. A bounded number is written without an exponent (a narrower
 * language, never a wider one), except a bound at 0 alone, where the sign
 * settles it. Above an exclusive 0 the leading zeros and the negative
 * exponent are bounded, so no value read as a double underflows to 0.
 */

import { integerRangeRegex } from './integer-range-regex';

/** An integer bound on a number. */
export interface NumberBound {
  value: number;
  exclusive: boolean;
}

const FRACTION = '(?:\\.[0-9]+)?';
const NONZERO_FRACTION = '\\.[0-9]*[1-9][0-9]*';
const ZERO_FRACTION = '(?:\\.0+)?';
const EXPONENT = '(?:[eE][+\\-]?[0-9]+)?';
// At least 1e-199 with the fraction below: far above the smallest double (~4.9e-324).
const EXPONENT_ABOVE_ZERO = '(?:[eE](?:\\+?[0-9]+|-[0-9]{1,2}))?';
const FRACTION_ABOVE_ZERO = '\\.0{0,99}[1-9][0-9]*';

/** Unsigned magnitudes m between lo (≥ 0) and hi (null: none), hi ≥ lo; null where there are none. */
function magnitudes(lo: NumberBound, hi: NumberBound | null): string | null {
  const a = lo.value;
  const b = hi === null ? Infinity : hi.value;
  if (a === b) return lo.exclusive || hi!.exclusive ? null : `${a}${ZERO_FRACTION}`;
  // Integer part a, then a+1 .. b-1 with any fraction, then b with none.
  const above = a === 0 ? FRACTION_ABOVE_ZERO : NONZERO_FRACTION;
  const parts = [lo.exclusive ? `${a}${above}` : `${a}${FRACTION}`];
  const mid = integerRangeRegex(a + 1, b - 1);
  if (mid !== null) parts.push(`(?:${mid})${FRACTION}`);
  if (hi !== null && !hi.exclusive) parts.push(`${b}${ZERO_FRACTION}`);
  return parts.join('|');
}

/** The numbers between lo and hi (null: unbounded side; at least one given); null where there are none. */
export function numberRangeRegex(lo: NumberBound | null, hi: NumberBound | null): string | null {
  if (lo !== null && hi !== null && (lo.value > hi.value || (lo.value === hi.value && (lo.exclusive || hi.exclusive)))) return null;
  const only = lo === null ? hi : hi === null ? lo : null;
  const exponent = only === null || only.value !== 0 ? '' : only.exclusive ? EXPONENT_ABOVE_ZERO : EXPONENT;
  const parts: string[] = [];
  if (lo === null || lo.value < 0) {
    // Negative values, as magnitudes: "-0" is left to the other side's 0.
    const mLo = hi !== null && hi.value < 0 ? { value: -hi.value, exclusive: hi.exclusive } : { value: 0, exclusive: true };
    const m = magnitudes(mLo, lo === null ? null : { value: -lo.value, exclusive: lo.exclusive });
    if (m !== null) parts.push(`-(?:${m})${exponent}`);
  }
  if (hi === null || hi.value > 0 || (hi.value === 0 && !hi.exclusive)) {
    const m = magnitudes(lo !== null && lo.value >= 0 ? lo : { value: 0, exclusive: false }, hi);
    if (m !== null) parts.push(`(?:${m})${exponent}`);
  }
  return parts.length === 0 ? null : parts.join('|');
}
