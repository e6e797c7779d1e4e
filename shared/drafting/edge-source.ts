/**
 * The edge trie (drafted at the edge from the user's cache) as a fusion
 * source: the sub-trie under the follower's position, best-first by
 * weight · Π p(child|parent).
 */
import { CandidateHeap } from './candidate-heap';
import { SOURCE_EDGE } from './draft-tree';
import type { EdgeTrieFollower } from './edge-trie';
import type { FusionWeights, TreeFuser } from './fusion';

const heap = new CandidateHeap(256);

export function addEdgeCandidates(fuser: TreeFuser, follower: EdgeTrieFollower, weights: FusionWeights, limit: number): void {
  const t = follower.trie;
  const at = follower.position;
  if (!t || at < 0) return;
  heap.clear();
  // The edge's weight discounts the table's first-level guesses (over-confident, from few observations);
  // a history chain's probabilities are measured ones (history-match.ts) and go in as they are.
  for (let ch = t.firstChild[at]; ch >= 0; ch = t.nextSibling[ch]) heap.push((t.onChain[ch] ? 1 : weights.edge) * t.condProbs[ch], ch, 0, 0);
  let popped = 0;
  while (popped < limit && heap.pop()) {
    popped++;
    const node = heap.topA;
    const prob = heap.topProb;
    const u = fuser.add(heap.topB, t.tokens[node], prob, SOURCE_EDGE);
    if (u < 0) break;
    for (let ch = t.firstChild[node]; ch >= 0; ch = t.nextSibling[ch]) heap.push(prob * t.condProbs[ch], ch, u, 0);
  }
  heap.clear();
}
