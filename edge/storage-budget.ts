/**
 * The bytes a day a key may store through the routes that store with no
 * generation: conversations made, items added, metadata replaced (review
 * h213, finding 2: a key stored 20 MB a minute so, each kept 30 days, bounded
 * by its rate alone). A token bucket of bytes per key within its data scope
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
    const bucket = this.buckets.get(name);
    const have = bucket === undefined ? perDay : Math.min(perDay, bucket.bytes + (Math.max(0, now - bucket.at) * perDay) / DAY_MS);
    if (have < need) return Math.max(1, Math.ceil(((need - have) * DAY_MS) / perDay / 1000));
    // Taken out and put back: the map's order is the order of last use.
    this.buckets.delete(name);
    this.buckets.set(name, { bytes: have - need, at: now });
    if (this.buckets.size > this.maxBuckets) this.buckets.delete(this.buckets.keys().next().value as string);
    return null;
  }
}
