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
const ZERO_FRACTION = '(?:\\.0+)?';
const EXPONENT = '(?:[eE][+\\-]?[0-9]+)?';
// At least 1e-199 with the fraction below: far above the smallest double (~4.9e-324).
const EXPONENT_ABOVE_ZERO = '(?:[eE](?:\\+?[0-9]+|-[0-9]{1,2}))?';
const FRACTION_ABOVE_ZERO = '\\.0{0,99}[1-9][0-9]*';

/**
 * Fraction digits within which a value beside an exclusive bound must part
 * from it: 15 significant digits in all, which a double keeps apart, where
 * 1.0000000000000001 is read as 1 and 9.99999999999999999 as 10.
 */
function digitsBeside(bound: number): number {
  return Math.max(1, 15 - String(bound).length);
}

/** A fraction whose last non-zero digit is within the first `k` (the value above its integer part, and short of the next integer). */
function shortNonZeroFraction(k: number): string {
  return `\\.[0-9]{0,${k - 1}}[1-9]0*`;
}

/** Unsigned magnitudes m between lo (≥ 0) and hi (null: none), hi ≥ lo; null where there are none. */
function magnitudes(lo: NumberBound, hi: NumberBound | null): string | null {
  const a = lo.value;
  const b = hi === null ? Infinity : hi.value;
  if (a === b) return lo.exclusive || hi!.exclusive ? null : `${a}${ZERO_FRACTION}`;
  // Integer part a, then a+1 .. b-1 with any fraction, then b with none.
  const below = hi !== null && hi.exclusive;
  const parts: string[] = [];
  if (below && b === a + 1) {
    // Between two integers with b exclusive: a fraction short enough that no double rounds it up to b (nor, where
    // a is exclusive too and not 0, down to a).
    const k = digitsBeside(b);
    parts.push(lo.exclusive ? `${a}${shortNonZeroFraction(a === 0 ? k : Math.min(k, digitsBeside(a)))}` : `${a}(?:${shortNonZeroFraction(k)}|${ZERO_FRACTION})`);
  } else {
    const above = a === 0 ? FRACTION_ABOVE_ZERO : `\\.[0-9]{0,${digitsBeside(a) - 1}}[1-9][0-9]*`;
    parts.push(lo.exclusive ? `${a}${above}` : `${a}${FRACTION}`);
    // The integer part just under an exclusive b: its fraction parts from b within the digits a double keeps.
    const mid = integerRangeRegex(a + 1, below ? b - 2 : b - 1);
    if (mid !== null) parts.push(`(?:${mid})${FRACTION}`);
    if (below && b - 1 > a) {
      const k = digitsBeside(b);
      parts.push(`${b - 1}(?:\\.(?:9{1,${k}}|9{0,${k - 1}}[0-8][0-9]*))?`);
    }
  }
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
