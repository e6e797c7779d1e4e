/**
 * The node arrays of finished requests' context tries, handed to the next
 * requests' tries (CountTrie with `pooled`).
 *
 * Why: a request's context trie is sized for the length it may reach (16
 * nodes a token on stories260K's 271-token requests: ~150 KB with its hash
 * table), and fresh memory that size is mostly page faults (~6 µs a 4 KB page
 * on the development VM): a request's first draft in the pool took 0.21 ms
 * median, 0.32 ms mean, where a drafter built on reused memory takes ~12 µs.
 * A 32K-token prompt's trie is ~14 MB, ~20 ms of first touches.
 *
 * Capacities come in size classes (four per doubling), and the pool keeps at
 * most `maxBytes` of arrays; a take its class has none for drops as many
 * bytes of other classes. Reused arrays keep old nodes: a trie only reads the
 * nodes it has made since it took them, and its hash table is reset on take.
 * Isomorphic (the pool's drafters; an isolate that never releases a trie
 * never fills it).
 */
export interface TrieStorage {
  tokens: Int32Array;
  counts: Uint32Array;
  parents: Int32Array;
  firstChild: Int32Array;
  nextSibling: Int32Array;
  /** Open-addressing table, a power of two at least twice the node capacity; -1 = empty. */
  slots: Int32Array;
}

/** Bytes of a storage of `nodes` nodes (five 4-byte arrays and the hash table). */
export function trieStorageBytes(nodes: number): number {
  return 4 * (5 * nodes + trieSlotCount(nodes));
}

export function trieSlotCount(nodes: number): number {
  let s = 16;
  while (s < nodes * 2) s *= 2;
  return s;
}

/** The size class `nodes` rounds up to: a multiple of a quarter of its power of two (16 at least), at most `max`. */
export function trieCapacityClass(nodes: number, max: number): number {
  const n = Math.max(1, Math.ceil(nodes));
  const step = Math.max(16, 2 ** Math.floor(Math.log2(n)) / 4);
  return Math.min(max, Math.ceil(n / step) * step);
}

export function newTrieStorage(nodes: number): TrieStorage {
  return {
    tokens: new Int32Array(nodes),
    counts: new Uint32Array(nodes),
    parents: new Int32Array(nodes),
    firstChild: new Int32Array(nodes),
    nextSibling: new Int32Array(nodes),
    slots: new Int32Array(trieSlotCount(nodes)).fill(-1),
  };
}

export class TrieStoragePool {
  private readonly free = new Map<number, TrieStorage[]>();
  private keptBytes = 0;
  private reusedCount = 0;

  constructor(private readonly maxBytes: number) {}

  /** Storage for exactly `nodes` nodes (a size class), its hash table empty: kept when there is some, else new. */
  take(nodes: number): TrieStorage {
    const reused = this.free.get(nodes)?.pop();
    if (reused) {
      this.keptBytes -= trieStorageBytes(nodes);
      this.reusedCount++;
      reused.slots.fill(-1);
      return reused;
    }
    if (this.keptBytes > 0) this.evict(trieStorageBytes(nodes));
    return newTrieStorage(nodes);
  }

  /** Takes back storage from `take` (its trie must not use it any more); kept while the bound allows. */
  give(storage: TrieStorage): void {
    const nodes = storage.tokens.length;
    const bytes = trieStorageBytes(nodes);
    if (this.keptBytes + bytes > this.maxBytes) return;
    let list = this.free.get(nodes);
    if (!list) this.free.set(nodes, (list = []));
    list.push(storage);
    this.keptBytes += bytes;
  }

  /** Bytes of storage kept for reuse. */
  get bytes(): number {
    return this.keptBytes;
  }

  /** Takes served from kept storage. */
  get reused(): number {
    return this.reusedCount;
  }

  /** Drops kept storage, largest classes first, until `bytes` are freed or none is left. */
  private evict(bytes: number): void {
    for (const nodes of [...this.free.keys()].sort((a, b) => b - a)) {
      const list = this.free.get(nodes)!;
      const each = trieStorageBytes(nodes);
      while (list.length > 0 && bytes > 0) {
        list.pop();
        this.keptBytes -= each;
        bytes -= each;
      }
      if (list.length === 0) this.free.delete(nodes);
      if (bytes <= 0) return;
    }
  }
}

/** The process's pool for requests' context tries (64 MiB kept at most: four 32K-token prompts' tries, or hundreds of short ones). */
export const contextTriePool = new TrieStoragePool(64 * 2 ** 20);
