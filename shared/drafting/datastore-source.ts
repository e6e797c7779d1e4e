/**
 * The global datastore as a fusion source (SSSD draft source 2): the
 * continuations of the lookup's matches go into a small scratch count trie,
 * expanded best-first with p(child) = weight · Π c(child)/c(parent).
 */
import { CandidateHeap } from './candidate-heap';
import { CountTrie } from './count-trie';
import { SOURCE_DATASTORE } from './draft-tree';
import type { FusionWeights, TreeFuser } from './fusion';
import type { TokenBuffer } from './token-buffer';

/** What the pool's Datastore.lookup returns (gpu-pool/datastore/datastore.ts). */
export interface DatastoreMatchesLike {
  count: number;
  width: number;
  /** count × width continuation tokens, -1 past the end. */
  tokens: Int32Array;
  matchLengths: Uint8Array;
}

/** Structural type of the pool's Datastore, so shared/ needs no pool import. */
export interface DatastoreLike {
  readonly tokenCount: number;
  /**
   * Changes whenever the searchable contents change (a live append swapped
   * chunks in). Optional: without it a drafter never reuses a lookup result.
   */
  readonly generation?: number;
  lookup(
    context: ArrayLike<number>,
    out?: DatastoreMatchesLike,
    opts?: { maxQuery?: number; width?: number; maxMatches?: number; minMatches?: number },
  ): DatastoreMatchesLike;
}

// 100 matches × 8 tokens fit in 1024 nodes; clearing is proportional to use anyway.
const scratch = new CountTrie({ initialNodes: 1024, maxNodes: 1 << 16 });
const heap = new CandidateHeap(256);
/** Trie nodes along the previous match's continuation (path[j] = node after j+1 tokens). */
let path = new Int32Array(16);

export function addDatastoreCandidates(fuser: TreeFuser, found: DatastoreMatchesLike, weights: FusionWeights, limit: number): void {
  addCandidates(fuser, found, weights, limit, -1);
}

/**
 * Candidates of one lookup, best-first. With `record` ≥ 0, every add is also
 * written to that draft-cache slot as (parent's add index, token, prob) so a
 * later step with the same query replays it without the lookup. The pop order
 * does not depend on `limit` (it only cuts the sequence), so a recording made
 * for one budget serves every smaller one: it goes on to `recordPops` pops
 * (recorded, not added) even when this step's limit is smaller.
 */
function addCandidates(fuser: TreeFuser, found: DatastoreMatchesLike, weights: FusionWeights, limit: number, record: number, recordPops = RECORD_POPS): void {
  if (record >= 0) {
    cache.adds[record] = 0;
    cache.complete[record] = 1;
  }
  if (found.count === 0) return;
  const t = scratch;
  t.clear();
  const { width, tokens } = found;
  const power = weights.datastoreMatchPower;
  if (path.length < width) path = new Int32Array(width);
  // Matches come in suffix-array order within a match length, so neighbours
  // often share a continuation prefix: reuse the previous match's nodes for the
  // common prefix and hash only the rest (most of this source's cost was the
  // ~800 hash probes per step).
  let prevBase = -1;
  let prevDepth = 0;
  for (let m = 0; m < found.count; m++) {
    let node = 0;
    const base = m * width;
    if (tokens[base] < 0) continue;
    const weight = power === 0 ? 1 : Math.max(1, Math.round(found.matchLengths[m] ** power));
    t.counts[0] += weight;
    let j = 0;
    if (prevBase >= 0) {
      while (j < prevDepth && tokens[base + j] === tokens[prevBase + j]) {
        node = path[j];
        t.counts[node] += weight;
        j++;
      }
    }
    for (; j < width; j++) {
      const tok = tokens[base + j];
      if (tok < 0) break;
      node = t.child(node, tok);
      if (node < 0) break;
      t.counts[node] += weight;
      path[j] = node;
    }
    prevBase = base;
    prevDepth = j;
  }
  if (t.counts[0] === 0) return;
  heap.clear();
  // Heap payload b = the parent's add index (-1: the root); unionOf maps it to the fuser's node.
  const rootCount = t.counts[0];
  for (let ch = t.firstChild[0]; ch >= 0; ch = t.nextSibling[ch]) heap.push((weights.datastore * t.counts[ch]) / rootCount, ch, -1, 0);
  let popped = 0;
  const rec = record >= 0 ? record * CACHE_MAX_ADDS : -1;
  const pops = rec >= 0 ? Math.min(CACHE_MAX_ADDS, Math.max(limit, recordPops)) : limit;
  if (unionOf.length < pops + 1) unionOf = new Int32Array(pops + 1);
  let fuserFull = false;
  while (popped < pops && heap.pop()) {
    const node = heap.topA;
    const prob = heap.topProb;
    const parent = heap.topB;
    const token = t.tokens[node];
    let u = -1;
    if (popped < limit) {
      u = fuser.add(parent < 0 ? 0 : unionOf[parent], token, prob, SOURCE_DATASTORE);
      if (u < 0) {
        fuserFull = true; // the cut came from the fuser, not the candidates: do not cache
        break;
      }
    }
    if (rec >= 0) {
      cache.parents[rec + popped] = parent;
      cache.tokens[rec + popped] = token;
      cache.probs[rec + popped] = prob;
    }
    unionOf[popped] = u;
    const self = popped++;
    const c = t.counts[node];
    for (let ch = t.firstChild[node]; ch >= 0; ch = t.nextSibling[ch]) heap.push((prob * t.counts[ch]) / c, ch, self, 0);
  }
  if (record >= 0) {
    cache.adds[record] = fuserFull ? -1 : popped;
    cache.complete[record] = popped < pops ? 1 : 0; // the heap ran dry: valid for any limit
  }
  heap.clear();
}

/**
 * Draft cache: the datastore candidates of recent queries, shared by every
 * drafter of the process. The datastore's answer depends only on the query
 * (the context's last datastoreMaxQuery tokens), the datastore's contents and
 * the weights, and on stories-like traffic many steps repeat a query seen
 * before (about a third of the lookups in a pass over dev-sessions as
 * served, docs/benchmarks.md): a hit replays the recorded adds (a few
 * hundred ns) instead of the lookup and the candidate trie (~20-50 µs).
 * Direct-mapped, typed arrays, allocated on first use (the edge never uses
 * it); entries are verified against the full query, the recorded length and the
 * datastore generation, so a hit is exact. Datastores without `generation`
 * are never cached.
 */
const CACHE_ENTRIES = 4096;
/** Longest replay recorded (limit = 1.5·budget + 2 covers budgets up to 41). */
const CACHE_MAX_ADDS = 64;
/** A miss records at least this many pops: the limit of budget 32, so one recording serves budgets 1..32. */
const RECORD_POPS = 50;
const CACHE_MAX_QUERY = 32;

interface DraftCache {
  owner: DatastoreLike | null;
  weights: FusionWeights | null;
  hashes: Uint32Array;
  generations: Float64Array;
  queryLengths: Int32Array;
  /** The lookup's maxMatches the entry was recorded with: a smaller lookup's candidates differ, not just fewer. */
  matches: Int32Array;
  queries: Int32Array;
  /** Adds recorded per entry; -1 = empty. */
  adds: Int32Array;
  /** 1 when the recording holds every candidate (valid for any limit), else valid up to `adds`. */
  complete: Uint8Array;
  parents: Int16Array;
  tokens: Int32Array;
  /** Float32 like the fuser's own per-source probabilities: a replay stores exactly what the original add stored. */
  probs: Float32Array;
}

let cache: DraftCache = emptyCache(0);
let unionOf = new Int32Array(CACHE_MAX_ADDS + 1);
const queryBuffer = new Int32Array(CACHE_MAX_QUERY);
/** Views of queryBuffer by length, made once: a lookup per step allocates nothing. */
const queryViews = Array.from({ length: CACHE_MAX_QUERY + 1 }, (_, n) => queryBuffer.subarray(0, n));

/**
 * Forgets every recorded lookup, so the next ones go to the datastore: for
 * measurements that must each start cold (eval-drafts times every budget's
 * replay; without it, later budgets replayed the earlier ones' recordings
 * and looked several times cheaper).
 */
export function resetDraftCache(): void {
  cache.adds.fill(-1);
  cache.owner = null;
  cache.weights = null;
}

function emptyCache(entries: number): DraftCache {
  return {
    owner: null,
    weights: null,
    hashes: new Uint32Array(entries),
    generations: new Float64Array(entries),
    queryLengths: new Int32Array(entries),
    matches: new Int32Array(entries),
    queries: new Int32Array(entries * CACHE_MAX_QUERY),
    adds: new Int32Array(entries).fill(-1),
    complete: new Uint8Array(entries),
    parents: new Int16Array(entries * CACHE_MAX_ADDS),
    tokens: new Int32Array(entries * CACHE_MAX_ADDS),
    probs: new Float32Array(entries * CACHE_MAX_ADDS),
  };
}

/**
 * The datastore source for one drafting step: looks up the context's last
 * `weights.datastoreMaxQuery` tokens (into `found`, the caller's buffer) and
 * adds the candidates, or replays them from the draft cache when this query
 * was answered before by the same datastore contents. Allocation-free.
 * `lookupOptions` must follow from `weights` (as SssdProposer's do): the
 * cache tells entries apart by datastore, weights object, query and maxMatches only.
 */
export function addDatastoreDraft(
  fuser: TreeFuser,
  datastore: DatastoreLike,
  context: TokenBuffer,
  weights: FusionWeights,
  limit: number,
  found: DatastoreMatchesLike,
  lookupOptions: { maxQuery: number; width: number; maxMatches: number; minMatches: number; maxLimit?: number },
): void {
  const end = context.length;
  if (weights.datastoreMaxQuery > CACHE_MAX_QUERY) {
    // Longer queries than the cache holds (not a default): plain lookup on a view.
    addCandidates(fuser, datastore.lookup(context.tail(weights.datastoreMaxQuery), found, lookupOptions), weights, limit, -1);
    return;
  }
  const n = Math.max(0, Math.min(weights.datastoreMaxQuery, end));
  const data = context.data;
  const q = queryBuffer;
  let h = 0x811c9dc5 ^ n;
  for (let i = 0; i < n; i++) {
    const tok = data[end - n + i];
    q[i] = tok;
    h = Math.imul(h ^ tok, 0x01000193);
  }
  const matches = lookupOptions.maxMatches;
  h = Math.imul(h ^ matches, 0x01000193);
  h = (h ^ (h >>> 15)) >>> 0;
  const generation = datastore.generation;
  const cacheable = generation !== undefined && limit <= CACHE_MAX_ADDS && n === weights.datastoreMaxQuery;
  if (!cacheable) {
    addCandidates(fuser, datastore.lookup(queryViews[n], found, lookupOptions), weights, limit, -1);
    return;
  }
  let c = cache;
  if (c.hashes.length === 0) c = cache = emptyCache(CACHE_ENTRIES);
  if (c.owner !== datastore || c.weights !== weights) {
    c.adds.fill(-1);
    c.owner = datastore;
    c.weights = weights;
  }
  const slot = h & (CACHE_ENTRIES - 1);
  const recorded = c.adds[slot];
  if (recorded >= 0 && (limit <= recorded || c.complete[slot] === 1) && c.hashes[slot] === h && c.generations[slot] === generation && c.queryLengths[slot] === n && c.matches[slot] === matches) {
    let same = true;
    const qa = slot * CACHE_MAX_QUERY;
    for (let i = 0; i < n && same; i++) same = c.queries[qa + i] === q[i];
    if (same) {
      const count = Math.min(limit, recorded);
      const at = slot * CACHE_MAX_ADDS;
      for (let i = 0; i < count; i++) {
        const parent = c.parents[at + i];
        const u = fuser.add(parent < 0 ? 0 : unionOf[parent], c.tokens[at + i], c.probs[at + i], SOURCE_DATASTORE);
        if (u < 0) break;
        unionOf[i] = u;
      }
      return;
    }
  }
  c.hashes[slot] = h;
  c.generations[slot] = generation;
  c.queryLengths[slot] = n;
  c.matches[slot] = matches;
  c.queries.set(queryViews[n], slot * CACHE_MAX_QUERY);
  // A lookup that only ever serves limits up to maxLimit records no deeper (see SssdProposer's tiers).
  addCandidates(fuser, datastore.lookup(queryViews[n], found, lookupOptions), weights, limit, slot, Math.min(RECORD_POPS, lookupOptions.maxLimit ?? RECORD_POPS));
}
