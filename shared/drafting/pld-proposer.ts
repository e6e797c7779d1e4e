/**
 * Prompt lookup (vLLM's `ngram` method) as a chain: for n from maxNgram down
 * to minNgram, find the LAST earlier occurrence of the context's final n tokens
 * that has at least one token after it, and propose the tokens that followed
 * it (up to the budget, not past the current end). A backward scan: cheap next
 * to a forward pass even for long contexts (vLLM does the same).
 */
import { type DraftTree, SOURCE_CONTEXT, appendNode, createDraftTree, resetDraftTree } from './draft-tree';
import type { Proposer } from './proposer';
import type { TokenBuffer } from './token-buffer';

export interface PldOptions {
  maxNgram?: number;
  minNgram?: number;
}

export class PldProposer implements Proposer {
  private tree = createDraftTree(33);
  private readonly maxNgram: number;
  private readonly minNgram: number;

  constructor(opts: PldOptions = {}) {
    this.maxNgram = Math.max(1, opts.maxNgram ?? 4);
    this.minNgram = Math.max(1, Math.min(this.maxNgram, opts.minNgram ?? 1));
  }

  observe(): void {}

  propose(context: TokenBuffer, budget: number): DraftTree {
    if (this.tree.tokens.length < budget + 1) this.tree = createDraftTree(budget + 1);
    const tree = this.tree;
    resetDraftTree(tree, context.last);
    const start = findPromptLookup(context.data, context.length, this.maxNgram, this.minNgram);
    if (start < 0) return tree;
    const end = Math.min(context.length, start + budget);
    let parent = 0;
    for (let i = start; i < end; i++) parent = appendNode(tree, parent, context.data[i], 1, SOURCE_CONTEXT);
    return tree;
  }
}

/**
 * Position of the first proposed token (the one after the match), or -1:
 * the last occurrence of tokens[length-n..length) ending before length-1, for
 * the largest n in [minNgram, maxNgram] that has one.
 */
export function findPromptLookup(tokens: ArrayLike<number>, length: number, maxNgram: number, minNgram: number): number {
  for (let n = Math.min(maxNgram, length - 1); n >= minNgram; n--) {
    const suffix = length - n;
    // Occurrence starting at i ends at i+n-1 and must leave a token after it: i+n <= length-1.
    for (let i = length - n - 1; i >= 0; i--) {
      let j = 0;
      while (j < n && tokens[i + j] === tokens[suffix + j]) j++;
      if (j === n) return i + n;
    }
  }
  return -1;
}
