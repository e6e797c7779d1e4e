/**
 * The global datastore as a fusion source (SSSD draft source 2): the
 * continuations of the lookup's matches go into a small scratch count trie,
 * expanded best-first with p(child) = weight · Π c(child)/c(parent).
 */
import { CandidateHeap } from './candidate-heap';
import { CountTrie } from './count-trie';
import { SOURCE_DATASTORE } from './draft-tree';
import type { FusionWeights, TreeFuser } from './fusion';

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
  lookup(
    context: ArrayLike<number>,
    out?: DatastoreMatchesLike,
    opts?: { maxQuery?: number; width?: number; maxMatches?: number; minMatches?: number },
  ): DatastoreMatchesLike;
}

const scratch = new CountTrie({ initialNodes: 4096, maxNodes: 1 << 16 });
const heap = new CandidateHeap(256);

export function addDatastoreCandidates(fuser: TreeFuser, found: DatastoreMatchesLike, weights: FusionWeights, limit: number): void {
  if (found.count === 0) return;
  const t = scratch;
  t.clear();
  const { width, tokens } = found;
  const power = weights.datastoreMatchPower;
  for (let m = 0; m < found.count; m++) {
    let node = 0;
    const base = m * width;
    if (tokens[base] < 0) continue;
    const weight = power === 0 ? 1 : Math.max(1, Math.round(found.matchLengths[m] ** power));
    t.counts[0] += weight;
    for (let j = 0; j < width; j++) {
      const tok = tokens[base + j];
      if (tok < 0) break;
      node = t.child(node, tok);
      if (node < 0) break;
      t.counts[node] += weight;
    }
  }
  if (t.counts[0] === 0) return;
  heap.clear();
  const rootCount = t.counts[0];
  for (let ch = t.firstChild[0]; ch >= 0; ch = t.nextSibling[ch]) heap.push((weights.datastore * t.counts[ch]) / rootCount, ch, 0, 0);
  let popped = 0;
  while (popped < limit && heap.pop()) {
    popped++;
    const node = heap.topA;
    const prob = heap.topProb;
    const u = fuser.add(heap.topB, t.tokens[node], prob, SOURCE_DATASTORE);
    if (u < 0) break;
    const c = t.counts[node];
    for (let ch = t.firstChild[node]; ch >= 0; ch = t.nextSibling[ch]) heap.push((prob * t.counts[ch]) / c, ch, u, 0);
  }
  heap.clear();
}
