/**
 * A draft tree cut to a structured output's language: a draft token whose
 * text would leave the language at its node can never be accepted (the
 * verifier's target there is a token the masks allow), nor can anything
 * under it. Drafts come from the edge's trie, the context and the datastore,
 * which know nothing of a JSON schema or a regex, so on such a request most
 * of their nodes are of this kind; cut before the budget sizes the tree, the
 * pass carries only tokens that can be accepted, and the budget prices what
 * is left. The output is the same (verification is unchanged), only cheaper.
 */
import type { DraftTree } from '../../shared/drafting/draft-tree';
import { DEAD, type TextMasks } from './text-masks';

/**
 * Removes, in place, every node of `tree` whose token takes its path's text
 * out of the language (and the nodes under it), keeping the others in their
 * order; `probs`, where it is another array index-aligned with the tree's
 * nodes (a calibrated copy), is compacted alike. `scratch` holds at least
 * twice `tree.size` entries (each node's state, and its new index). Returns the tree's new size (1: the root alone).
 * A tree whose parents do not all come before their children is left as it
 * is (every drafter here writes them so; a prefix of the order is a tree).
 */
export function pruneToLanguage(tree: DraftTree, probs: Float32Array | null, masks: TextMasks, scratch: Int32Array): number {
  const { tokens, parents, depths, sources } = tree;
  const size = tree.size;
  for (let i = 1; i < size; i++) if (parents[i] >= i || parents[i] < 0) return size;
  // scratch[i]: node i's state, DEAD once it or a node above it is cut; scratch[size + i]: its index in the kept order.
  const states = scratch;
  states[0] = masks.state;
  scratch[size] = 0;
  let kept = 1;
  for (let i = 1; i < size; i++) {
    // Building within the drafts' own budget (not the request's), then over the states already built alone: a node
    // past them is kept, with what is under it, for verification to decide.
    const parentState = states[parents[i]];
    const state = parentState === DEAD ? DEAD : masks.afterForDraft(parentState, tokens[i]);
    states[i] = state;
    if (state === DEAD) continue;
    scratch[size + i] = kept;
    if (kept !== i) {
      tokens[kept] = tokens[i];
      parents[kept] = scratch[size + parents[i]];
      depths[kept] = depths[i];
      tree.probs[kept] = tree.probs[i];
      sources[kept] = sources[i];
      if (probs !== null) probs[kept] = probs[i];
    }
    kept++;
  }
  tree.size = kept;
  return kept;
}
