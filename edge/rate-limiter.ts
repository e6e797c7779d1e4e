/**
 * Per-key request rate (token bucket, refilled continuously to `rpm` per
 * minute) and concurrency limits. State lives in the isolate: exact under
 * `wrangler dev` (one isolate), approximate across a fleet of isolates, which
 * is the usual trade-off for edge limiters (docs/edge.md).
 *
 * A request in flight holds a lease, not a count: the runtime cancels a
 * request whose client leaves before its response (none of its code runs
 * again, its timers included, so it never releases), and a count would keep
 * that slot taken until the isolate goes. A live request shows life every
 * LEASE_HEARTBEAT_MS from a timer of its own; a lease that shows none for
 * `leaseMs` is taken back.
 */
export type Admission =
  | { ok: true; release: () => void; alive: () => void }
  | { ok: false; retryAfterS: number; reason: 'rate' | 'concurrency' };

/** How long a request may go without a sign of life before its slot is taken back. */
export const LEASE_MS = 5_000;
/** How often a live request shows life (`alive`), well inside LEASE_MS. */
export const LEASE_HEARTBEAT_MS = 1_000;

interface Bucket {
  tokens: number;
  updatedMs: number;
  /** Requests in flight: lease id → when it last showed life (ms). */
  leases: Map<number, number>;
}

export class KeyLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private nextLease = 0;

  constructor(
    private readonly now: () => number = () => Date.now(),
    private readonly leaseMs = LEASE_MS,
  ) {}

  /** `leaseMs`: this key's lease (SSSD_CONCURRENCY_LEASE_SECONDS), else the limiter's. */
  acquire(keyId: string, rpm: number, concurrency: number, leaseMs = this.leaseMs): Admission {
    const now = this.now();
    let bucket = this.buckets.get(keyId);
    if (!bucket) {
      bucket = { tokens: rpm, updatedMs: now, leases: new Map() };
      this.buckets.set(keyId, bucket);
    }
    const perMs = rpm / 60_000;
    bucket.tokens = Math.min(rpm, bucket.tokens + (now - bucket.updatedMs) * perMs);
    bucket.updatedMs = now;
    if (bucket.leases.size >= concurrency) {
      for (const [id, seen] of bucket.leases) if (now - seen > leaseMs) bucket.leases.delete(id);
      if (bucket.leases.size >= concurrency) return { ok: false, retryAfterS: 1, reason: 'concurrency' };
    }
    if (bucket.tokens < 1) return { ok: false, retryAfterS: Math.ceil((1 - bucket.tokens) / perMs / 1000), reason: 'rate' };
    bucket.tokens -= 1;
    const id = ++this.nextLease;
    const leases = bucket.leases;
    leases.set(id, now);
    return {
      ok: true,
      release: () => void leases.delete(id),
      alive: () => {
        if (leases.has(id)) leases.set(id, this.now());
      },
    };
  }
}
