/**
 * The draft tree the pool verifies: node 0 is the root (the last accepted
 * token, already known), nodes 1..size-1 are draft tokens. parents[i] < i for
 * every draft node, so a single forward scan sees parents before children and
 * the runtime can build the tree-attention mask from `parents` alone.
 */
export interface DraftTree {
  /** Nodes, root (index 0) included. */
  size: number;
  tokens: Int32Array;
  /** parents[0] = -1. */
  parents: Int32Array;
  /** depths[0] = 0; position id of node i = contextLength - 1 + depths[i]. */
  depths: Int32Array;
  /** Estimated probability that the node is accepted (root: 1). */
  probs: Float32Array;
  /** Index into `tokenSources` of shared/protocol.ts (root: 0 = 'model'). */
  sources: Uint8Array;
}

/** Source ids, the indices of `tokenSources` in shared/protocol.ts. */
export const SOURCE_MODEL = 0;
export const SOURCE_EDGE = 1;
export const SOURCE_CONTEXT = 2;
export const SOURCE_DATASTORE = 3;

/** A tree with room for `capacity` nodes (root included), holding just the root. */
export function createDraftTree(capacity: number, rootToken = 0): DraftTree {
  const n = Math.max(1, capacity | 0);
  const tree: DraftTree = {
    size: 1,
    tokens: new Int32Array(n),
    parents: new Int32Array(n),
    depths: new Int32Array(n),
    probs: new Float32Array(n),
    sources: new Uint8Array(n),
  };
  resetDraftTree(tree, rootToken);
  return tree;
}

export function resetDraftTree(tree: DraftTree, rootToken: number): void {
  tree.size = 1;
  tree.tokens[0] = rootToken;
  tree.parents[0] = -1;
  tree.depths[0] = 0;
  tree.probs[0] = 1;
  tree.sources[0] = SOURCE_MODEL;
}

/** Appends a node under `parent` (which must already be in the tree); returns its index. */
export function appendNode(tree: DraftTree, parent: number, token: number, prob: number, source: number): number {
  const i = tree.size;
  if (i >= tree.tokens.length) throw new RangeError('draft tree is full');
  if (parent < 0 || parent >= i) throw new RangeError(`parent ${parent} is not in the tree`);
  tree.tokens[i] = token;
  tree.parents[i] = parent;
  tree.depths[i] = tree.depths[parent] + 1;
  tree.probs[i] = prob;
  tree.sources[i] = source;
  tree.size = i + 1;
  return i;
}

/** Tokens on the path root → node, root excluded. */
export function pathTokens(tree: DraftTree, node: number): number[] {
  const out: number[] = [];
  for (let i = node; i > 0; i = tree.parents[i]) out.push(tree.tokens[i]);
  return out.reverse();
}

/**
 * Greedy verification against a known continuation: the longest root path
 * whose tokens equal continuation[offset..]. Returns the node where it ends
 * (0 = nothing accepted); its depth is the number of accepted draft tokens.
 */
export function longestMatchingPath(tree: DraftTree, continuation: ArrayLike<number>, offset: number): number {
  let node = 0;
  let depth = 0;
  for (;;) {
    const pos = offset + depth;
    if (pos >= continuation.length) return node;
    const want = continuation[pos];
    let next = -1;
    // Children of `node` come after it; parents[i] < i keeps this a forward scan.
    for (let i = node + 1; i < tree.size; i++) {
      if (tree.parents[i] === node && tree.tokens[i] === want) {
        next = i;
        break;
      }
    }
    if (next < 0) return node;
    node = next;
    depth++;
  }
}

/** Checks the structural invariants; returns a reason or null. */
export function validateDraftTree(tree: DraftTree): string | null {
  if (tree.size < 1) return 'empty tree';
  if (tree.parents[0] !== -1 || tree.depths[0] !== 0) return 'bad root';
  for (let i = 1; i < tree.size; i++) {
    const p = tree.parents[i];
    if (p < 0 || p >= i) return `node ${i}: parent ${p} not before it`;
    if (tree.depths[i] !== tree.depths[p] + 1) return `node ${i}: depth ${tree.depths[i]} != parent's + 1`;
  }
  return null;
}
