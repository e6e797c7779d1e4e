/**
 * Key lookups remembered per isolate. Known keys and unknown ones are kept
 * apart and each map is bounded: every request with a random bearer token
 * (a scanner, a client looping on a typo) adds a miss, and an isolate that
 * kept them all would grow until the platform kills it with everyone's
 * streams. Random tokens churn only the misses; known keys stay, also as the
 * fallback when KV is down.
 */
export interface KeyLookupCacheOptions {
  hitMs: number;
  missMs: number;
  /**
   * How long past its time to live a known key still serves while the key
   * store fails: an outage keeps known keys working, but a key revoked before
   * it does not work for ever.
   */
  staleMs: number;
  maxHits: number;
  maxMisses: number;
}

export const DEFAULT_KEY_LOOKUP_CACHE: Readonly<KeyLookupCacheOptions> = { hitMs: 30_000, missMs: 2_000, staleMs: 15 * 60_000, maxHits: 10_000, maxMisses: 1_000 };

export interface CachedLookup<V> {
  record: V | null;
  /** Within its time to live; a stale one only serves while the key store fails. */
  fresh: boolean;
}

export class KeyLookupCache<V> {
  private readonly hits = new Map<string, { record: V; until: number }>();
  private readonly misses = new Map<string, number>();

  constructor(private readonly opts: Readonly<KeyLookupCacheOptions> = DEFAULT_KEY_LOOKUP_CACHE) {}

  get(hash: string, now: number): CachedLookup<V> | undefined {
    const hit = this.hits.get(hash);
    if (hit && now > hit.until + this.opts.staleMs) this.hits.delete(hash);
    else if (hit) return { record: hit.record, fresh: hit.until > now };
    const missUntil = this.misses.get(hash);
    if (missUntil !== undefined) return { record: null, fresh: missUntil > now };
    return undefined;
  }

  set(hash: string, record: V | null, now: number): void {
    if (record === null) {
      this.hits.delete(hash); // a revoked key
      remember(this.misses, hash, now + this.opts.missMs, this.opts.maxMisses);
    } else {
      this.misses.delete(hash);
      remember(this.hits, hash, { record, until: now + this.opts.hitMs }, this.opts.maxHits);
    }
  }

  get size(): { hits: number; misses: number } {
    return { hits: this.hits.size, misses: this.misses.size };
  }
}

/** Sets `key` as the newest entry, dropping the oldest past `max` (Maps iterate in insertion order). */
function remember<T>(map: Map<string, T>, key: string, value: T, max: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > max) map.delete(map.keys().next().value as string);
}
