/**
 * Per-key request rate (token bucket, refilled continuously to `rpm` per
 * minute) and concurrency limits. State lives in the isolate: exact under
 * `wrangler dev` (one isolate), approximate across a fleet of isolates, which
 * is the usual trade-off for edge limiters (docs/edge.md).
 */
export type Admission = { ok: true; release: () => void } | { ok: false; retryAfterS: number; reason: 'rate' | 'concurrency' };

interface Bucket {
  tokens: number;
  updatedMs: number;
  inFlight: number;
}

export class KeyLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(private readonly now: () => number = () => Date.now()) {}

  acquire(keyId: string, rpm: number, concurrency: number): Admission {
    const now = this.now();
    let bucket = this.buckets.get(keyId);
    if (!bucket) {
      bucket = { tokens: rpm, updatedMs: now, inFlight: 0 };
      this.buckets.set(keyId, bucket);
    }
    const perMs = rpm / 60_000;
    bucket.tokens = Math.min(rpm, bucket.tokens + (now - bucket.updatedMs) * perMs);
    bucket.updatedMs = now;
    if (bucket.inFlight >= concurrency) return { ok: false, retryAfterS: 1, reason: 'concurrency' };
    if (bucket.tokens < 1) return { ok: false, retryAfterS: Math.ceil((1 - bucket.tokens) / perMs / 1000), reason: 'rate' };
    bucket.tokens -= 1;
    bucket.inFlight += 1;
    let released = false;
    const held = bucket;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        held.inFlight -= 1;
      },
    };
  }
}
