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
 * `leaseMs` is taken back. A lease also says what it is held for (its Hold),
 * so that a concurrency 429 says when a slot is likely free, and why.
 */
export type Admission =
  | {
      ok: true;
      release: () => void;
      alive: () => void;
      /** What the request's slots are held for from now on (all of them, those `widen` takes included). */
      holdAs: (hold: Hold) => void;
      /**
       * Takes `extra` more slots for this request (its `n` choices are as many
       * generations in flight): null, or what holds the key's other slots where
       * it has not that many.
       */
      widen: (extra: number) => SlotsBusy | null;
      /** Gives the request's rate token back (once): it was refused for its `n`, as a concurrency 429 is. The quota then. */
      refund: () => RequestQuota;
      quota: RequestQuota;
    }
  | { ok: false; reason: 'rate'; retryAfterS: number; quota: RequestQuota }
  | ({ ok: false; reason: 'concurrency'; quota: RequestQuota } & SlotsBusy);

/**
 * What a request's slot is held for, which says when it is likely free:
 * `answering`, a request being answered, which may end any moment; `body`, a
 * body still arriving, which frees the slot no sooner than it is whole, and
 * at `until` (its 408) if it stalls; `background`, a background response's
 * run, which ends by its deadline, `until` (ms, on the limiter's clock: Date.now's).
 */
export type Hold = { kind: 'answering' } | { kind: 'body' | 'background'; until: number };

/** Why a slot is taken: its Hold, or `left` for a lease gone silent (its client left, and the runtime stopped its code), free once it lapses. */
export type HolderKind = Hold['kind'] | 'left';

/** The slots of one kind at a refusal: how many, and when the first of them is likely free (whole s, at least 1). */
export interface SlotHolder {
  kind: HolderKind;
  count: number;
  freeInS: number;
  /**
   * A body's or background run's own end, for the 429's words: ms from now to the first of their `until`s (its 408,
   * its deadline), without the heartbeat's slack that freeInS adds for Retry-After (review h203: "a 408 in 31 s" of
   * a 30 s timeout). Absent for the other kinds.
   */
  endsInMs?: number;
}

/** What holds a key's slots (by kind, in HOLDER_ORDER), and the Retry-After that follows: when the first is likely free. */
export interface SlotsBusy {
  retryAfterS: number;
  holders: readonly SlotHolder[];
}

/**
 * The key's request budget after this request, for OpenAI's
 * `x-ratelimit-*-requests` headers: clients pace themselves by them rather
 * than by 429s.
 */
export interface RequestQuota {
  /** Requests per minute (the bucket's size). */
  limit: number;
  /** Whole requests the bucket holds now. */
  remaining: number;
  /** Until the bucket is full again, ms. */
  resetMs: number;
}

/** How long a request may go without a sign of life before its slot is taken back. */
export const LEASE_MS = 5_000;
/**
 * How often a live request shows life (`alive`), well inside LEASE_MS; often, so that a request the runtime stopped
 * is seen silent within half a second: the OpenAI SDKs retry a 429 twice, after 1 s and then after its Retry-After,
 * and a second "1 s" sent them back to a third 429 before the dead lease lapsed (review h94).
 */
export const LEASE_HEARTBEAT_MS = 250;

/** Keys the limiter holds before it forgets idle ones (one per key seen by this isolate otherwise). */
export const BUCKETS_BEFORE_SWEEP = 10_000;
/** A token bucket refills fully within a minute: one idle that long is as good as new. */
const REFILL_MS = 60_000;

interface Bucket {
  tokens: number;
  updatedMs: number;
  /** The lease of the key's last request: leases older than this are dead. */
  leaseMs: number;
  /** Requests in flight: lease id → its lease. */
  leases: Map<number, Lease>;
}

/** A slot taken: when it last showed life (ms), and what for (one object shared by a request's slots, so `holdAs` moves all). */
interface Lease {
  seen: number;
  held: { hold: Hold };
}

const HOLDER_ORDER: readonly HolderKind[] = ['answering', 'body', 'background', 'left'];

/**
 * When a slot is likely free (ms from `now`), for a concurrency 429's Retry-After. A lease that has missed its
 * heartbeats frees its slot only when it lapses, whatever it was held for, and saying 1 s then sent the client back to
 * a 429 again and again. A live one: a request being answered may end any moment (a heartbeat, the header's least 1 s
 * once rounded); a body or a background run, at its `until` at the latest, and no sooner for a body (review h177: told
 * 1 s, SDKs spent their retries in 2 s on a slot a background run held 25 s). A timer frees those a moment past its
 * time: a heartbeat's slack, so that a client that waits as told does not come back that moment early.
 */
function freeInMs(lease: Lease, now: number, leaseMs: number): { kind: HolderKind; ms: number } {
  const silentMs = now - lease.seen;
  // A lease lapses once silent for more than leaseMs: at seen + leaseMs + 1.
  if (silentMs > 1.5 * LEASE_HEARTBEAT_MS) return { kind: 'left', ms: lease.seen + leaseMs + 1 - now };
  const { hold } = lease.held;
  if (hold.kind === 'answering') return { kind: 'answering', ms: LEASE_HEARTBEAT_MS };
  return { kind: hold.kind, ms: Math.max(LEASE_HEARTBEAT_MS, hold.until + LEASE_HEARTBEAT_MS - now) };
}

/** What holds `leases` (all but `own`, a request's own slots as it asks for more), and when the first is likely free. */
function slotsBusy(leases: ReadonlyMap<number, Lease>, now: number, leaseMs: number, own: readonly number[] = []): SlotsBusy {
  const byKind = new Map<HolderKind, { count: number; ms: number; endsMs: number }>();
  let soonestMs = Infinity;
  for (const [id, lease] of leases) {
    if (own.includes(id)) continue;
    const { kind, ms } = freeInMs(lease, now, leaseMs);
    const { hold } = lease.held;
    const endsMs = kind === hold.kind && hold.kind !== 'answering' ? hold.until - now : Infinity;
    const seen = byKind.get(kind);
    byKind.set(kind, { count: (seen?.count ?? 0) + 1, ms: Math.min(seen?.ms ?? Infinity, ms), endsMs: Math.min(seen?.endsMs ?? Infinity, endsMs) });
    soonestMs = Math.min(soonestMs, ms);
  }
  const inS = (ms: number): number => Math.max(1, Math.ceil(ms / 1000));
  const holders: SlotHolder[] = [];
  for (const kind of HOLDER_ORDER) {
    const held = byKind.get(kind);
    if (held !== undefined) holders.push({ kind, count: held.count, freeInS: inS(held.ms), ...(Number.isFinite(held.endsMs) ? { endsInMs: held.endsMs } : {}) });
  }
  return { retryAfterS: inS(soonestMs), holders };
}

function quotaOf(rpm: number, tokens: number): RequestQuota {
  return { limit: rpm, remaining: Math.floor(tokens), resetMs: Math.ceil(((rpm - tokens) * 60_000) / rpm) };
}

export class KeyLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private nextLease = 0;
  private sweepAt = BUCKETS_BEFORE_SWEEP;
  /** The latest time read, and what is added to the clock's readings so that none is earlier. */
  private lastMs = -Infinity;
  private behindMs = 0;

  constructor(
    private readonly clock: () => number = () => Date.now(),
    private readonly leaseMs = LEASE_MS,
  ) {}

  /**
   * The clock, never going back: a wall clock set back (NTP, a host's clock
   * fixed by hand) read as it is made every bucket owe the time it went back
   * (a key refused for minutes, a negative `remaining` in its headers) and
   * every lease live that long. Set back, time stands still for an instant
   * and goes on from there.
   */
  private now(): number {
    const read = this.clock() + this.behindMs;
    if (read >= this.lastMs) return (this.lastMs = read);
    this.behindMs += this.lastMs - read;
    return this.lastMs;
  }

  /**
   * `leaseMs`: this key's lease (SSSD_CONCURRENCY_LEASE_SECONDS), else the
   * limiter's. `concurrency` Infinity: a request of the minute's budget that
   * takes no slot (a millisecond's KV delete beside the key's generations).
   */
  acquire(keyId: string, rpm: number, concurrency: number, leaseMs = this.leaseMs): Admission {
    const now = this.now();
    let bucket = this.buckets.get(keyId);
    if (!bucket) {
      if (this.buckets.size >= this.sweepAt) this.sweep(now);
      bucket = { tokens: rpm, updatedMs: now, leaseMs, leases: new Map() };
      this.buckets.set(keyId, bucket);
    }
    bucket.leaseMs = leaseMs;
    const perMs = rpm / 60_000;
    bucket.tokens = Math.min(rpm, bucket.tokens + (now - bucket.updatedMs) * perMs);
    bucket.updatedMs = now;
    const tokens = bucket.tokens;
    // The wait for a rate token, counted for a concurrency refusal too: told only the slot's 1 s, a client whose
    // bucket was empty met a second 429 saying 20 s.
    const rateWaitS = tokens < 1 ? Math.ceil((1 - tokens) / perMs / 1000) : 0;
    if (bucket.leases.size >= concurrency) {
      for (const [id, lease] of bucket.leases) if (now - lease.seen > leaseMs) bucket.leases.delete(id);
      if (bucket.leases.size >= concurrency) {
        const busy = slotsBusy(bucket.leases, now, leaseMs);
        return { ok: false, reason: 'concurrency', quota: quotaOf(rpm, tokens), holders: busy.holders, retryAfterS: Math.max(busy.retryAfterS, rateWaitS) };
      }
    }
    if (tokens < 1) return { ok: false, retryAfterS: rateWaitS, reason: 'rate', quota: quotaOf(rpm, tokens) };
    bucket.tokens = tokens - 1;
    const leases = bucket.leases;
    const ids: number[] = [];
    // Answering until told otherwise (holdAs).
    const held: Lease['held'] = { hold: { kind: 'answering' } };
    if (concurrency !== Infinity) {
      ids.push(++this.nextLease);
      leases.set(ids[0], { seen: now, held });
    }
    let refunded = false;
    const refund = (): RequestQuota => {
      if (!refunded) bucket.tokens = Math.min(rpm, bucket.tokens + 1);
      refunded = true;
      return quotaOf(rpm, bucket.tokens);
    };
    return {
      ok: true,
      quota: quotaOf(rpm, bucket.tokens),
      release: () => {
        for (const id of ids) leases.delete(id);
      },
      alive: () => {
        const at = this.now();
        for (const id of ids) {
          const lease = leases.get(id);
          if (lease !== undefined) lease.seen = at;
        }
      },
      holdAs: (next) => {
        held.hold = next;
      },
      widen: (extra) => {
        const at = this.now();
        for (const [id, lease] of leases) if (at - lease.seen > leaseMs) leases.delete(id);
        if (leases.size + extra > concurrency) {
          // Refused for slots, as a concurrency 429 is: the request's rate token goes back.
          refund();
          return slotsBusy(leases, at, leaseMs, ids);
        }
        for (let k = 0; k < extra; k++) {
          const id = ++this.nextLease;
          ids.push(id);
          leases.set(id, { seen: at, held });
        }
        return null;
      },
      refund,
    };
  }

  /** Keys held now (tests, metrics). */
  get keys(): number {
    return this.buckets.size;
  }

  /** Forgets keys whose bucket is full again and whose leases are all dead: a new bucket would behave the same. */
  private sweep(now: number): void {
    for (const [key, bucket] of this.buckets) {
      if (now - bucket.updatedMs < REFILL_MS) continue;
      let live = false;
      for (const lease of bucket.leases.values()) if (now - lease.seen <= bucket.leaseMs) live = true;
      if (!live) this.buckets.delete(key);
    }
    // Busy keys all: sweep again only once as many more came, so a sweep costs O(1) a new key.
    this.sweepAt = Math.max(BUCKETS_BEFORE_SWEEP, 2 * this.buckets.size);
  }
}
