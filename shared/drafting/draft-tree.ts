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

// Wire encoding: "DTR" + version, u16 size, then tokens i32, parents u16,
// probs as u16 (p * 65535), sources u8. Depths are derived from parents.
const WIRE_MAGIC = 0x44545201; // 'D' 'T' 'R' v1
const WIRE_HEADER = 8;

export function encodeDraftTree(tree: DraftTree): Uint8Array {
  const n = tree.size;
  if (n > 0xffff) throw new RangeError('draft tree too large for the wire format');
  const bytes = new Uint8Array(WIRE_HEADER + n * (4 + 2 + 2 + 1));
  const view = new DataView(bytes.buffer);
  view.setUint32(0, WIRE_MAGIC, true);
  view.setUint16(4, n, true);
  let o = WIRE_HEADER;
  for (let i = 0; i < n; i++, o += 4) view.setInt32(o, tree.tokens[i], true);
  for (let i = 0; i < n; i++, o += 2) view.setUint16(o, i === 0 ? 0xffff : tree.parents[i], true);
  for (let i = 0; i < n; i++, o += 2) view.setUint16(o, Math.round(Math.min(1, Math.max(0, tree.probs[i])) * 0xffff), true);
  for (let i = 0; i < n; i++, o += 1) bytes[o] = tree.sources[i];
  return bytes;
}

/** Decodes the wire form; throws RangeError on malformed input. */
export function decodeDraftTree(bytes: Uint8Array): DraftTree {
  if (bytes.length < WIRE_HEADER) throw new RangeError('draft tree: truncated header');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== WIRE_MAGIC) throw new RangeError('draft tree: bad magic or version');
  const n = view.getUint16(4, true);
  if (n < 1 || bytes.length !== WIRE_HEADER + n * 9) throw new RangeError('draft tree: bad length');
  const tree = createDraftTree(n);
  let o = WIRE_HEADER;
  for (let i = 0; i < n; i++, o += 4) tree.tokens[i] = view.getInt32(o, true);
  for (let i = 0; i < n; i++, o += 2) {
    const p = view.getUint16(o, true);
    tree.parents[i] = i === 0 ? -1 : p;
  }
  for (let i = 0; i < n; i++, o += 2) tree.probs[i] = view.getUint16(o, true) / 0xffff;
  for (let i = 0; i < n; i++, o += 1) tree.sources[i] = bytes[o];
  tree.size = n;
  for (let i = 1; i < n; i++) {
    const p = tree.parents[i];
    if (p >= i) throw new RangeError(`draft tree: node ${i} has parent ${p}`);
    tree.depths[i] = tree.depths[p] + 1;
  }
  return tree;
}
