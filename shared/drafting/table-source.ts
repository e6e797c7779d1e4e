/**
 * The next-token table (next-token-table.ts) as a fusion source: best-first
 * expansion from the context, each node's children the table's candidates for
 * the context extended by the node's path, p(child) = weight · Π p(t | path).
 * It stands in for the datastore's n-gram counts on sampled requests, whose
 * coupled drafting needs the model's distribution rather than counts.
 *
 * Coupled, the expansion follows the noise as the fuser's selection does
 * (fusion.ts, pushChildren): a node's candidates are ranked by
 * log p / T + g, the best-ranked takes the largest p, and so on, and nodes are
 * expanded in that order. Expanding by p alone spent the source's few pops on
 * deep chains under the likeliest token and left out the first-level
 * candidates the noise favours: the fused tree's first token was the sample
 * 54% of the time against 63% for the table's own coupled pick (a table of
 * 8 candidates; sampled τ at 8 nodes 2.55, and 2.70 coupled).
 * The fuser is still given each node's own path probability.
 */
import { CandidateHeap } from './candidate-heap';
import { topCoupled } from './coupled-rank';
import { SOURCE_DATASTORE } from './draft-tree';
import type { DraftCoupling, FusionWeights, TreeFuser } from './fusion';
import type { NextTokenTable } from './next-token-table';
import type { TokenBuffer } from './token-buffer';

/** Deepest path drafted from the table (it keys on at most 8 tokens, so a path of 8 is fully its own text). */
const MAX_DEPTH = 8;
const CONTEXT_TAIL = 8;

const heap = new CandidateHeap(256);
/** Per pop: the fuser node, the pop index of its parent (-1: root), its token and depth. */
let popNode = new Int32Array(64);
let popParent = new Int32Array(64);
let popToken = new Int32Array(64);
let popDepth = new Int32Array(64);
/** Per pop: the context length its own lookup matched (a child's lookup can match at most the next order up). */
let popMatched = new Int32Array(64);
/** Per push: the candidate's own path probability (the heap orders by the coupled one). */
let pushRaw = new Float64Array(256);
let pushes = 0;
const rankScore = new Float64Array(64);
const rankOrder = new Int32Array(64);
/** The context's last tokens, then the path of the node being expanded. */
const path = new Int32Array(CONTEXT_TAIL + MAX_DEPTH);

export function addTableCandidates(
  fuser: TreeFuser,
  table: NextTokenTable,
  context: TokenBuffer,
  weights: FusionWeights,
  limit: number,
  coupling: DraftCoupling | null = null,
): void {
  const tail = Math.min(CONTEXT_TAIL, context.length);
  const data = context.data;
  for (let i = 0; i < tail; i++) path[i] = data[context.length - tail + i];
  if (popNode.length < limit) {
    const n = limit * 2;
    popNode = new Int32Array(n);
    popParent = new Int32Array(n);
    popToken = new Int32Array(n);
    popDepth = new Int32Array(n);
    popMatched = new Int32Array(n);
  }
  heap.clear();
  pushes = 0;
  const w = weights.datastore;
  pushChildren(table, table.lookup(path, tail), w, w, -1, 0, weights.minCandidateProb, coupling);
  const rootMatched = table.lastOrder;
  let popped = 0;
  while (popped < limit && heap.pop()) {
    const prob = heap.topProb;
    const token = heap.topA;
    const parent = heap.topB;
    const raw = pushRaw[heap.topC];
    const node = fuser.add(parent < 0 ? 0 : popNode[parent], token, raw, SOURCE_DATASTORE);
    if (node < 0) break;
    const self = popped++;
    popNode[self] = node;
    popParent[self] = parent;
    popToken[self] = token;
    const depth = parent < 0 ? 1 : popDepth[parent] + 1;
    popDepth[self] = depth;
    // The last pop's children could never be popped.
    if (depth >= MAX_DEPTH || popped === limit) continue;
    // The node's path, root first, after the context's tail.
    for (let p = self, d = depth; p >= 0; p = popParent[p], d--) path[tail + d - 1] = popToken[p];
    const atMost = table.orderAbove(parent < 0 ? rootMatched : popMatched[parent]);
    pushChildren(table, table.lookup(path, tail + depth, atMost), prob, raw, self, depth, weights.minCandidateProb, coupling);
    popMatched[self] = table.lastOrder;
  }
  heap.clear();
}

/** Queues an entry's candidates under a node with path probabilities `prob` (coupled) and `raw` (its own) at tree depth `depth`. */
function pushChildren(
  table: NextTokenTable,
  entry: number,
  prob: number,
  raw: number,
  parent: number,
  depth: number,
  minProb: number,
  coupling: DraftCoupling | null,
): void {
  if (entry < 0) return;
  const n = table.candidateCount(entry);
  if (pushRaw.length < pushes + n) {
    const next = new Float64Array((pushes + n) * 2);
    next.set(pushRaw);
    pushRaw = next;
  }
  if (coupling === null) {
    for (let c = 0; c < n; c++) {
      const q = table.probAt(entry, c);
      if (prob * q < minProb) break; // candidates come best first
      pushRaw[pushes] = raw * q;
      heap.push(prob * q, table.tokenAt(entry, c), parent, pushes++);
    }
    return;
  }
  // Ranks that will be queued: the rank-th largest p goes to the rank-th best
  // scored candidate, and the ranks whose p is too small are never queued, so
  // only the best m need their order (topCoupled skips draws that cannot
  // reach them).
  let m = 0;
  while (m < n && table.probAt(entry, m) > 0 && prob * table.probAt(entry, m) >= minProb) m++;
  if (m === 0) return;
  const { tokens, probs } = table.arrays;
  const offset = entry * table.candidates;
  topCoupled(tokens, probs, offset, n, m, 1 / coupling.temperature, coupling.noise, coupling.firstIndex + depth, rankOrder, rankScore);
  for (let rank = 0; rank < m; rank++) {
    const c = rankOrder[rank];
    pushRaw[pushes] = raw * probs[offset + c];
    heap.push(prob * probs[offset + rank], tokens[offset + c], parent, pushes++);
  }
}
