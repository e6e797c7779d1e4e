/**
 * A sampled request's draft read off the model's next-token table
 * (next-token-table.ts) as a tree: best-first by the chance that each path is
 * the sample, which coupled drafting can estimate because the verifier's
 * noise is known (fusion.ts, DraftCoupling). At every node the table's
 * candidates for the path so far are ranked by log q / T + g at the index
 * they would fill (coupled-rank.ts, topCoupled) and each gets the softmax
 * share of its score against the others and the rest of the distribution
 * (coupledShares): a pick that leads by much is nearly sure and the tree
 * goes deep under it; two close ones are both drafted.
 *
 * Against the table chain (table-chain.ts: the best-ranked candidate at
 * every depth, as deep as the budget allows), on dev-sessions' sampled
 * requests as served: more tokens a step for the same nodes, and the chain
 * stops gaining past 8 nodes where the tree goes on (docs/benchmarks.md,
 * "Coupled drafts that know how sure they are"). Like the chain it keeps no
 * per-request state: a hash probe or two and a few noise draws per node.
 */
import { CandidateHeap } from './candidate-heap';
import { coupledShares, topCoupled } from './coupled-rank';
import { type DraftTree, SOURCE_DATASTORE, appendNode, resetDraftTree } from './draft-tree';
import type { NextTokenTable } from './next-token-table';
import type { ChainCoupling } from './table-chain';

/** Context tokens a table key can span. */
const CONTEXT_TAIL = 8;
/** Deepest node: a path of 8 is keyed on its own drafted tokens alone. */
export const MAX_TREE_DEPTH = 8;
/** Candidates ranked per node (the shares are a softmax over them). */
const RANKED = 4;
/** Paths less likely than this are not queued. */
const MIN_PROB = 0.002;

const heap = new CandidateHeap(256);
/** Per tree node (index = node): the context length its own lookup matched (a child's can match at most the next order up). */
let matched = new Int32Array(64);
const path = new Int32Array(CONTEXT_TAIL + MAX_TREE_DEPTH);
const rank = new Int32Array(RANKED);
const score = new Float64Array(RANKED);
const share = new Float64Array(RANKED);

/**
 * Writes into `tree` (reset to root `context[length-1]`) at most `nodes`
 * nodes continuing `context[0..length)`, the last tokens of a sequence
 * `sequenceLength` long, coupled to the request's noise (the node at depth d
 * sits at sequence index sequenceLength + d - 1); returns the nodes drafted.
 * Each node's probability is its path's estimated chance of being sampled.
 */
export function draftTableTree(
  table: NextTokenTable,
  context: ArrayLike<number>,
  length: number,
  sequenceLength: number,
  nodes: number,
  tree: DraftTree,
  coupling: ChainCoupling,
): number {
  resetDraftTree(tree, length > 0 ? context[length - 1] : 0);
  const want = Math.min(nodes, tree.tokens.length - 1);
  if (want <= 0 || length === 0) return 0;
  if (matched.length < want + 1) matched = new Int32Array(2 * (want + 1));
  const tail = Math.min(CONTEXT_TAIL, length);
  for (let i = 0; i < tail; i++) path[i] = context[length - tail + i];
  const invT = 1 / coupling.temperature;
  heap.clear();
  pushChildren(table, table.lookup(path, tail), 1, 0, sequenceLength, invT, coupling);
  matched[0] = table.lastOrder;
  while (tree.size <= want && heap.pop()) {
    const parent = heap.topB;
    const prob = heap.topProb;
    const node = appendNode(tree, parent, heap.topA, prob, SOURCE_DATASTORE);
    const depth = tree.depths[node];
    if (depth >= MAX_TREE_DEPTH || tree.size > want) continue;
    // The node's path, root's child first, after the context's tail.
    for (let p = node, d = depth; d >= 1; p = tree.parents[p], d--) path[tail + d - 1] = tree.tokens[p];
    const entry = table.lookup(path, tail + depth, table.orderAbove(matched[parent]));
    matched[node] = table.lastOrder;
    pushChildren(table, entry, prob, node, sequenceLength + depth, invT, coupling);
  }
  heap.clear();
  return tree.size - 1;
}

/** Queues the ranked candidates of `entry` under tree node `parent` (path probability `prob`), filling sequence index `index`. */
function pushChildren(table: NextTokenTable, entry: number, prob: number, parent: number, index: number, invT: number, coupling: ChainCoupling): void {
  if (entry < 0) return;
  const n = table.candidateCount(entry);
  const { tokens, probs } = table.arrays;
  const offset = entry * table.candidates;
  let m = 0;
  while (m < n && m < RANKED && probs[offset + m] > 0) m++;
  if (m === 0) return;
  topCoupled(tokens, probs, offset, n, m, invT, coupling.noise, index, rank, score);
  let ranked = 0;
  for (let r = 0; r < m; r++) ranked += probs[offset + rank[r]];
  coupledShares(score, m, Math.max(0, 1 - ranked), invT, share);
  for (let r = 0; r < m; r++) {
    const p = prob * share[r];
    if (p < MIN_PROB) break; // shares fall with rank
    heap.push(p, tokens[offset + rank[r]], parent, 0);
  }
}
