/**
 * What one forward pass of the verification graph takes and returns.
 *
 * A step runs B rows. Row b feeds T_b new tokens (padded to T = max T_b):
 * index 0 is the row's root (the last emitted token, whose keys/values are not
 * cached yet) and indices 1.. are draft-tree nodes with parents[i] < i. Each
 * new token attends to the row's cached past (pastLength[b] positions) and to
 * its own ancestors (itself included) among the new tokens. Its position id is
 * pastLength[b] + depth(i).
 *
 * Layouts are row-major and dense; the runtime owns all padding.
 */
export interface StepRow {
  /** New token ids, root first. */
  tokens: Int32Array;
  /** parents[i] = index of i's parent among `tokens`; parents[0] = -1. */
  parents: Int32Array;
}

export interface StepLogits {
  /** [B, T, vocab] (T = padded new tokens per row). */
  logits: Float32Array;
  batch: number;
  tokensPerRow: number;
  vocabSize: number;
}
