/**
 * Free lists of typed-array sets by size class: what a finished request
 * gives back, the next request of the same class takes, instead of fresh
 * memory. On the development VM fresh memory is mostly page faults (~6 µs a
 * 4 KB page): a request's 150-350 KB of keys/values or context trie cost
 * 0.2-0.5 ms on the pool's main thread, a 32K-token prompt's trie ~20 ms.
 *
 * Sizes come in classes, four per doubling (at most a quarter of slack from
 * 64 on), so requests of similar lengths share. The pool keeps at most
 * `maxWeight` (bytes, positions: the caller's unit); a take its class has
 * nothing for drops as much weight of other classes, largest first, so sizes
 * the traffic no longer asks for go back to the garbage collector over time.
 * Isomorphic.
 */

/** The class `n` rounds up to: a multiple of a quarter of its power of two (`minStep` at least), at most `max`. */
export function sizeClass(n: number, max: number, minStep = 16): number {
  const m = Math.max(1, Math.ceil(n));
  const step = Math.max(minStep, 2 ** Math.floor(Math.log2(m)) / 4);
  return Math.min(max, Math.ceil(m / step) * step);
}

export interface SizeClassPoolOptions<T> {
  /** The kept-weight bound counts this per item of a size. */
  weightOf(size: number): number;
  maxWeight: number;
  /** A fresh item of this size. */
  make(size: number): T;
  /** Readies a kept item for its next owner (e.g. empties a hash table). */
  reuse?(item: T): void;
}

export class SizeClassPool<T> {
  private readonly free = new Map<number, T[]>();
  private keptWeight = 0;
  private reusedCount = 0;
  private madeCount = 0;

  constructor(private readonly opts: SizeClassPoolOptions<T>) {}

  /** An item of exactly `size` (a class): a kept one when there is one, else a new one. */
  take(size: number): T {
    const kept = this.free.get(size)?.pop();
    if (kept !== undefined) {
      this.keptWeight -= this.opts.weightOf(size);
      this.reusedCount++;
      this.opts.reuse?.(kept);
      return kept;
    }
    this.madeCount++;
    if (this.keptWeight > 0) this.evict(this.opts.weightOf(size));
    return this.opts.make(size);
  }

  /** Takes back an item of `size` (its owner must not use it after): kept while the bound allows. */
  give(size: number, item: T): void {
    const weight = this.opts.weightOf(size);
    if (this.keptWeight + weight > this.opts.maxWeight) return;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(item);
    this.keptWeight += weight;
  }

  /** Weight of the kept items. */
  get kept(): number {
    return this.keptWeight;
  }

  /** Takes served from kept items, and takes that made new ones. */
  get reused(): number {
    return this.reusedCount;
  }

  get made(): number {
    return this.madeCount;
  }

  /** Drops kept items, largest classes first, until `weight` is freed or none is left. */
  private evict(weight: number): void {
    for (const size of [...this.free.keys()].sort((a, b) => b - a)) {
      const list = this.free.get(size)!;
      const each = this.opts.weightOf(size);
      while (list.length > 0 && weight > 0) {
        list.pop();
        this.keptWeight -= each;
        weight -= each;
      }
      if (list.length === 0) this.free.delete(size);
      if (weight <= 0) return;
    }
  }
}
