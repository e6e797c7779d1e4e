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
  /**
   * The same by the first two tokens where the table is small next to the
   * chunk (a vocabulary of up to ~1,000 on a chunk of two million tokens),
   * else null: suffixes starting with (t, u) occupy
   * [pairStart[key], pairStart[key+1]) with key = t·(V+1) + u + 1,
   * V = firstTokenStart.length - 1, and the chunk's one-token last suffix sits
   * at key = t·(V+1). In the pool a lookup runs between forward passes, with
   * the suffix array's upper search levels out of cache: every probe this
   * saves (~log2 V more per search) is a cache miss saved.
   */
  readonly pairStart: Int32Array | null;
}

/** A pair table (V·(V+1)+1 entries) is built when it holds at most this many entries per chunk token. */
const PAIR_TABLE_PER_TOKEN = 0.5;

/** Wraps tokens and their suffix array as a chunk (derives the first-token and pair tables, one pass each). */
export function createChunk(tokens: Int32Array, suffixArray: Int32Array): DatastoreChunk {
  let max = -1;
  for (let i = 0; i < tokens.length; i++) if (tokens[i] > max) max = tokens[i];
  const firstTokenStart = new Int32Array(max + 2);
  for (let i = 0; i < tokens.length; i++) firstTokenStart[tokens[i] + 1]++;
  for (let t = 1; t < firstTokenStart.length; t++) firstTokenStart[t] += firstTokenStart[t - 1];
  const V = max + 1;
  const entries = V * (V + 1) + 1;
  let pairStart: Int32Array | null = null;
  if (V > 0 && entries <= PAIR_TABLE_PER_TOKEN * tokens.length) {
    // Counting sort's offsets: suffixes sort by their first token, then by
    // the second, the chunk's end (no second token) before every token.
    pairStart = new Int32Array(entries);
    const n = tokens.length;
    for (let i = 0; i < n; i++) pairStart[tokens[i] * (V + 1) + (i + 1 < n ? tokens[i + 1] + 1 : 0) + 1]++;
    for (let key = 1; key < entries; key++) pairStart[key] += pairStart[key - 1];
  }
  return { tokens, suffixArray, firstTokenStart, pairStart };
}

/** Builds the chunk's index on this thread (the CLI and tests; live appends use a worker). */
export function indexChunk(tokens: Int32Array): DatastoreChunk {
  return createChunk(tokens, buildSuffixArray(tokens));
}

/**
 * Compares the suffix at `pos` with query = context[qs, qs+k): negative when the
 * suffix sorts before the query (a suffix shorter than the query and equal on
 * its length sorts before), 0 when the suffix starts with the query, positive after.
 * Tokens before `from` are known equal (the bucket the search runs in).
 */
function compareSuffixToQuery(tokens: Int32Array, pos: number, context: ArrayLike<number>, qs: number, k: number, from: number): number {
  const n = tokens.length;
  for (let i = from; i < k; i++) {
    if (pos + i >= n) return -1;
    const d = tokens[pos + i] - context[qs + i];
    if (d !== 0) return d;
  }
  return 0;
}

/** Scratch for queryBucket's answer, so a lookup allocates nothing. */
const bucket = new Int32Array(2);

/**
 * The suffix-array bucket every match of the query lies in, [bucket[0],
 * bucket[1]), by its first one or two tokens; returns how many tokens the
 * bucket fixes, 0 when no suffix can match.
 */
function queryBucket(chunk: DatastoreChunk, context: ArrayLike<number>, qs: number, k: number): number {
  const { firstTokenStart, pairStart } = chunk;
  const V = firstTokenStart.length - 1;
  const first = context[qs];
  if (!(first >= 0 && first < V)) return 0;
  if (pairStart === null) {
    bucket[0] = firstTokenStart[first];
    bucket[1] = firstTokenStart[first + 1];
    return 1;
  }
  const row = first * (V + 1);
  if (k === 1) {
    bucket[0] = pairStart[row];
    bucket[1] = pairStart[row + V + 1];
    return 1;
  }
  const second = context[qs + 1];
  if (!(second >= 0 && second < V)) return 0;
  bucket[0] = pairStart[row + second + 1];
  bucket[1] = pairStart[row + second + 2];
  return 2;
}

/**
 * The suffix-array range [lo, hi) of suffixes starting with the query, written
 * to range[at] and range[at+1]; returns hi - lo. Binary search for lo inside the
 * query's bucket, then galloping for hi (ranges of long queries are short).
 */
export function findRange(chunk: DatastoreChunk, context: ArrayLike<number>, qs: number, k: number, range: Int32Array, at: number): number {
  const { tokens, suffixArray } = chunk;
  const fixed = queryBucket(chunk, context, qs, k);
  if (fixed === 0) {
    range[at] = range[at + 1] = 0;
    return 0;
  }
  let lo = bucket[0];
  let end = bucket[1];
  if (k > fixed) {
    let hi = end;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareSuffixToQuery(tokens, suffixArray[mid], context, qs, k, fixed) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo === end || compareSuffixToQuery(tokens, suffixArray[lo], context, qs, k, fixed) !== 0) {
      range[at] = range[at + 1] = lo;
      return 0;
    }
    // Gallop: find a step past the range, then binary search the last stretch.
    let step = 1;
    while (lo + step < end && compareSuffixToQuery(tokens, suffixArray[lo + step], context, qs, k, fixed) === 0) step *= 2;
    let a = lo + (step >>> 1) + 1;
    let b = Math.min(lo + step, end);
    while (a < b) {
      const mid = (a + b) >>> 1;
      if (compareSuffixToQuery(tokens, suffixArray[mid], context, qs, k, fixed) === 0) a = mid + 1;
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
  const { tokens, suffixArray } = chunk;
  const fixed = queryBucket(chunk, context, qs, k);
  if (fixed === 0) return false;
  let lo = bucket[0];
  const end = bucket[1];
  if (k === fixed) return lo < end;
  let hi = end;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareSuffixToQuery(tokens, suffixArray[mid], context, qs, k, fixed) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo < end && compareSuffixToQuery(tokens, suffixArray[lo], context, qs, k, fixed) === 0;
}
