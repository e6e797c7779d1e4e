/**
 * The cheapest draft there is: a short chain read off the model's next-token
 * table (next-token-table.ts), the table's best continuation of the last
 * tokens, then of that, and so on. No per-request state (no context trie, no
 * datastore lookup): a chain costs a hash probe or two per node, against
 * 40-130 µs for a fused tree's sources. It is what a wide batch can afford:
 * on a CPU a draft token there costs about half a decode row, and the fused
 * drafter's own time about a whole one, which is why the full drafter stops
 * from 16 rows on.
 *
 * Greedy: the table's first candidate (the most probable token under the
 * model's mean distribution for that context). Sampled (coupled): the
 * candidate with the best log q / T + g at that position, as the table source
 * ranks it (table-source.ts), estimated at the largest q of the entry (the
 * rank-th largest q goes with the rank-th ranked candidate).
 */
import { topCoupled } from './coupled-rank';
import { type DraftTree, SOURCE_DATASTORE, appendNode, resetDraftTree } from './draft-tree';
import type { NextTokenTable } from './next-token-table';
import type { GumbelNoise } from '../sampling/gumbel-noise';

/** Context tokens a table key can span. */
const CONTEXT_TAIL = 8;
/** Longest chain drafted. */
export const MAX_CHAIN = 8;

/** A sampled request's noise, as the pool's verifier draws it. */
export interface ChainCoupling {
  noise: GumbelNoise;
  temperature: number;
}

const path = new Int32Array(CONTEXT_TAIL + MAX_CHAIN);
const rank = new Int32Array(1);
const score = new Float64Array(1);

/**
 * Writes into `tree` (reset to root `context[length-1]`) a chain of at most
 * `nodes` tokens continuing `context[0..length)`, the last tokens of a
 * sequence `sequenceLength` long; returns the chain's length. `coupling` set:
 * the drafts follow the request's noise (the node at depth d sits at sequence
 * index sequenceLength + d - 1).
 */
export function draftTableChain(
  table: NextTokenTable,
  context: ArrayLike<number>,
  length: number,
  sequenceLength: number,
  nodes: number,
  tree: DraftTree,
  coupling: ChainCoupling | null = null,
): number {
  resetDraftTree(tree, length > 0 ? context[length - 1] : 0);
  const want = Math.min(nodes, MAX_CHAIN, tree.tokens.length - 1);
  if (want <= 0 || length === 0) return 0;
  const tail = Math.min(CONTEXT_TAIL, length);
  for (let i = 0; i < tail; i++) path[i] = context[length - tail + i];
  let entry = table.lookup(path, tail);
  let prob = 1;
  let node = 0;
  for (let d = 1; d <= want && entry >= 0; d++) {
    let pick = 0;
    if (coupling) {
      const n = table.candidateCount(entry);
      if (n === 0 || !(table.probAt(entry, 0) > 0)) break;
      const { tokens, probs } = table.arrays;
      topCoupled(tokens, probs, entry * table.candidates, n, 1, 1 / coupling.temperature, coupling.noise, sequenceLength + d - 1, rank, score);
      pick = rank[0];
    }
    const token = table.tokenAt(entry, pick);
    if (token < 0) break;
    // The estimate is the entry's largest q either way (see above).
    prob *= table.probAt(entry, 0);
    node = appendNode(tree, node, token, prob, SOURCE_DATASTORE);
    path[tail + d - 1] = token;
    if (d < want) entry = table.lookup(path, tail + d, table.orderAbove(table.lastOrder));
  }
  return tree.size - 1;
}
