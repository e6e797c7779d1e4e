/**
 * Edge-side drafting from a user's cache, and its wire form.
 *
 * draftEdgeTrie grows a candidate trie for the continuation of a context,
 * best-first by the cache's estimated path probability: a node's next tokens
 * come from the longest context (up to the cache's maxOrder tokens, the path so
 * far included) that the cache knows, p(child) = p(node) · count/total.
 *
 * When the context's tail matches 8+ tokens of the user's history verbatim
 * (history-match.ts), what followed there is drafted first, as a chain whose
 * trust grows with the match (0.84 a token at 8, 0.98 at 64): a repeated or
 * retried request goes as deep as the pool will verify, where the n-gram
 * table alone stopped after a few tokens at every branch its other stories
 * share. The table's other guesses under the chain's nodes fill the rest.
 *
 * Wire form (little-endian): magic u32 'ETR\x01' | nodeCount u16 | flags u8
 * (bit 0: 32-bit tokens) | 0 u8 | chainNodes u16 | 6 reserved bytes, then
 * tokens (u16 or u32 each, unsigned, root first; the root's is not read), parents u16 (root: 0xffff, else <
 * own index), and the conditional probability of each node given its parent
 * as u8 (p·255). chainNodes (0 in tries without one) counts the history
 * chain's nodes: node 1 and, from each, its first child. Their probabilities
 * are measured ones and need no discount; the table's guesses do.
 *
 * EdgeTrieFollower is the pool side: it advances along accepted tokens and
 * exposes the sub-trie under its position as a candidate source.
 */
import { CandidateHeap } from './candidate-heap';
import { type DraftTree, SOURCE_EDGE, appendNode, resetDraftTree } from './draft-tree';
import { type HistoryMatch, MAX_CHAIN_MATCH, MIN_CHAIN_MATCH, chainTrust, longestHistoryMatch } from './history-match';
import { HISTORY_SEPARATOR, USER_CACHE_UNIT, type UserCache } from './user-cache';

const MAGIC = 0x01525445; // "ETR\x01"
const HEADER_BYTES = 16;
const FLAG_WIDE_TOKENS = 1;
/** Heap payload c: the u8 probability, and (history index + 1) << 8 for a chain candidate. */
const CHAIN_SHIFT = 8;

export interface EdgeTrieOptions {
  /** Nodes, root included (default 128, at most 65535). */
  maxNodes?: number;
  /** Paths less probable than this are not drafted (default 0.002). */
  minProb?: number;
  /**
   * Pseudo-occurrences added to every context's total (default 0). With 1, a
   * context seen once predicts its follower with p = 1/2, not 1; on
   * dev-sessions that made trees shallower and cost τ, so it is off.
   */
  smoothing?: number;
  /**
   * Trust in a shorter context: p × orderDecay^(maxOrder - order) (default
   * 0.6; a back-off to one token of context is a weak guess).
   */
  orderDecay?: number;
  /**
   * Draft the history's continuation of a long verbatim match first (default
   * true). Pass false for sampled requests: a sample follows the history no
   * more often than the n-gram table predicts.
   */
  historyChain?: boolean;
  /**
   * Deepest node, in tokens below the root (default: no bound). The pool
   * verifies a draft only as deep as the tokens the generation has left
   * allow, less its bonus token (row-drafting.ts draftRoom): nodes past that
   * would be drafted, shipped and decoded for nothing.
   */
  maxDepth?: number;
}

/**
 * The deepest edge trie worth drafting for a generation of `maxTokens` with
 * `outputLength` of them out: the pool verifies a draft only with a token of
 * its own after it (gpu-pool/scheduler/row-drafting.ts draftRoomFor), so one
 * token left (max_tokens 1) leaves nothing to draft. The edge keeps
 * max_tokens within the context's room, so the context bounds nothing more.
 */
export function edgeTrieDepth(maxTokens: number, outputLength: number): number {
  return Math.max(0, maxTokens - outputLength - 1);
}

const scratchHeap = new CandidateHeap(512);
const scratchMatch: HistoryMatch = { length: 0, next: -1 };

export function draftEdgeTrie(cache: UserCache, context: ArrayLike<number>, opts: EdgeTrieOptions = {}): Uint8Array {
  const maxNodes = Math.max(1, Math.min(0xffff, opts.maxNodes ?? 128));
  const minProb = opts.minProb ?? 0.002;
  const prior = Math.max(0, opts.smoothing ?? 0) * USER_CACHE_UNIT;
  const orderDecay = opts.orderDecay ?? 0.6;
  const maxDepth = Math.max(0, opts.maxDepth ?? Infinity);
  const tokens = new Int32Array(maxNodes);
  const parents = new Int32Array(maxNodes);
  const cond = new Float32Array(maxNodes);
  const cum = new Float64Array(maxNodes);
  const depth = new Int32Array(maxNodes);
  const rootToken = context.length > 0 ? context[context.length - 1] : 0;
  tokens[0] = rootToken;
  parents[0] = -1;
  cond[0] = 1;
  cum[0] = 1;
  let size = 1;
  let chainNodes = 0;
  if (!cache.isEmpty && context.length > 0 && maxDepth > 0) {
    const maxOrder = cache.maxOrder;
    // A cache decoded without its checksum (the edge's request path) may be
    // damaged: a token its vocabulary does not have is never drafted (the
    // pool would refuse the trie).
    const vocab = cache.vocabHint > 0 ? cache.vocabHint : HISTORY_SEPARATOR;
    const scratch = new Int32Array(maxOrder);
    const heap = scratchHeap;
    const history = cache.history;
    // Match length of each chain node's path with the history (chain nodes and the root only);
    // allocated only for a trie that has a chain.
    let matched: Int32Array | null = null;
    heap.clear();
    /** The table's next tokens after `node`, but `skip` (the chain's own token), scaled by `share`. */
    const expand = (node: number, skip: number, share: number): void => {
      // Last maxOrder tokens ending at `node`: the path upwards, then the context.
      let m = 0;
      for (let i = node; i > 0 && m < maxOrder; i = parents[i]) scratch[maxOrder - 1 - m++] = tokens[i];
      for (let j = context.length - 1; j >= 0 && m < maxOrder; j--) scratch[maxOrder - 1 - m++] = context[j];
      for (let order = Math.min(m, maxOrder); order >= 1; order--) {
        const slot = cache.find(scratch, maxOrder, order);
        if (slot < 0) continue;
        const total = (cache.slotTotal(slot) + prior) / orderDecay ** (maxOrder - order);
        const n = cache.slotSize(slot);
        for (let i = 0; i < n; i++) {
          const token = cache.slotToken(slot, i);
          if (token === skip || token >= vocab) continue;
          const p = (cache.slotTokenCount(slot, i) / total) * share;
          const pc = cum[node] * p;
          if (pc >= minProb) heap.push(pc, node, token, Math.round(Math.min(1, p) * 255));
        }
        return;
      }
    };
    /** Queues the history's token at `at` as the chain child of `node` (matched `length` tokens so far); returns its trust. */
    const queueChain = (node: number, at: number, length: number): number => {
      if (at >= history.length || history[at] >= vocab) return 0;
      const p = chainTrust(length);
      if (p <= 0) return 0;
      matched ??= new Int32Array(maxNodes);
      matched[node] = length;
      heap.push(cum[node] * p, node, history[at], Math.round(p * 255) | ((at + 1) << CHAIN_SHIFT));
      return p;
    };
    let rootChain = 0;
    if (opts.historyChain !== false && longestHistoryMatch(history, context, MAX_CHAIN_MATCH, scratchMatch) && scratchMatch.length >= MIN_CHAIN_MATCH) {
      rootChain = queueChain(0, scratchMatch.next, scratchMatch.length);
    }
    expand(0, rootChain > 0 ? history[scratchMatch.next] : -1, 1 - rootChain);
    while (size < maxNodes && heap.pop()) {
      const n = size++;
      const parent = heap.topA;
      const c = heap.topC;
      tokens[n] = heap.topB;
      parents[n] = parent;
      cond[n] = (c & 0xff) / 255;
      cum[n] = heap.topProb;
      depth[n] = depth[parent] + 1;
      const at = (c >>> CHAIN_SHIFT) - 1;
      // The chain child outranks its parent's other children (p ≥ 0.84 against ≤ 0.16), so it is their first.
      if (at >= 0) chainNodes++;
      // At the deepest node allowed: nothing is queued under it.
      if (depth[n] >= maxDepth) continue;
      if (at < 0) {
        expand(n, -1, 1);
        continue;
      }
      // A chain node's parent queued it, so `matched` is there.
      const p = queueChain(n, at + 1, Math.min(MAX_CHAIN_MATCH, matched![parent] + 1));
      expand(n, p > 0 ? history[at + 1] : -1, 1 - p);
    }
    heap.clear();
  }
  return encodeEdgeTrie(tokens.subarray(0, size), parents.subarray(0, size), cond.subarray(0, size), chainNodes);
}

/** `chainNodes`: the history chain's length, node 1 and first children from there (see the wire form). */
export function encodeEdgeTrie(tokens: ArrayLike<number>, parents: ArrayLike<number>, condProbs: ArrayLike<number>, chainNodes = 0): Uint8Array {
  const n = tokens.length;
  let wide = false;
  for (let i = 0; i < n; i++) if (tokens[i] > 0xffff || tokens[i] < 0) wide = true;
  const tw = wide ? 4 : 2;
  const bytes = new Uint8Array(HEADER_BYTES + n * (tw + 2 + 1));
  const view = new DataView(bytes.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint16(4, n, true);
  bytes[6] = wide ? FLAG_WIDE_TOKENS : 0;
  view.setUint16(8, Math.max(0, Math.min(n - 1, chainNodes)), true);
  let o = HEADER_BYTES;
  // Every integer of the wire form is unsigned; a negative id (none is drafted) is written as its 32-bit pattern.
  for (let i = 0; i < n; i++, o += tw) {
    if (wide) view.setUint32(o, tokens[i] >>> 0, true);
    else view.setUint16(o, tokens[i], true);
  }
  for (let i = 0; i < n; i++, o += 2) view.setUint16(o, i === 0 ? 0xffff : parents[i], true);
  for (let i = 0; i < n; i++, o++) bytes[o] = Math.round(Math.min(1, Math.max(0, condProbs[i])) * 255);
  return bytes;
}

export interface DecodedEdgeTrie {
  size: number;
  tokens: Int32Array;
  parents: Int32Array;
  /** p(node | parent), root 1. */
  condProbs: Float32Array;
  firstChild: Int32Array;
  nextSibling: Int32Array;
  /** 1 for the nodes of the history chain (calibrated probabilities, taken as they are), else 0. */
  onChain: Uint8Array;
}

/** The history chain's length a trie's header gives (0: none, or not a trie); the trie itself is not checked. */
export function historyChainNodes(bytes: Uint8Array | null | undefined): number {
  if (!bytes || bytes.byteLength < HEADER_BYTES) return 0;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return view.getUint32(0, true) === MAGIC ? view.getUint16(8, true) : 0;
}

/**
 * The first token id of a well-formed trie, past its root, that is not below
 * vocabSize, as the unsigned integer the wire holds (0xffffffff is
 * 4294967295), or null (none; or the trie is malformed, which decodeEdgeTrie
 * ignores). The pool refuses such a trie at admission: a token its model
 * does not have reached the forward pass and failed the whole batch's step,
 * every other generation in it with it. The root's token is not checked: it
 * stands for the context's last token, and no draft or pass reads it (a
 * writer may put a sentinel there, docs/protocol.md "Wire format").
 */
export function edgeTrieTokenOutside(bytes: Uint8Array, vocabSize: number): number | null {
  const h = readHeader(bytes);
  if (typeof h === 'string') return null;
  const { view, n, wide, tw } = h;
  for (let i = 1, o = HEADER_BYTES + tw; i < n; i++, o += tw) {
    const token = wide ? view.getUint32(o, true) : view.getUint16(o, true);
    if (token >= vocabSize) return token;
  }
  return null;
}

/** The node count a well-formed trie's header names, or null where `bytes` is no trie (see edgeTrieMalformation). */
export function edgeTrieNodeCount(bytes: Uint8Array): number | null {
  const h = readHeader(bytes);
  return typeof h === 'string' ? null : h.n;
}

/** The wire form's header, checked against its length; what is wrong with it when malformed. */
function readHeader(bytes: Uint8Array | null | undefined): { view: DataView; n: number; wide: boolean; tw: number } | string {
  if (!bytes || bytes.byteLength < HEADER_BYTES) return `${bytes?.byteLength ?? 0} bytes are shorter than a trie's header (${HEADER_BYTES})`;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) return 'not an edge trie (wrong magic number)';
  const n = view.getUint16(4, true);
  const wide = (bytes[6] & FLAG_WIDE_TOKENS) !== 0;
  const tw = wide ? 4 : 2;
  if (n < 1 || bytes.byteLength !== HEADER_BYTES + n * (tw + 3)) return `${bytes.byteLength} bytes do not hold the ${n} nodes its header names`;
  return { view, n, wide, tw };
}

/**
 * What makes `bytes` no edge trie (its header, its length, a node whose
 * parent does not come before it), or null for a well-formed one: the pool
 * refuses such a pushed trie with the reason, rather than answer 202 for a
 * trie decodeEdgeTrie then ignores.
 */
export function edgeTrieMalformation(bytes: Uint8Array): string | null {
  const h = readHeader(bytes);
  if (typeof h === 'string') return h;
  const { view, n, tw } = h;
  for (let i = 1, o = HEADER_BYTES + n * tw + 2; i < n; i++, o += 2) {
    const parent = view.getUint16(o, true);
    if (parent >= i) return `node ${i}'s parent ${parent} does not come before it`;
  }
  return null;
}

/** Decodes the wire form; null when malformed. */
export function decodeEdgeTrie(bytes: Uint8Array | null | undefined): DecodedEdgeTrie | null {
  const h = readHeader(bytes);
  if (typeof h === 'string' || !bytes) return null;
  const { view, n, wide, tw } = h;
  const tokens = new Int32Array(n);
  const parents = new Int32Array(n);
  const condProbs = new Float32Array(n);
  const firstChild = new Int32Array(n).fill(-1);
  const nextSibling = new Int32Array(n).fill(-1);
  let o = HEADER_BYTES;
  // Read unsigned, as written; an id past 2^31 (outside any vocabulary, refused by the pool) wraps in the Int32Array.
  for (let i = 0; i < n; i++, o += tw) tokens[i] = wide ? view.getUint32(o, true) : view.getUint16(o, true);
  for (let i = 0; i < n; i++, o += 2) parents[i] = i === 0 ? -1 : view.getUint16(o, true);
  for (let i = 0; i < n; i++, o++) condProbs[i] = i === 0 ? 1 : bytes[o] / 255;
  // Children linked in index order (most probable first, as drafted).
  const lastChild = new Int32Array(n).fill(-1);
  for (let i = 1; i < n; i++) {
    const p = parents[i];
    if (p >= i) return null;
    if (lastChild[p] < 0) firstChild[p] = i;
    else nextSibling[lastChild[p]] = i;
    lastChild[p] = i;
  }
  const onChain = new Uint8Array(n);
  const chainNodes = view.getUint16(8, true);
  for (let i = chainNodes > 0 && n > 1 && parents[1] === 0 ? 1 : -1, left = chainNodes; i > 0 && left > 0; i = firstChild[i], left--) onChain[i] = 1;
  return { size: n, tokens, parents, condProbs, firstChild, nextSibling, onChain };
}

/** Pool side: follows the accepted tokens through a shipped edge trie. */
export class EdgeTrieFollower {
  readonly trie: DecodedEdgeTrie | null;
  /** Current node; -1 once the accepted path has left the trie. */
  position: number;

  constructor(bytes: Uint8Array | null | undefined) {
    this.trie = decodeEdgeTrie(bytes);
    this.position = this.trie ? 0 : -1;
  }

  /** True once the accepted path has left the trie or reached a leaf (nothing left to propose). */
  get exhausted(): boolean {
    return this.position < 0 || this.trie === null || this.trie.firstChild[this.position] < 0;
  }

  /** Moves to the child labelled `token`; false (and position -1) when there is none. */
  advance(token: number): boolean {
    const t = this.trie;
    if (!t || this.position < 0) return false;
    for (let c = t.firstChild[this.position]; c >= 0; c = t.nextSibling[c]) {
      if (t.tokens[c] === token) {
        this.position = c;
        return true;
      }
    }
    this.position = -1;
    return false;
  }

  advanceAll(tokens: ArrayLike<number>, from = 0, to = tokens.length): boolean {
    for (let i = from; i < to; i++) if (!this.advance(tokens[i])) return false;
    return true;
  }

  /** The position's next node is on the history chain (the chain goes on from here). */
  get onChainAhead(): boolean {
    const t = this.trie;
    if (!t || this.position < 0) return false;
    const next = t.firstChild[this.position];
    return next > 0 && t.onChain[next] === 1;
  }

  /**
   * Writes the history chain ahead of the position into `tree` (reset, its
   * root the position's token), at most `nodes` of it, each node's estimate
   * the product of the trie's probabilities along it; returns how many. The
   * draft a wide batch's row can afford (no fusion: a few array reads).
   */
  chainAhead(tree: DraftTree, nodes: number): number {
    const t = this.trie;
    if (!t || this.position < 0) return 0;
    resetDraftTree(tree, t.tokens[this.position]);
    const want = Math.min(nodes, tree.tokens.length - 1);
    let prob = 1;
    let at = this.position;
    let node = 0;
    for (let d = 0; d < want; d++) {
      const next = t.firstChild[at];
      if (next <= 0 || t.onChain[next] !== 1) break;
      prob *= t.condProbs[next];
      node = appendNode(tree, node, t.tokens[next], prob, SOURCE_EDGE);
      at = next;
    }
    return tree.size - 1;
  }
}
