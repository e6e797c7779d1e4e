/**
 * One chunk of the datastore: a token sequence and its suffix array. Chunks are
 * immutable once built; a live append builds a new chunk and swaps it in, so a
 * reader holding the old one is never disturbed.
 */
import { buildSuffixArray } from './suffix-array';

export interface DatastoreChunk {
  readonly tokens: Int32Array;
  /** suffixArray[i] = start in `tokens` of the i-th smallest suffix. */
  readonly suffixArray: Int32Array;
  /**
   * Suffixes starting with token t occupy suffix-array indices
   * [firstTokenStart[t], firstTokenStart[t+1]); length = largest id + 2.
   * Cuts ~log2(vocab) probes off every search, and is cheap to derive, so it
   * is not stored in files.
   */
  readonly firstTokenStart: Int32Array;
}

/** Wraps tokens and their suffix array as a chunk (derives the first-token table in one pass). */
export function createChunk(tokens: Int32Array, suffixArray: Int32Array): DatastoreChunk {
  let max = -1;
  for (let i = 0; i < tokens.length; i++) if (tokens[i] > max) max = tokens[i];
  const firstTokenStart = new Int32Array(max + 2);
  for (let i = 0; i < tokens.length; i++) firstTokenStart[tokens[i] + 1]++;
  for (let t = 1; t < firstTokenStart.length; t++) firstTokenStart[t] += firstTokenStart[t - 1];
  return { tokens, suffixArray, firstTokenStart };
}

/** Builds the chunk's index on this thread (the CLI and tests; live appends use a worker). */
export function indexChunk(tokens: Int32Array): DatastoreChunk {
  return createChunk(tokens, buildSuffixArray(tokens));
}

/**
 * Compares the suffix at `pos` with query = context[qs, qs+k): negative when the
 * suffix sorts before the query (a suffix shorter than the query and equal on
 * its length sorts before), 0 when the suffix starts with the query, positive after.
 */
function compareSuffixToQuery(tokens: Int32Array, pos: number, context: ArrayLike<number>, qs: number, k: number): number {
  const n = tokens.length;
  for (let i = 0; i < k; i++) {
    if (pos + i >= n) return -1;
    const d = tokens[pos + i] - context[qs + i];
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * The suffix-array range [lo, hi) of suffixes starting with the query, written
 * to range[at] and range[at+1]; returns hi - lo. Binary search for lo inside the
 * query's first-token bucket, then galloping for hi (ranges of long queries are short).
 */
export function findRange(chunk: DatastoreChunk, context: ArrayLike<number>, qs: number, k: number, range: Int32Array, at: number): number {
  const { tokens, suffixArray, firstTokenStart } = chunk;
  const first = context[qs];
  if (first < 0 || first + 1 >= firstTokenStart.length) {
    range[at] = range[at + 1] = 0;
    return 0;
  }
  let lo = firstTokenStart[first];
  let end = firstTokenStart[first + 1];
  if (k > 1) {
    let hi = end;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareSuffixToQuery(tokens, suffixArray[mid], context, qs, k) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo === end || compareSuffixToQuery(tokens, suffixArray[lo], context, qs, k) !== 0) {
      range[at] = range[at + 1] = lo;
      return 0;
    }
    // Gallop: find a step past the range, then binary search the last stretch.
    let step = 1;
    while (lo + step < end && compareSuffixToQuery(tokens, suffixArray[lo + step], context, qs, k) === 0) step *= 2;
    let a = lo + (step >>> 1) + 1;
    let b = Math.min(lo + step, end);
    while (a < b) {
      const mid = (a + b) >>> 1;
      if (compareSuffixToQuery(tokens, suffixArray[mid], context, qs, k) === 0) a = mid + 1;
      else b = mid;
    }
    end = a;
  }
  range[at] = lo;
  range[at + 1] = end;
  return end - lo;
}

/** True when some suffix starts with the query (the first half of `findRange`). */
export function hasMatch(chunk: DatastoreChunk, context: ArrayLike<number>, qs: number, k: number): boolean {
  const { tokens, suffixArray, firstTokenStart } = chunk;
  const first = context[qs];
  if (first < 0 || first + 1 >= firstTokenStart.length) return false;
  let lo = firstTokenStart[first];
  const end = firstTokenStart[first + 1];
  let hi = end;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareSuffixToQuery(tokens, suffixArray[mid], context, qs, k) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo < end && compareSuffixToQuery(tokens, suffixArray[lo], context, qs, k) === 0;
}
