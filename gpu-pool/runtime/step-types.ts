/**
 * What one forward pass of the verification graph takes and returns.
 *
 * A step runs B rows. Row b feeds T_b new tokens (padded to T = max T_b): the
 * row's tokens whose keys/values are not cached yet, as a chain (usually just
 * the last emitted one; its last is the tree's root), then draft-tree nodes,
 * every one with parents[i] < i. Each
 * new token attends to the row's cached past (pastLength[b] positions) and to
 * its own ancestors (itself included) among the new tokens. Its position id is
 * pastLength[b] + depth(i).
 *
 * Layouts are row-major and dense; the runtime owns all padding.
 */
export interface StepRow {
  /** New token ids: the uncached chain (ending at the root), then the tree. */
  tokens: Int32Array;
  /** parents[i] = index of i's parent among `tokens`; parents[0] = -1. */
  parents: Int32Array;
}
