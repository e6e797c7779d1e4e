/**
 * The decimal integers in [min, max] (either side open), canonical form (no
 * leading zeros, no "-0"), as a regex: the classic digit-range construction,
 * so a JSON Schema integer's bounds are enforced exactly, not checked after.
 */

const ANY_DIGITS = '[0-9]';

function digitClass(lo: number, hi: number): string {
  return lo === hi ? String(lo) : `[${lo}-${hi}]`;
}

function rest(n: number): string {
  return n === 0 ? '' : n === 1 ? ANY_DIGITS : `${ANY_DIGITS}{${n}}`;
}

/** Same-length digit strings lo..hi (lo ≤ hi). */
function sameLength(lo: string, hi: string): string {
  if (lo.length === 0) return '';
  const a = Number(lo[0]);
  const b = Number(hi[0]);
  const tail = lo.length - 1;
  if (a === b) return lo[0] + group(sameLength(lo.slice(1), hi.slice(1)));
  const loFull = /^0*$/.test(lo.slice(1));
  const hiFull = /^9*$/.test(hi.slice(1));
  const parts: string[] = [];
  const midLo = loFull ? a : a + 1;
  const midHi = hiFull ? b : b - 1;
  if (!loFull) parts.push(lo[0] + group(sameLength(lo.slice(1), '9'.repeat(tail))));
  if (midLo <= midHi) parts.push(digitClass(midLo, midHi) + rest(tail));
  if (!hiFull) parts.push(hi[0] + group(sameLength('0'.repeat(tail), hi.slice(1))));
  return parts.join('|');
}

function group(alternatives: string): string {
  return alternatives.includes('|') ? `(?:${alternatives})` : alternatives;
}

/** Non-negative lo..hi (hi Infinity for no bound). */
function naturals(lo: number, hi: number): string[] {
  const parts: string[] = [];
  const top = hi === Infinity ? String(lo).length : String(hi).length;
  for (let len = String(lo).length; len <= top; len++) {
    const first = len === 1 ? 0 : 10 ** (len - 1);
    const last = 10 ** len - 1;
    const a = Math.max(lo, first);
    const b = Math.min(hi, last);
    if (a <= b) parts.push(sameLength(String(a), String(b)));
  }
  if (hi === Infinity) parts.push(`[1-9]${ANY_DIGITS}{${top},}`);
  return parts;
}

/**
 * The regex for the integers min..max (±Infinity for an open side), or null
 * where there are none. Bounds must be safe integers.
 */
export function integerRangeRegex(min: number, max: number): string | null {
  if (min > max) return null;
  const parts: string[] = [];
  if (min < 0) {
    // Negatives -|min|..-max(1, -max): their magnitudes as a natural range.
    const magLo = max < 0 ? -max : 1;
    const magHi = min === -Infinity ? Infinity : -min;
    parts.push(`-${group(naturals(magLo, magHi).join('|'))}`);
  }
  if (max >= 0) parts.push(...naturals(Math.max(min, 0), max));
  return parts.join('|');
}
