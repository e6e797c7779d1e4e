/**
 * Edge-side drafting from a user's cache, and its wire form.
 *
 * draftEdgeTrie grows a candidate trie for the continuation of a context,
 * best-first by the cache's estimated path probability: a node's next tokens
 * come from the longest context (up to the cache's maxOrder tokens, the path so
 * far included) that the cache knows, p(child) = p(node) · count/total.
 *
 * Wire form (little-endian): magic u32 'ETR\x01' | nodeCount u16 | flags u8
 * (bit 0: 32-bit tokens) | 0 u8 | 8 reserved bytes, then tokens (u16 or u32
 * each, root first), parents u16 (root: 0xffff, else < own index), and the
 * conditional probability of each node given its parent as u8 (p·255).
 *
 * EdgeTrieFollower is the pool side: it advances along accepted tokens and
 * exposes the sub-trie under its position as a candidate source.
 */
import { CandidateHeap } from './candidate-heap';
import { USER_CACHE_UNIT, type UserCache } from './user-cache';

const MAGIC = 0x01525445; // "ETR\x01"
const HEADER_BYTES = 16;
const FLAG_WIDE_TOKENS = 1;

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
}

const scratchHeap = new CandidateHeap(512);

export function draftEdgeTrie(cache: UserCache, context: ArrayLike<number>, opts: EdgeTrieOptions = {}): Uint8Array {
  const maxNodes = Math.max(1, Math.min(0xffff, opts.maxNodes ?? 128));
  const minProb = opts.minProb ?? 0.002;
  const prior = Math.max(0, opts.smoothing ?? 0) * USER_CACHE_UNIT;
  const orderDecay = opts.orderDecay ?? 0.6;
  const tokens = new Int32Array(maxNodes);
  const parents = new Int32Array(maxNodes);
  const cond = new Float32Array(maxNodes);
  const cum = new Float64Array(maxNodes);
  const rootToken = context.length > 0 ? context[context.length - 1] : 0;
  tokens[0] = rootToken;
  parents[0] = -1;
  cond[0] = 1;
  cum[0] = 1;
  let size = 1;
  if (!cache.isEmpty && context.length > 0) {
    const maxOrder = cache.maxOrder;
    const scratch = new Int32Array(maxOrder);
    const heap = scratchHeap;
    heap.clear();
    const expand = (node: number): void => {
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
          const p = cache.slotTokenCount(slot, i) / total;
          const pc = cum[node] * p;
          if (pc >= minProb) heap.push(pc, node, cache.slotToken(slot, i), Math.round(Math.min(1, p) * 255));
        }
        return;
      }
    };
    expand(0);
    while (size < maxNodes && heap.pop()) {
      const n = size++;
      tokens[n] = heap.topB;
      parents[n] = heap.topA;
      cond[n] = heap.topC / 255;
      cum[n] = heap.topProb;
      expand(n);
    }
    heap.clear();
  }
  return encodeEdgeTrie(tokens.subarray(0, size), parents.subarray(0, size), cond.subarray(0, size));
}

export function encodeEdgeTrie(tokens: ArrayLike<number>, parents: ArrayLike<number>, condProbs: ArrayLike<number>): Uint8Array {
  const n = tokens.length;
  let wide = false;
  for (let i = 0; i < n; i++) if (tokens[i] > 0xffff || tokens[i] < 0) wide = true;
  const tw = wide ? 4 : 2;
  const bytes = new Uint8Array(HEADER_BYTES + n * (tw + 2 + 1));
  const view = new DataView(bytes.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint16(4, n, true);
  bytes[6] = wide ? FLAG_WIDE_TOKENS : 0;
  let o = HEADER_BYTES;
  for (let i = 0; i < n; i++, o += tw) {
    if (wide) view.setInt32(o, tokens[i], true);
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
}

/** Decodes the wire form; null when malformed. */
export function decodeEdgeTrie(bytes: Uint8Array | null | undefined): DecodedEdgeTrie | null {
  if (!bytes || bytes.byteLength < HEADER_BYTES) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) return null;
  const n = view.getUint16(4, true);
  const wide = (bytes[6] & FLAG_WIDE_TOKENS) !== 0;
  const tw = wide ? 4 : 2;
  if (n < 1 || bytes.byteLength !== HEADER_BYTES + n * (tw + 3)) return null;
  const tokens = new Int32Array(n);
  const parents = new Int32Array(n);
  const condProbs = new Float32Array(n);
  const firstChild = new Int32Array(n).fill(-1);
  const nextSibling = new Int32Array(n).fill(-1);
  let o = HEADER_BYTES;
  for (let i = 0; i < n; i++, o += tw) tokens[i] = wide ? view.getInt32(o, true) : view.getUint16(o, true);
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
  return { size: n, tokens, parents, condProbs, firstChild, nextSibling };
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
}
