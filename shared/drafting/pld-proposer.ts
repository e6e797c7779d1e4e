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

  /** A predicted output, looked up where the context has no match. */
  private prediction: Int32Array | null = null;

  observe(): void {}

  predict(tokens: ArrayLike<number>): void {
    this.prediction = tokens.length > 0 ? Int32Array.from(tokens) : null;
  }

  propose(context: TokenBuffer, budget: number): DraftTree {
    if (this.tree.tokens.length < budget + 1) this.tree = createDraftTree(budget + 1);
    const tree = this.tree;
    resetDraftTree(tree, context.last);
    let source: ArrayLike<number> = context.data;
    let sourceLength = context.length;
    let start = findPromptLookup(context.data, context.length, this.maxNgram, this.minNgram);
    if (start < 0 && this.prediction) {
      start = findInText(this.prediction, context.data, context.length, this.maxNgram, this.minNgram);
      source = this.prediction;
      sourceLength = this.prediction.length;
    }
    if (start < 0) return tree;
    const end = Math.min(sourceLength, start + budget);
    let parent = 0;
    for (let i = start; i < end; i++) parent = appendNode(tree, parent, source[i], 1, SOURCE_CONTEXT);
    return tree;
  }
}

/**
 * Position of the first proposed token (the one after the match), or -1:
 * the last occurrence of tokens[length-n..length) ending before length-1, for
 * the largest n in [minNgram, maxNgram] that has one.
 */
function findPromptLookup(tokens: ArrayLike<number>, length: number, maxNgram: number, minNgram: number): number {
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

/**
 * Position in `text` of the token after the last occurrence there of the
 * context's final n tokens (largest n in [minNgram, maxNgram] that has one
 * with a token after it), or -1.
 */
function findInText(text: ArrayLike<number>, context: ArrayLike<number>, length: number, maxNgram: number, minNgram: number): number {
  for (let n = Math.min(maxNgram, length); n >= minNgram; n--) {
    const suffix = length - n;
    for (let i = text.length - n - 1; i >= 0; i--) {
      let j = 0;
      while (j < n && text[i + j] === context[suffix + j]) j++;
      if (j === n) return i + n;
    }
  }
  return -1;
}
