/**
 * The context trie as a fusion source (SSSD draft source 1): every suffix of
 * the last q context tokens matched in the trie, each match (node, length k)
 * expanded best-first with the authors' weights.
 */
import { CandidateHeap } from './candidate-heap';
import type { ContextTrie } from './context-trie';
import { SOURCE_CONTEXT } from './draft-tree';
import type { FusionWeights, TreeFuser } from './fusion';

const heap = new CandidateHeap(256);
const matches = new Int32Array(33);

export function addContextCandidates(
  fuser: TreeFuser,
  trie: ContextTrie,
  context: ArrayLike<number>,
  end: number,
  weights: FusionWeights,
  limit: number,
): void {
  const t = trie.trie;
  const q = Math.min(32, weights.contextMaxQuery);
  const longest = trie.matchSuffixes(context, end, q, matches);
  if (longest === 0) return;
  const minProb = weights.minCandidateProb;
  heap.clear();
  for (let k = longest; k >= 1; k--) {
    const node = matches[k];
    if (node <= 0) continue;
    const scale = weights.contextFirst / t.counts[node];
    for (let ch = t.firstChild[node]; ch >= 0; ch = t.nextSibling[ch]) {
      const p = scale * t.counts[ch];
      if (p >= minProb) heap.push(p, ch, 0, k);
    }
  }
  let popped = 0;
  while (popped < limit && heap.pop()) {
    popped++;
    const node = heap.topA;
    const k = heap.topC;
    const prob = heap.topProb;
    const u = fuser.add(heap.topB, t.tokens[node], prob, SOURCE_CONTEXT);
    if (u < 0) break;
    const decay = Math.min(1, weights.contextBase + weights.contextPerMatch * k);
    const scale = (prob * decay) / t.counts[node];
    for (let ch = t.firstChild[node]; ch >= 0; ch = t.nextSibling[ch]) {
      const p = scale * t.counts[ch];
      if (p >= minProb) heap.push(p, ch, u, k);
    }
  }
  heap.clear();
}
