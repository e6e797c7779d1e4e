/**
 * What one generating request stores, charged to its key's storage budget
 * (storage-budget.ts) in the bytes it writes: its stored response (and a
 * background stream's kept events), its stored chat completion, its turn
 * appended to a conversation. What is known before the generation (the input
 * it will store) is taken first, and refused where the budget cannot cover
 * it, before any pool compute is spent; the rest (the output, a chain's
 * conversation carried on) is charged as written, whatever is left: the
 * generation has run and been paid for, so its record is kept and the
 * bucket goes below zero, repaid before the key's next request that stores
 * (docs/edge.md, "Storage").
 *
 * A record the request writes more than once (a background response queued,
 * then ended; a stream's events, written again each second as they grow)
 * replaces itself within the run: it is charged at its largest, not at each
 * write.
 */
import { STORAGE_FLOOR_BYTES } from './storage-budget';

/** The key's bucket as one request sees it (StorageBudget's take and charge, bound to the key). */
export interface KeyStorage {
  /**
   * Takes all of `bytes` where the budget has them (more than a day's worth, where it is full: the rest below zero):
   * null, else the whole seconds until it does (nothing taken). StorageBudget.takeAll.
   */
  take(bytes: number): number | null;
  /** Takes `bytes` whatever is left (negative: gives them back). */
  charge(bytes: number): void;
}

export class StorageMeter {
  /** Bytes taken from the budget for this request so far. */
  private taken = 0;
  /** What the request's records come to: the sum of each one's largest write. */
  private written = 0;
  private readonly largest = new Map<string, number>();

  constructor(private readonly storage: KeyStorage) {}

  /**
   * Before the generation: takes `bytes` (what the request will store at least, STORAGE_FLOOR_BYTES at least) where
   * the budget has them, counted against what it then writes; else the seconds until it does (nothing taken).
   */
  reserve(bytes: number): number | null {
    const need = Math.max(STORAGE_FLOOR_BYTES, bytes);
    const retryAfterS = this.storage.take(need);
    if (retryAfterS === null) this.taken += need;
    return retryAfterS;
  }

  /** A write of `bytes` (its value as UTF-8) to the record `name`: what takes the request past what it took is charged. */
  wrote(name: string, bytes: number): void {
    const size = Math.max(STORAGE_FLOOR_BYTES, bytes);
    const before = this.largest.get(name) ?? 0;
    if (size <= before) return;
    this.largest.set(name, size);
    this.written += size - before;
    if (this.written > this.taken) {
      this.storage.charge(this.written - this.taken);
      this.taken = this.written;
    }
  }

  /** The request ended before it wrote what it reserved (refused after its reservation, its pool failing): given back. */
  unspent(): void {
    if (this.taken <= this.written) return;
    this.storage.charge(this.written - this.taken);
    this.taken = this.written;
  }
}
