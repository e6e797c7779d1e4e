/**
 * The bytes a day a key may store: conversations made, items added, metadata
 * replaced (review h213, finding 2: a key stored 20 MB a minute so, each kept
 * 30 days, bounded by its rate alone), and what its generations store (stored
 * responses and chat completions, a response's turn in its conversation:
 * storage-meter.ts). A token bucket of bytes per key within its data scope
 * (KeyRecord.dataScope), refilled continuously to the key's `storageMbPerDay`
 * a day and holding one day's worth; a request takes what it writes. A bucket
 * per key, not one per scope: keys sharing a scope (`dataOf`, a rotation) had
 * one bucket clamped to the caller's figure, so one request from a 1 MiB key
 * held a 64 MiB key of its scope to 1 MiB (review h217, finding 2). With
 * records expiring SSSD_RESPONSE_TTL_DAYS after their last write, what a key
 * keeps this way is at most that many days' worth.
 *
 * State lives in the isolate, as the rate limiter's: exact under `wrangler
 * dev` (one isolate), approximate across a fleet of isolates, and reset when
 * an isolate goes (docs/edge.md). KV holds no counter: it has no atomic
 * increment, takes one write a second per key, and would add a read and a
 * write to every such request.
 */
const DAY_MS = 86_400_000;

/**
 * What a record written takes at least: its KV key and metadata, whatever its value (an empty create still makes one).
 */
export const STORAGE_FLOOR_BYTES = 1024;

interface Bucket {
  /** Bytes left at `at`. */
  bytes: number;
  at: number;
}

export class StorageBudget {
  private readonly buckets = new Map<string, Bucket>();

  /** `maxBuckets`: buckets kept at most (the least lately used go first, as full ones). */
  constructor(private readonly maxBuckets = 10_000) {}

  /**
   * Takes `bytes` of the budget of key `keyId` of `scope`, `perDay` bytes a day (a request of more than a day's
   * worth takes a whole day's): null where taken, else the whole seconds until they are there (nothing is taken).
   */
  take(scope: string, keyId: string, bytes: number, perDay: number, now = Date.now()): number | null {
    const need = Math.min(Math.max(0, bytes), perDay);
    const name = `${scope}/${keyId}`;
    const have = this.have(name, perDay, now);
    if (have < need) return Math.max(1, Math.ceil(((need - have) * DAY_MS) / perDay / 1000));
    this.keep(name, have - need, now);
    return null;
  }

  /**
   * As `take`, but all of `bytes` where taken: one of more than a day's worth, let in on a full bucket, takes the rest
   * below zero (a generation's reservation, which its writes then count as taken: storage-meter.ts).
   */
  takeAll(scope: string, keyId: string, bytes: number, perDay: number, now = Date.now()): number | null {
    const retryAfterS = this.take(scope, keyId, bytes, perDay, now);
    if (retryAfterS === null && bytes > perDay) this.charge(scope, keyId, bytes - perDay, perDay, now);
    return retryAfterS;
  }

  /**
   * Takes `bytes` whatever is left (a negative `bytes` gives them back, up to a day's worth held): what a generation
   * wrote once it ran, which is stored rather than lost for a budget spent meanwhile. The bucket may so go below
   * zero, and `take` refuses the key until it has refilled past that.
   */
  charge(scope: string, keyId: string, bytes: number, perDay: number, now = Date.now()): void {
    const name = `${scope}/${keyId}`;
    this.keep(name, Math.min(perDay, this.have(name, perDay, now) - bytes), now);
  }

  /** What the bucket holds at `now` (a day's worth where there is none). */
  private have(name: string, perDay: number, now: number): number {
    const bucket = this.buckets.get(name);
    return bucket === undefined ? perDay : Math.min(perDay, bucket.bytes + (Math.max(0, now - bucket.at) * perDay) / DAY_MS);
  }

  private keep(name: string, bytes: number, now: number): void {
    // Taken out and put back: the map's order is the order of last use.
    this.buckets.delete(name);
    this.buckets.set(name, { bytes, at: now });
    if (this.buckets.size > this.maxBuckets) this.buckets.delete(this.buckets.keys().next().value as string);
  }
}
