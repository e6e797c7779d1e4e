/**
 * The model's own next-token distributions, keyed by the last k tokens: for
 * every k-gram context (k in NEXT_TOKEN_ORDERS) seen at two or more positions
 * of text the model wrote or read (its continuations and the corpus), the
 * mean of the model's next-token probabilities there, its best
 * NEXT_TOKEN_CANDIDATES tokens kept.
 *
 * Why: a sampled request accepts a drafted token when it is the model's own
 * sample, and drafting is coupled to the sampling noise (fusion.ts): among a
 * node's candidates the drafter puts first the one with the best
 * log q / T + g. That picks the sample whenever q is the model's distribution
 * and the sample is a candidate. n-gram counts are a poor q: one observed
 * token per occurrence. The mean of the model's whole distribution over the
 * same occurrences is a far better one, and it lists the tokens the model
 * could sample, not just those it happened to. On dev-sessions' sampled
 * requests (their true contexts and noise), the table's own coupled pick is
 * the model's sample 65% of the time, and the sample is among its 12
 * candidates 90%; the fused tree's first token under the datastore's counts
 * was the sample 50%. As served (eval-drafts), the sampled requests' mean
 * acceptance length at 8 / 16 / 32 draft nodes went from 2.49 / 2.82 / 3.11
 * to 2.74 / 3.10 / 3.50. Greedy requests keep the datastore: their
 * continuations are in it word for word, and the table drafted them worse
 * (5.14 → 4.53 at 8 nodes).
 * Nothing is trained: the distributions are the model's, read off while
 * `datastore build --model` generates its continuations.
 *
 * Isomorphic and allocation-free on lookup: open addressing over two 32-bit
 * hashes of (k, tokens), typed arrays only.
 */

/** Context lengths kept, longest first: a lookup takes the longest that is present. */
export const NEXT_TOKEN_ORDERS: readonly number[] = [8, 6, 4, 3, 2];
/** Tokens kept per context. */
export const NEXT_TOKEN_CANDIDATES = 12;
const MAX_ORDER = 8;
/** Occurrences a context of 3+ tokens needs to be kept (one is a single sample of the model's path, not a distribution's mean). */
const MIN_POSITIONS = 2;
/** Tokens accumulated per context while building (the best CANDIDATES are kept). */
const ACCUMULATE = 16;

function mixA(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

function mixB(h: number): number {
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  h = Math.imul(h, 0x297a2d39);
  h ^= h >>> 15;
  return h >>> 0;
}

/**
 * Keys of the tail `tokens[end-k..end)` for k = 1..min(MAX_ORDER, longest), into
 * keysA/keysB[k] (longest ≤ end). Hashed from the last token backwards, so each order costs one step.
 */
function tailKeys(tokens: ArrayLike<number>, longest: number, end: number, keysA: Uint32Array, keysB: Uint32Array): number {
  const n = Math.min(MAX_ORDER, longest);
  let a = 0x9e3779b9;
  let b = 0x85ebca6b;
  for (let k = 1; k <= n; k++) {
    const t = tokens[end - k] + 1;
    a = mixA(a ^ Math.imul(t, 0xcc9e2d51));
    b = mixB((b + Math.imul(t, 0x1b873593)) >>> 0);
    keysA[k] = mixA(a ^ k) | 0;
    keysB[k] = mixB((b + k) >>> 0) | 0;
  }
  return n;
}

export interface NextTokenTableArrays {
  /** The orders the table was built with (NEXT_TOKEN_ORDERS when built here). */
  orders: number[];
  /** Tokens per entry. */
  candidates: number;
  keysA: Uint32Array;
  keysB: Uint32Array;
  /** entries × candidates tokens, best first; -1 where an entry has fewer. */
  tokens: Int32Array;
  /** entries × candidates mean probabilities, matching `tokens`. */
  probs: Float32Array;
}

export class NextTokenTable {
  readonly orders: readonly number[];
  readonly candidates: number;
  private readonly slots: Int32Array;
  private readonly mask: number;
  private readonly keysScratchA = new Uint32Array(MAX_ORDER + 1);
  private readonly keysScratchB = new Uint32Array(MAX_ORDER + 1);

  constructor(readonly arrays: NextTokenTableArrays) {
    const { keysA, keysB, tokens, probs, candidates, orders } = arrays;
    const n = keysA.length;
    if (keysB.length !== n || tokens.length !== n * candidates || probs.length !== n * candidates) {
      throw new RangeError('next-token table arrays disagree in length');
    }
    if (orders.some((k) => !Number.isInteger(k) || k < 1 || k > MAX_ORDER)) throw new RangeError(`next-token table orders must be 1..${MAX_ORDER}`);
    this.orders = [...orders].sort((x, y) => y - x);
    for (let o = 0; o <= MAX_ORDER; o++) {
      let above = MAX_ORDER;
      for (const k of this.orders) if (k > o && k < above) above = k;
      this.above[o] = above;
    }
    this.candidates = candidates;
    let cap = 16;
    while (cap < n * 2) cap *= 2;
    this.slots = new Int32Array(cap).fill(-1);
    this.mask = cap - 1;
    for (let e = 0; e < n; e++) {
      let s = keysA[e] & this.mask;
      while (this.slots[s] >= 0) s = (s + 1) & this.mask;
      this.slots[s] = e;
    }
  }

  /** Contexts held. */
  get size(): number {
    return this.arrays.keysA.length;
  }

  private find(a: number, b: number): number {
    const { keysA, keysB } = this.arrays;
    for (let s = a & this.mask; ; s = (s + 1) & this.mask) {
      const e = this.slots[s];
      if (e < 0) return -1;
      if (keysA[e] === a >>> 0 && keysB[e] === b >>> 0) return e;
    }
  }

  /**
   * The entry of the longest kept context ending at `end` (`tokens[end-k..end)`),
   * no longer than `atMost` tokens, or -1. Read its candidates with `tokenAt` /
   * `probAt`, and the context's length from `lastOrder`.
   */
  lookup(tokens: ArrayLike<number>, end: number, atMost = MAX_ORDER): number {
    const ka = this.keysScratchA;
    const kb = this.keysScratchB;
    const n = tailKeys(tokens, Math.min(end, Math.max(0, atMost)), end, ka, kb);
    for (const k of this.orders) {
      if (k > n) continue;
      const e = this.find(ka[k], kb[k]);
      if (e >= 0) {
        this.lastOrder = k;
        return e;
      }
    }
    this.lastOrder = 0;
    return -1;
  }

  /** The context length the last lookup matched (0: none). */
  lastOrder = 0;

  /**
   * The longest context worth trying for a continuation of a context matched
   * at `order`: the next order up. A longer one would need its first tokens
   * kept as a context too, and they were not (else the lookup had matched
   * more). Only where the build saw a context's continuations but not the
   * context itself (the model's distributions start after a prompt) is a
   * longer match missed: 42 of 237,828 continuations of the default table's
   * contexts, each drafting from a shorter context instead. Bounding the
   * table source's lookups so cut its cost by a quarter (the failed probes of
   * longer contexts were cache misses).
   */
  orderAbove(order: number): number {
    return this.above[Math.max(0, Math.min(MAX_ORDER, order | 0))];
  }

  /** orderAbove by order (0..MAX_ORDER), made once. */
  private readonly above = new Int32Array(MAX_ORDER + 1);

  /** How many candidates entry `e` holds (the rest of its slots are -1). */
  candidateCount(e: number): number {
    let n = 0;
    while (n < this.candidates && this.tokenAt(e, n) >= 0) n++;
    return n;
  }

  /** Candidate `i` of entry `e` (best first); -1 past its last. */
  tokenAt(e: number, i: number): number {
    return this.arrays.tokens[e * this.candidates + i];
  }

  /** Mean model probability of candidate `i` of entry `e`. */
  probAt(e: number, i: number): number {
    return this.arrays.probs[e * this.candidates + i];
  }
}

/**
 * Accumulates the model's distributions position by position (`add`), then
 * `build`s the table. Memory: open addressing over every distinct context
 * seen, ACCUMULATE (token, sum) pairs each.
 */
export class NextTokenTableBuilder {
  private keysA: Uint32Array;
  private keysB: Uint32Array;
  private positions: Uint32Array;
  private orderOf: Uint8Array;
  private accTokens: Int32Array;
  private accSums: Float32Array;
  private accUsed: Uint8Array;
  private slots: Int32Array;
  private count = 0;
  private readonly ka = new Uint32Array(MAX_ORDER + 1);
  private readonly kb = new Uint32Array(MAX_ORDER + 1);
  private readonly topTokens = new Int32Array(NEXT_TOKEN_CANDIDATES);
  private readonly topProbs = new Float32Array(NEXT_TOKEN_CANDIDATES);
  private probs: Float32Array;

  constructor(readonly vocabSize: number, initialEntries = 1 << 16) {
    // The slots are probed by a mask: a power of two, or the probe circles a few slots for ever.
    initialEntries = 2 ** Math.ceil(Math.log2(Math.max(2, initialEntries)));
    this.keysA = new Uint32Array(initialEntries);
    this.keysB = new Uint32Array(initialEntries);
    this.positions = new Uint32Array(initialEntries);
    this.orderOf = new Uint8Array(initialEntries);
    this.accTokens = new Int32Array(initialEntries * ACCUMULATE);
    this.accSums = new Float32Array(initialEntries * ACCUMULATE);
    this.accUsed = new Uint8Array(initialEntries);
    this.slots = new Int32Array(initialEntries * 4).fill(-1);
    this.probs = new Float32Array(vocabSize);
  }

  /** Positions added so far that had a context. */
  added = 0;

  /**
   * One position: `logits` are the model's for the token after
   * `tokens[0..end)` (only the last MAX_ORDER tokens are read).
   */
  add(tokens: ArrayLike<number>, end: number, logits: ArrayLike<number>): void {
    const V = this.vocabSize;
    if (logits.length < V) throw new RangeError(`logits hold ${logits.length} values, the vocabulary ${V}`);
    // Softmax, then the best few by insertion.
    let max = -Infinity;
    for (let v = 0; v < V; v++) if (logits[v] > max) max = logits[v];
    let sum = 0;
    const p = this.probs;
    for (let v = 0; v < V; v++) sum += p[v] = Math.exp(logits[v] - max);
    const tt = this.topTokens;
    const tp = this.topProbs;
    let kept = 0;
    for (let v = 0; v < V; v++) {
      const x = p[v] / sum;
      if (kept === NEXT_TOKEN_CANDIDATES && x <= tp[kept - 1]) continue;
      let i = kept < NEXT_TOKEN_CANDIDATES ? kept++ : kept - 1;
      while (i > 0 && tp[i - 1] < x) {
        tp[i] = tp[i - 1];
        tt[i] = tt[i - 1];
        i--;
      }
      tp[i] = x;
      tt[i] = v;
    }
    const n = tailKeys(tokens, end, end, this.ka, this.kb);
    if (n === 0) return;
    this.added++;
    for (const k of NEXT_TOKEN_ORDERS) {
      if (k > n) continue;
      const e = this.entry(this.ka[k], this.kb[k], k);
      this.positions[e]++;
      const at = e * ACCUMULATE;
      let used = this.accUsed[e];
      for (let c = 0; c < kept; c++) {
        const tok = tt[c];
        let j = 0;
        while (j < used && this.accTokens[at + j] !== tok) j++;
        if (j === used) {
          if (used === ACCUMULATE) continue; // a rare token of this context: its mass is left out
          this.accTokens[at + j] = tok;
          used++;
        }
        this.accSums[at + j] += tp[c];
      }
      this.accUsed[e] = used;
    }
  }

  private entry(a: number, b: number, k: number): number {
    const mask = this.slots.length - 1;
    let s = a & mask;
    for (; ; s = (s + 1) & mask) {
      const e = this.slots[s];
      if (e < 0) break;
      if (this.keysA[e] === a && this.keysB[e] === b) return e;
    }
    if (this.count === this.keysA.length) {
      this.grow();
      return this.entry(a, b, k);
    }
    const e = this.count++;
    this.slots[s] = e;
    this.keysA[e] = a;
    this.keysB[e] = b;
    this.orderOf[e] = k;
    return e;
  }

  private grow(): void {
    const n = this.keysA.length * 2;
    const copy = <T extends Uint32Array | Int32Array | Float32Array | Uint8Array>(old: T, make: (len: number) => T, len: number): T => {
      const next = make(len);
      next.set(old);
      return next;
    };
    this.keysA = copy(this.keysA, (l) => new Uint32Array(l), n);
    this.keysB = copy(this.keysB, (l) => new Uint32Array(l), n);
    this.positions = copy(this.positions, (l) => new Uint32Array(l), n);
    this.orderOf = copy(this.orderOf, (l) => new Uint8Array(l), n);
    this.accUsed = copy(this.accUsed, (l) => new Uint8Array(l), n);
    this.accTokens = copy(this.accTokens, (l) => new Int32Array(l), n * ACCUMULATE);
    this.accSums = copy(this.accSums, (l) => new Float32Array(l), n * ACCUMULATE);
    this.slots = new Int32Array(n * 4).fill(-1);
    const mask = this.slots.length - 1;
    for (let e = 0; e < this.count; e++) {
      let s = this.keysA[e] & mask;
      while (this.slots[s] >= 0) s = (s + 1) & mask;
      this.slots[s] = e;
    }
  }

  /** The table: contexts of 3+ tokens seen at fewer than two positions are left out. */
  build(): NextTokenTable {
    const C = NEXT_TOKEN_CANDIDATES;
    let kept = 0;
    for (let e = 0; e < this.count; e++) if (this.keep(e)) kept++;
    const out: NextTokenTableArrays = {
      orders: [...NEXT_TOKEN_ORDERS],
      candidates: C,
      keysA: new Uint32Array(kept),
      keysB: new Uint32Array(kept),
      tokens: new Int32Array(kept * C).fill(-1),
      probs: new Float32Array(kept * C),
    };
    const order = new Int32Array(ACCUMULATE);
    let o = 0;
    for (let e = 0; e < this.count; e++) {
      if (!this.keep(e)) continue;
      out.keysA[o] = this.keysA[e];
      out.keysB[o] = this.keysB[e];
      const n = this.positions[e];
      const at = e * ACCUMULATE;
      const used = this.accUsed[e];
      for (let j = 0; j < used; j++) order[j] = j;
      const sums = this.accSums;
      const sorted = Array.from(order.subarray(0, used)).sort((x, y) => sums[at + y] - sums[at + x]);
      for (let c = 0; c < Math.min(C, used); c++) {
        out.tokens[o * C + c] = this.accTokens[at + sorted[c]];
        out.probs[o * C + c] = sums[at + sorted[c]] / n;
      }
      o++;
    }
    return new NextTokenTable(out);
  }

  private keep(e: number): boolean {
    return this.orderOf[e] <= 2 || this.positions[e] >= MIN_POSITIONS;
  }
}
