import { describe, expect, it } from 'vitest';
import { BUCKETS_BEFORE_SWEEP, KeyLimiter, LEASE_HEARTBEAT_MS, type Admission } from '../../edge/rate-limiter';

describe('KeyLimiter', () => {
  it('allows rpm requests per minute, then answers with a retry delay', () => {
    let now = 0;
    const limiter = new KeyLimiter(() => now);
    for (let i = 0; i < 3; i++) {
      const a = limiter.acquire('k', 3, 10);
      expect(a.ok).toBe(true);
      if (a.ok) a.release();
    }
    const refused = limiter.acquire('k', 3, 10);
    expect(refused).toMatchObject({ ok: false, reason: 'rate' });
    if (!refused.ok) expect(refused.retryAfterS).toBe(20);
    now += 20_000;
    expect(limiter.acquire('k', 3, 10).ok).toBe(true);
  });

  it('tells a request refused for its slots the wait for a rate token too, where that is longer', () => {
    let now = 0;
    const limiter = new KeyLimiter(() => now);
    // rpm 3, one slot: two requests end, a third holds the slot and spends the last token.
    for (let i = 0; i < 2; i++) {
      const a = limiter.acquire('k', 3, 1);
      if (a.ok) a.release();
    }
    const held = limiter.acquire('k', 3, 1);
    expect(held.ok).toBe(true);
    const refused = limiter.acquire('k', 3, 1);
    expect(refused).toMatchObject({ ok: false, reason: 'concurrency' });
    // A slot in 1 s, a token in 20: told 20, so a client that waits as told is not refused again.
    if (!refused.ok) expect(refused.retryAfterS).toBe(20);
    if (held.ok) held.release();
    now += 20_000;
    expect(limiter.acquire('k', 3, 1).ok).toBe(true);
  });

  it('limits requests in flight and frees a slot on release (once)', () => {
    const limiter = new KeyLimiter(() => 0);
    const first = limiter.acquire('k', 100, 1);
    expect(first.ok).toBe(true);
    expect(limiter.acquire('k', 100, 1)).toMatchObject({ ok: false, reason: 'concurrency' });
    if (first.ok) {
      first.release();
      first.release();
    }
    const second = limiter.acquire('k', 100, 1);
    expect(second.ok).toBe(true);
    expect(limiter.acquire('k', 100, 1).ok).toBe(false);
  });

  it('counts a request that takes no slot (concurrency Infinity) against the rate only, even with every slot held', () => {
    const limiter = new KeyLimiter(() => 0);
    const running = limiter.acquire('k', 2, 1);
    expect(running.ok).toBe(true);
    const slotless = limiter.acquire('k', 2, Infinity);
    expect(slotless.ok).toBe(true);
    // It held no slot meanwhile: the key's one slot is still the running request's alone, and free once that ends.
    expect(limiter.acquire('k', 2, 1)).toMatchObject({ ok: false, reason: 'concurrency' });
    if (running.ok) running.release();
    // The slotless one, never released, holds no slot: what stops the next is the minute's budget.
    expect(limiter.acquire('k', 2, 1)).toMatchObject({ ok: false, reason: 'rate' });
  });

  it("takes back the slot of a request that showed no life for the lease, and not one that did", () => {
    let now = 0;
    const limiter = new KeyLimiter(() => now, 1000);
    const silent = limiter.acquire('k', 100, 2);
    const live = limiter.acquire('k', 100, 2);
    expect(silent.ok && live.ok).toBe(true);
    expect(limiter.acquire('k', 100, 2)).toMatchObject({ ok: false, reason: 'concurrency' });
    now = 600;
    if (live.ok) live.alive();
    now = 1001;
    // The silent one's lease lapsed (a request the runtime cancelled never releases); the live one's did not.
    const third = limiter.acquire('k', 100, 2);
    expect(third.ok).toBe(true);
    expect(limiter.acquire('k', 100, 2)).toMatchObject({ ok: false, reason: 'concurrency' });
    // Released or lapsed, a lease is gone for good: a late release frees no second slot.
    if (silent.ok) silent.release();
    expect(limiter.acquire('k', 100, 2).ok).toBe(false);
    // A key's own lease time, where given.
    now = 1200;
    expect(limiter.acquire('k', 100, 2, 100).ok).toBe(true);
  });

  it("says when a slot will be free: 1 s while the requests in flight show life, the lapse of the first silent one's lease when all are silent", () => {
    let now = 0;
    const limiter = new KeyLimiter(() => now, 5000);
    const a = limiter.acquire('k', 100, 2);
    const b = limiter.acquire('k', 100, 2);
    const retryAfter = (): number => {
      const refused = limiter.acquire('k', 100, 2);
      if (refused.ok) throw new Error('admitted');
      return refused.retryAfterS;
    };
    expect(retryAfter()).toBe(1);
    // a's client left at 0 (no more heartbeats); b shows life every LEASE_HEARTBEAT_MS.
    for (now = LEASE_HEARTBEAT_MS; now <= 3000; now += LEASE_HEARTBEAT_MS) if (b.ok) b.alive();
    expect(retryAfter()).toBe(1);
    // b leaves too, at 3 s: a's lease lapses at 5 s, b's at 8 s.
    now = 4600;
    expect(retryAfter()).toBe(1); // a: 0.4 s to go
    now = 5001;
    expect(limiter.acquire('k', 100, 2).ok).toBe(true);
    // Two whose clients both left at 0: seen silent at 2 s.
    now = 0;
    const quiet = new KeyLimiter(() => now, 5000);
    quiet.acquire('q', 100, 2);
    quiet.acquire('q', 100, 2);
    now = 2000;
    // Free after 5,000 ms of silence (at 5,001): 3,001 ms from now, so 4 s, not 3 (at 5,000 it was still refused).
    expect(quiet.acquire('q', 100, 2)).toMatchObject({ ok: false, retryAfterS: 4 });
    // An OpenAI SDK's retries after a stream it cut off (the runtime stopped the request, its last heartbeat at 0): the
    // first at once is told 1 s; the second, 1 s later, already the lease's lapse, so that its third try gets in.
    now = 0;
    const cut = new KeyLimiter(() => now, 5000);
    cut.acquire('c', 100, 1);
    now = 25;
    expect(cut.acquire('c', 100, 1)).toMatchObject({ ok: false, retryAfterS: 1 });
    now = 1030;
    expect(cut.acquire('c', 100, 1)).toMatchObject({ ok: false, retryAfterS: 4 });
    now = 1030 + 4000;
    expect(cut.acquire('c', 100, 1).ok).toBe(true);
  });

  it('keeps keys apart', () => {
    const limiter = new KeyLimiter(() => 0);
    expect(limiter.acquire('a', 1, 1).ok).toBe(true);
    expect(limiter.acquire('b', 1, 1).ok).toBe(true);
    expect(limiter.acquire('a', 1, 1).ok).toBe(false);
  });

  it('forgets keys idle for a minute once it holds many, but not their limits while they are busy', () => {
    let now = 0;
    const limiter = new KeyLimiter(() => now, 5_000);
    const busy = limiter.acquire('busy', 1, 1); // in flight, and its one request a minute used up
    expect(busy.ok).toBe(true);
    for (let i = 0; i < BUCKETS_BEFORE_SWEEP - 1; i++) limiter.acquire(`idle-${i}`, 10, 1);
    expect(limiter.keys).toBe(BUCKETS_BEFORE_SWEEP);
    now = 61_000;
    if (busy.ok) busy.alive();
    expect(limiter.acquire('newcomer', 10, 1).ok).toBe(true);
    expect(limiter.keys).toBe(2); // the busy key and the newcomer
    expect(limiter.acquire('busy', 100, 1)).toMatchObject({ ok: false, reason: 'concurrency' });
  });

  it('goes on as before when the wall clock is set back: no key refused for the time it went back, no lease kept that long', () => {
    let now = 1_000_000;
    const limiter = new KeyLimiter(() => now, 5_000);
    limiter.acquire('k', 600, 2);
    // A lease whose request the runtime stopped: no heartbeat again.
    limiter.acquire('k', 600, 2);
    now -= 5 * 60_000;
    const after = limiter.acquire('k', 600, 3);
    expect(after).toMatchObject({ ok: true, quota: { remaining: 597 } });
    // Time goes on from there: the silent leases lapse after their 5 s, not 5 minutes and 5 s.
    if (after.ok) after.release();
    expect(limiter.acquire('k', 600, 2)).toMatchObject({ ok: false, reason: 'concurrency' });
    now += 5_001;
    expect(limiter.acquire('k', 600, 2).ok).toBe(true);
  });

  it("tells each answer the key's budget: requests left and when the bucket is full again", () => {
    let now = 0;
    const limiter = new KeyLimiter(() => now);
    const first = limiter.acquire('k', 60, 10);
    expect(first.quota).toEqual({ limit: 60, remaining: 59, resetMs: 1000 });
    limiter.acquire('k', 60, 10);
    now += 500; // half a request back
    expect(limiter.acquire('k', 60, 10).quota).toEqual({ limit: 60, remaining: 57, resetMs: 2500 });
    const small = new KeyLimiter(() => now);
    small.acquire('s', 1, 10);
    const refused = small.acquire('s', 1, 10);
    expect(refused).toMatchObject({ ok: false, reason: 'rate', quota: { limit: 1, remaining: 0, resetMs: 60_000 } });
  });

  it("takes a slot per generation of a request (n), all given back together, and says when the key has not enough", () => {
    let now = 0;
    const limiter = new KeyLimiter(() => now, 5000);
    const a = limiter.acquire('k', 100, 4);
    if (!a.ok) throw new Error('refused');
    expect(a.widen(2)).toBeNull(); // three slots now
    const b = limiter.acquire('k', 100, 4);
    if (!b.ok) throw new Error('refused');
    // Only one left for its two: a's three, in progress, may end any moment (its own slot is not counted).
    expect(b.widen(1)).toEqual({ retryAfterS: 1, holders: [{ kind: 'answering', count: 3, freeInS: 1 }] });
    expect(limiter.acquire('k', 100, 4)).toMatchObject({ ok: false, reason: 'concurrency' });
    a.release();
    expect(b.widen(3)).toBeNull();
    // Its slots show life together: none lapses while the request lives.
    now += 4000;
    b.alive();
    now += 4000;
    expect(limiter.acquire('k', 100, 4)).toMatchObject({ ok: false, reason: 'concurrency' });
    b.release();
    expect(limiter.acquire('k', 100, 4).ok).toBe(true);
  });

  it("gives a request refused for its n the rate token back, as any concurrency 429", () => {
    const limiter = new KeyLimiter(() => 0);
    const a = limiter.acquire('r', 2, 1);
    if (!a.ok) throw new Error('refused');
    expect(a.widen(1)).not.toBeNull();
    a.release();
    for (let i = 0; i < 2; i++) {
      const next = limiter.acquire('r', 2, 1);
      expect(next.ok).toBe(true);
      if (next.ok) next.release();
    }
  });

  it('gives the rate token back once for a request refused for its n by a 400, and tells the quota then', () => {
    const limiter = new KeyLimiter(() => 0);
    const a = limiter.acquire('q', 2, 1);
    if (!a.ok) throw new Error('refused');
    expect(a.quota.remaining).toBe(1);
    expect(a.refund().remaining).toBe(2);
    // Once: a second call gives nothing more.
    expect(a.refund().remaining).toBe(2);
    a.release();
    expect(limiter.acquire('q', 2, 1).ok).toBe(true);
  });

  it('fills a bucket no fuller than rpm however long the key was idle: a burst after 10 minutes gets rpm admissions', () => {
    let now = 0;
    const limiter = new KeyLimiter(() => now);
    const first = limiter.acquire('k', 3, 10);
    if (first.ok) first.release();
    now += 10 * 60_000;
    for (let i = 0; i < 3; i++) {
      const a = limiter.acquire('k', 3, 10);
      expect(a.ok, String(i)).toBe(true);
      if (a.ok) a.release();
    }
    expect(limiter.acquire('k', 3, 10)).toMatchObject({ ok: false, reason: 'rate' });
  });

  it('gives back one token for a request refused for its n, though the refusal refunds twice (widen, then the handler)', () => {
    const limiter = new KeyLimiter(() => 0);
    // rpm 3, one slot: two requests end, a third spends the last token and asks for n = 2.
    for (let i = 0; i < 2; i++) {
      const a = limiter.acquire('k', 3, 1);
      if (a.ok) a.release();
    }
    const a = limiter.acquire('k', 3, 1);
    if (!a.ok) throw new Error('refused');
    expect(a.widen(1)).not.toBeNull();
    expect(a.refund().remaining).toBe(1);
    a.release();
    // One token back, not two: the key gets one more request this minute.
    const next = limiter.acquire('k', 3, 1);
    expect(next.ok).toBe(true);
    if (next.ok) next.release();
    expect(limiter.acquire('k', 3, 1)).toMatchObject({ ok: false, reason: 'rate' });
  });

  it('brings no released lease back when it shows life after its release', () => {
    const limiter = new KeyLimiter(() => 0);
    const a = limiter.acquire('k', 100, 1);
    if (!a.ok) throw new Error('refused');
    a.release();
    a.alive();
    expect(limiter.acquire('k', 100, 1).ok).toBe(true);
  });
  it('says a slot held for a body still arriving is free no sooner than its 408, and one in progress once the body is in', () => {
    let now = 0;
    const limiter = new KeyLimiter(() => now, 5000);
    const uploading = limiter.acquire('k', 100, 1);
    if (!uploading.ok) throw new Error('refused');
    uploading.holdAs({ kind: 'body', until: 30_000 });
    // Live (its heartbeats come) and stalled: its 408 at 30 s frees it, a heartbeat after (review h177: told 1 s).
    for (now = 0; now <= 2400; now += LEASE_HEARTBEAT_MS) uploading.alive();
    now = 2400;
    // Retry-After a heartbeat past the 408 (28 s, rounded up); the 408 itself 27.6 s away, said as such (endsInMs).
    expect(limiter.acquire('k', 100, 1)).toMatchObject({ ok: false, reason: 'concurrency', retryAfterS: 28, holders: [{ kind: 'body', count: 1, freeInS: 28, endsInMs: 27_600 }] });
    now = 29_900;
    uploading.alive();
    // Past its time, the slot is still taken until the 408 releases it: 1 s, never 0.
    now = 30_100;
    expect(limiter.acquire('k', 100, 1)).toMatchObject({ ok: false, retryAfterS: 1, holders: [{ kind: 'body', freeInS: 1 }] });
    // The body came whole: in progress, which may end any moment.
    uploading.holdAs({ kind: 'answering' });
    expect(limiter.acquire('k', 100, 1)).toMatchObject({ ok: false, retryAfterS: 1, holders: [{ kind: 'answering', count: 1, freeInS: 1 }] });
    uploading.release();
    expect(limiter.acquire('k', 100, 1).ok).toBe(true);
  });

  it("says a background run's slots are free by its deadline, and, once it is silent, when its lease lapses", () => {
    let now = 0;
    const limiter = new KeyLimiter(() => now, 5000);
    const run = limiter.acquire('k', 100, 2);
    if (!run.ok) throw new Error('refused');
    run.holdAs({ kind: 'background', until: 25_000 });
    // Its n = 2: the slot it widens to is held for the same run, and moves with it.
    expect(run.widen(1)).toBeNull();
    now = 3000;
    run.alive();
    expect(limiter.acquire('k', 100, 2)).toMatchObject({ ok: false, retryAfterS: 23, holders: [{ kind: 'background', count: 2, freeInS: 23 }] });
    // Its isolate stopped its code (no heartbeat since 3 s): free when its leases lapse at 8 s, not at 25.
    now = 4000;
    expect(limiter.acquire('k', 100, 2)).toMatchObject({ ok: false, retryAfterS: 5, holders: [{ kind: 'left', count: 2, freeInS: 5 }] });
    now = 8001;
    expect(limiter.acquire('k', 100, 2).ok).toBe(true);
  });

  it('tells each kind of holder, counted, with the first of each to free, and Retry-After the first of all', () => {
    let now = 0;
    const limiter = new KeyLimiter(() => now, 5000);
    const admitted = (): Extract<Admission, { ok: true }> => {
      const a = limiter.acquire('k', 100, 5);
      if (!a.ok) throw new Error('refused');
      return a;
    };
    const left = admitted(); // its client left at 0: no heartbeat again
    const runs = [admitted(), admitted()];
    runs[0].holdAs({ kind: 'background', until: 20_000 });
    runs[1].holdAs({ kind: 'background', until: 12_000 });
    const body = admitted();
    body.holdAs({ kind: 'body', until: 30_000 });
    const answering = admitted();
    now = 1000;
    for (const live of [...runs, body, answering]) live.alive();
    const refused = limiter.acquire('k', 100, 5);
    expect(refused).toMatchObject({
      ok: false,
      reason: 'concurrency',
      retryAfterS: 1,
      holders: [
        { kind: 'answering', count: 1, freeInS: 1 },
        { kind: 'body', count: 1, freeInS: 30, endsInMs: 29_000 },
        { kind: 'background', count: 2, freeInS: 12, endsInMs: 11_000 },
        { kind: 'left', count: 1, freeInS: 5 },
      ],
    });
    // Without the one in progress, the first to free is the lease that lapses (at 5,001 ms: 5 s from 1,000).
    answering.release();
    const again = admitted();
    again.holdAs({ kind: 'background', until: 25_000 });
    expect(limiter.acquire('k', 100, 5)).toMatchObject({ ok: false, retryAfterS: 5 });
    left.release();
  });
});
