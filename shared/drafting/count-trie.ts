/**
 * A count trie in a flat typed-array node pool: node 0 is the root, every other
 * node has (parent, token, count) and is linked into its parent's child list
 * (firstChild / nextSibling, newest first). Child lookup by (parent, token) goes
 * through an open-addressing hash table, so inserting is O(1) per token whatever
 * the vocabulary size; enumeration walks the sibling list.
 *
 * Growth: the pool doubles up to `maxNodes`. Once full, new nodes are refused
 * (`child` returns -1) while existing nodes keep counting: the trie keeps the
 * n-grams it saw first and their counts stay exact; only n-grams first seen after
 * the cap are missing. For a prompt of N tokens and windows of W, a full trie
 * needs at most N·W nodes; the default cap (1M nodes, ~28 MiB with the hash
 * table) covers a 128K-token prompt at W=8, 64K at W=16. Memory follows use:
 * the pool starts at `initialNodes` (RequestDrafter sizes it from the prompt)
 * and only a trie that really grows reaches the cap. With a TrieStoragePool
 * (a request's context trie), the arrays come from finished tries and go
 * back at `release`.
 */
import { newTrieStorage, trieCapacityClass, type TrieStorage, type TrieStoragePool } from './trie-storage-pool';

export class CountTrie {
  // Set by adopt() (constructor, grow, release).
  tokens!: Int32Array;
  counts!: Uint32Array;
  parents!: Int32Array;
  firstChild!: Int32Array;
  nextSibling!: Int32Array;
  size = 1;
  readonly maxNodes: number;
  private slots!: Int32Array;
  private slotMask = 0;
  /** Where the node arrays come from and go back to (release), with capacities in its size classes; null: allocated here. */
  private readonly pool: TrieStoragePool | null;

  constructor(opts: { initialNodes?: number; maxNodes?: number; pool?: TrieStoragePool } = {}) {
    this.maxNodes = Math.max(2, opts.maxNodes ?? 1 << 20);
    this.pool = opts.pool ?? null;
    const wanted = Math.min(this.maxNodes, Math.max(16, opts.initialNodes ?? 1024));
    this.adopt(this.pool ? this.pool.take(trieCapacityClass(wanted, this.maxNodes)) : newTrieStorage(wanted));
    this.clear();
  }

  /**
   * Hands the node arrays back to the pool (a trie without one just drops
   * them). The trie stays usable, empty and small: a late call cannot write
   * into arrays another trie has taken.
   */
  release(): void {
    const old = this.storage();
    this.adopt(newTrieStorage(16));
    this.size = 1;
    this.clear();
    this.pool?.give(old.tokens.length, old);
  }

  private storage(): TrieStorage {
    return { tokens: this.tokens, counts: this.counts, parents: this.parents, firstChild: this.firstChild, nextSibling: this.nextSibling, slots: this.slots };
  }

  private adopt(storage: TrieStorage): void {
    this.tokens = storage.tokens;
    this.counts = storage.counts;
    this.parents = storage.parents;
    this.firstChild = storage.firstChild;
    this.nextSibling = storage.nextSibling;
    this.slots = storage.slots;
    this.slotMask = this.slots.length - 1;
  }

  /**
   * Drops every node but keeps the allocated memory. Cost proportional to the
   * nodes in use when that is well below the table (scratch tries are cleared
   * every drafting step with a few hundred nodes in a table of thousands).
   */
  clear(): void {
    if (this.size > 1) {
      if (this.size * 32 < this.slots.length) {
        const mask = this.slotMask;
        for (let n = 1; n < this.size; n++) {
          let s = hashEdge(this.parents[n], this.tokens[n]) & mask;
          while (this.slots[s] !== n) s = (s + 1) & mask;
          this.slots[s] = -1;
        }
      } else this.slots.fill(-1);
    }
    this.size = 1;
    this.tokens[0] = -1;
    this.counts[0] = 0;
    this.parents[0] = -1;
    this.firstChild[0] = -1;
    this.nextSibling[0] = -1;
  }

  get capacity(): number {
    return this.tokens.length;
  }

  /** The child of `parent` labelled `token`, or -1. */
  find(parent: number, token: number): number {
    const mask = this.slotMask;
    let s = hashEdge(parent, token) & mask;
    for (;;) {
      const n = this.slots[s];
      if (n < 0) return -1;
      if (this.parents[n] === parent && this.tokens[n] === token) return n;
      s = (s + 1) & mask;
    }
  }

  /** The child of `parent` labelled `token`, created (count 0) if missing; -1 when the trie is full. */
  child(parent: number, token: number): number {
    let mask = this.slotMask;
    let s = hashEdge(parent, token) & mask;
    for (;;) {
      const n = this.slots[s];
      if (n < 0) break;
      if (this.parents[n] === parent && this.tokens[n] === token) return n;
      s = (s + 1) & mask;
    }
    if (this.size >= this.tokens.length) {
      if (!this.grow()) return -1;
      mask = this.slotMask;
      s = hashEdge(parent, token) & mask;
      while (this.slots[s] >= 0) s = (s + 1) & mask;
    }
    const n = this.size++;
    this.tokens[n] = token;
    this.counts[n] = 0;
    this.parents[n] = parent;
    this.firstChild[n] = -1;
    this.nextSibling[n] = this.firstChild[parent];
    this.firstChild[parent] = n;
    this.slots[s] = n;
    return n;
  }

  /** Follows `tokens[from..to)` from the root; the node reached or -1. */
  walk(tokens: ArrayLike<number>, from: number, to: number): number {
    let node = 0;
    for (let i = from; i < to && node >= 0; i++) node = this.find(node, tokens[i]);
    return node;
  }

  private grow(): boolean {
    const old = this.tokens.length;
    if (old >= this.maxNodes) return false;
    const cap = this.pool ? trieCapacityClass(old * 2, this.maxNodes) : Math.min(this.maxNodes, old * 2);
    const next = this.pool ? this.pool.take(cap) : newTrieStorage(cap);
    const size = this.size;
    next.tokens.set(this.tokens.subarray(0, size));
    next.counts.set(this.counts.subarray(0, size));
    next.parents.set(this.parents.subarray(0, size));
    next.firstChild.set(this.firstChild.subarray(0, size));
    next.nextSibling.set(this.nextSibling.subarray(0, size));
    this.pool?.give(old, this.storage());
    this.adopt(next);
    for (let n = 1; n < this.size; n++) {
      let s = hashEdge(this.parents[n], this.tokens[n]) & this.slotMask;
      while (this.slots[s] >= 0) s = (s + 1) & this.slotMask;
      this.slots[s] = n;
    }
    return true;
  }
}

function hashEdge(parent: number, token: number): number {
  let h = Math.imul(parent ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(token + 0x27d4eb2f, 0xc2b2ae35);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  return (h ^ (h >>> 13)) >>> 0;
}
