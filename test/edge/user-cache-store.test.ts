// The KV side of the user cache, on workerd's own KV (Miniflare, as `wrangler
// dev` runs it) wherever the test needs no fault: a KV that throws, hangs or
// answers slowly (MapKv) stands in only for an outage, a cancelled write, a
// far-away KV or KV's one write a second per key, which local KV cannot produce.
import { beforeEach, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../edge/api-keys';
import { workerdKv } from '../support/workerd-kv';
import { cacheScope, UserCacheStore, type LoadedUserCache, type UserCacheTiming } from '../../edge/user-cache-store';
import { UserCache, mergeIntoUserCache } from '../../shared/drafting/user-cache';
import { draftEdgeTrie, edgeTrieTokenOutside } from '../../shared/drafting/edge-trie';

class MapKv {
  readonly values = new Map<string, Uint8Array>();
  failing = false;
  failingReads = false;
  /** Every put is refused (429), as while other isolates keep writing the key. */
  refusingPuts = false;
  /** The next put never settles (its request was cancelled by the runtime mid-write). */
  hangNextPut = false;
  /** The next get never settles (its request was cancelled by the runtime mid-read). */
  hangNextGet = false;
  /** The next get waits until releaseHeldGet() (a request stalled mid-read that comes back). */
  holdNextGet = false;
  private heldGet: (() => void) | null = null;
  releaseHeldGet(): void {
    this.heldGet?.();
    this.heldGet = null;
  }
  /** Each call takes this long (KV far away): lets calls of two requests interleave. */
  latencyMs = 0;
  /** Puts take this much longer still (a slow write, which lands late). */
  putLatencyMs = 0;
  /** KV's one write a second to a key: a put within it is refused (429), as Workers KV refuses it. */
  onePutPerSecond = false;
  refusedPuts = 0;
  readonly putTimes: number[] = [];
  private async wait(): Promise<void> {
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
  }
  async delete(key: string): Promise<void> {
    const at = Date.now();
    await this.wait();
    if (this.failing) throw new Error('KV DELETE failed: 503');
    // A delete is a write to the key too.
    if (this.onePutPerSecond && this.putTimes.length > 0 && at - this.putTimes[this.putTimes.length - 1] < 1000) {
      this.refusedPuts++;
      throw new Error('KV DELETE failed: 429 Too Many Requests');
    }
    this.putTimes.push(at);
    this.values.delete(key);
  }
  async get(key: string, _type: 'arrayBuffer'): Promise<ArrayBuffer | null> {
    if (this.hangNextGet) {
      this.hangNextGet = false;
      return new Promise<ArrayBuffer | null>(() => undefined);
    }
    if (this.holdNextGet) {
      this.holdNextGet = false;
      await new Promise<void>((resolve) => (this.heldGet = resolve));
    }
    await this.wait();
    if (this.failing || this.failingReads) throw new Error('KV GET failed: 503');
    const v = this.values.get(key);
    return v ? v.slice().buffer : null;
  }
  async put(key: string, value: Uint8Array): Promise<void> {
    const at = Date.now();
    await this.wait();
    if (this.putLatencyMs > 0) await new Promise((r) => setTimeout(r, this.putLatencyMs));
    if (this.failing) throw new Error('KV PUT failed: 503');
    if (this.refusingPuts) {
      this.refusedPuts++;
      throw new Error('KV PUT failed: 429 Too Many Requests');
    }
    if (this.onePutPerSecond && this.putTimes.length > 0 && at - this.putTimes[this.putTimes.length - 1] < 1000) {
      this.refusedPuts++;
      throw new Error('KV PUT failed: 429 Too Many Requests');
    }
    this.putTimes.push(at);
    if (this.hangNextPut) {
      this.hangNextPut = false;
      return new Promise<void>(() => undefined);
    }
    this.values.set(key, value);
  }
}

/** KV's documented limit, which local KV does not enforce: a second write to a key within a second fails (429). */
function kvOfOneWriteASecond(): MapKv {
  const kv = new MapKv();
  kv.onePutPerSecond = true;
  return kv;
}

const story = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395];

function storeOn(kv: MapKv | KVNamespace): UserCacheStore {
  return new UserCacheStore(kv as KVNamespace, 16 * 1024, 512);
}

const workerd = workerdKv();
let realKv: KVNamespace;
beforeEach(() => {
  realKv = workerd();
});

async function storedBytes(kv: KVNamespace, key: string): Promise<Uint8Array | null> {
  const value = await kv.get(key, 'arrayBuffer');
  return value ? new Uint8Array(value) : null;
}

describe('UserCacheStore', () => {
  it('keeps the latest requests verbatim, or none where the operator says 0 (and drops what was kept)', async () => {
    const kv = realKv;
    const scope = await cacheScope('key-1', 'carol');
    const store = storeOn(kv);
    await store.saveMerged(await store.load(scope), story);
    expect(Array.from((await store.load(scope)).cache.history)).toEqual(story);
    const none = new UserCacheStore(kv, 16 * 1024, 512, 0);
    await none.saveMerged(await none.load(scope), story);
    const loaded = await none.load(scope);
    expect(loaded.cache.history).toHaveLength(0);
    expect(loaded.cache.nextTokens([403, 407], 2)[0]?.token).toBe(261);
  });

  it('round-trips a merged cache through one read and one write', async () => {
    const kv = realKv;
    const store = storeOn(kv);
    const scope = await cacheScope('key-1', 'alice');
    const empty = await store.load(scope);
    expect(empty.cache.isEmpty).toBe(true);
    await store.saveMerged(empty, story);
    expect(await storedBytes(kv, UserCacheStore.keyFor(scope))).not.toBeNull();
    const loaded = await store.load(scope);
    expect(loaded.cache.isEmpty).toBe(false);
    expect(loaded.cache.nextTokens([403, 407], 2)[0]?.token).toBe(261);
  });

  it("forgets a user on delete, and a request of theirs that read the cache before it ends without writing it back", async () => {
    const kv = new MapKv();
    const store = storeOn(kv);
    const scope = await cacheScope('k', 'forget-me');
    await store.saveMerged(await store.load(scope), [1, 400, 401, 400, 401]);
    expect((await store.load(scope)).cache.nextTokens([400], 1).length).toBeGreaterThan(0);
    // A request running when the user asks to be forgotten, ending while the delete is under way (KV far away).
    const running = await store.load(scope);
    kv.latencyMs = 30;
    const deleting = store.delete(scope);
    await new Promise((r) => setTimeout(r, 5));
    const ending = store.saveMerged(running, [1, 300, 301, 302]);
    expect(await deleting).toBe(true);
    await ending;
    kv.latencyMs = 0;
    expect(kv.values.has(UserCacheStore.keyFor(scope))).toBe(false);
    expect(await store.delete(scope)).toBe(false);
    // A request that reads after the delete is kept as any other.
    await new Promise((r) => setTimeout(r, 2));
    await store.saveMerged(await store.load(scope), [1, 300, 301, 302]);
    const after = (await store.load(scope)).cache;
    expect(after.nextTokens([300], 1).length).toBeGreaterThan(0);
    expect(after.nextTokens([400], 1)).toEqual([]);
  });

  it('scopes caches by key and user', async () => {
    const scopes = await Promise.all([cacheScope('k1', 'alice'), cacheScope('k1', 'bob'), cacheScope('k2', 'alice'), cacheScope('k1', null)]);
    expect(new Set(scopes).size).toBe(4);
    expect(await cacheScope('k1', 'alice')).toBe(scopes[0]);
    // Names UTF-8 would make the same (every lone surrogate becomes U+FFFD) stay apart; well-formed ones keep their scope.
    // ...and none of them shares one with the name its JSON spelling is, quotes and all.
    const odd = await Promise.all(['\udc01', '\ud83d', '\ufffd', '\ud83d\ude00', '"\\udc01"', JSON.stringify('\udc01')].map((u) => cacheScope('k1', u)));
    expect(new Set(odd).size).toBe(5);
    expect(odd[3]).toBe(await sha256Hex('k1:\ud83d\ude00'));
  });

  it('writes a value to expire its TTL after the last write (KV takes 60 s at least), or for good with none', async () => {
    const kv = realKv;
    const expiresIn = async (scope: string): Promise<number | null> => {
      const { keys } = await kv.list({ prefix: UserCacheStore.keyFor(scope) });
      return keys[0]?.expiration === undefined ? null : keys[0].expiration - Date.now() / 1000;
    };
    const month = new UserCacheStore(kv, 16 * 1024, 512, undefined, 30 * 86_400);
    const monthScope = await cacheScope('k', 'ttl-month');
    await month.saveMerged(await month.load(monthScope), story);
    expect(await expiresIn(monthScope)).toBeCloseTo(30 * 86_400, -2);
    const short = new UserCacheStore(kv, 16 * 1024, 512, undefined, 5);
    const shortScope = await cacheScope('k', 'ttl-short');
    await short.saveMerged(await short.load(shortScope), story);
    expect(await expiresIn(shortScope)).toBeCloseTo(60, -1);
    // Written again without a TTL: kept for good.
    await storeOn(kv).saveMerged(await storeOn(kv).load(shortScope), story);
    expect(await expiresIn(shortScope)).toBeNull();
    expect((await storeOn(kv).load(shortScope)).cache.isEmpty).toBe(false);
  });

  it('drafts without the cache when KV is down, and the write never throws', async () => {
    const kv = new MapKv();
    const store = storeOn(kv);
    const scope = await cacheScope('k', 'u');
    kv.values.set(UserCacheStore.keyFor(scope), mergeIntoUserCache(null, story));
    kv.failing = true;
    const loaded = await store.load(scope);
    expect(loaded.cache.isEmpty).toBe(true);
    await expect(store.saveMerged(loaded, story)).resolves.toBeUndefined();
  });

  it("leaves the stored cache alone after a read that failed, rather than replace it with the one request", async () => {
    const kv = new MapKv();
    const store = storeOn(kv);
    const scope = await cacheScope('k', 'w');
    const stored = mergeIntoUserCache(null, story, { vocabSize: 512 });
    kv.values.set(UserCacheStore.keyFor(scope), stored);
    kv.failingReads = true;
    const loaded = await store.load(scope);
    expect(loaded.unread).toBe(true);
    kv.failingReads = false; // the outage is over by the write
    await store.saveMerged(loaded, [1, 2, 3]);
    expect(kv.values.get(UserCacheStore.keyFor(scope))).toBe(stored);
    // A read that worked (nothing stored) is written as before.
    const fresh = await store.load(await cacheScope('k', 'x'));
    expect(fresh.unread).toBe(false);
    await store.saveMerged(fresh, [1, 2, 3]);
    expect(Array.from((await store.load(fresh.scope)).cache.history)).toEqual([1, 2, 3]);
  });

  it("merges into the value read at the start when the read before the write fails, keeping the user's history", async () => {
    const kv = new MapKv();
    const store = storeOn(kv);
    const scope = await cacheScope('k', 'v');
    kv.values.set(UserCacheStore.keyFor(scope), mergeIntoUserCache(null, story, { vocabSize: 512 }));
    const loaded = await store.load(scope);
    kv.failingReads = true; // KV fails the read at the end, not the write
    await store.saveMerged(loaded, [1, 2, 3]);
    kv.failingReads = false;
    const history = Array.from((await store.load(scope)).cache.history);
    expect(history.slice(0, story.length)).toEqual(story);
    expect(history.slice(-3)).toEqual([1, 2, 3]);
  });

  it("keeps every one of a user's requests that end at once in one isolate (each write merges into the one before)", async () => {
    const kv = realKv;
    const scope = await cacheScope('k', 'parallel');
    // Four requests of one user, loaded before any ended; each store is a request's own, as in the Worker.
    const loads = await Promise.all([0, 1, 2, 3].map(() => storeOn(kv).load(scope)));
    const requests = [0, 1, 2, 3].map((i) => [1, 100 + i, 200 + i, 300 + i]);
    await Promise.all(loads.map((loaded, i) => storeOn(kv).saveMerged(loaded, requests[i])));
    const cache = (await storeOn(kv).load(scope)).cache;
    for (let i = 0; i < 4; i++) expect(cache.nextTokens([100 + i, 200 + i], 1)[0]?.token).toBe(300 + i);
  });

  it("writes a user's requests that end together in one put, a second at most to their key, as KV takes them", async () => {
    const kv = kvOfOneWriteASecond();
    const scope = await cacheScope('k', 'busy-user');
    const loads = await Promise.all(Array.from({ length: 6 }, () => storeOn(kv).load(scope)));
    const requests = loads.map((_, i) => [1, 100 + i, 200 + i, 300 + i]);
    // The first ends alone; five more end while its put is under way, and join one put after it.
    const first = storeOn(kv).saveMerged(loads[0], requests[0]);
    await new Promise((r) => setTimeout(r, 5));
    await Promise.all(loads.slice(1).map((loaded, i) => storeOn(kv).saveMerged(loaded, requests[i + 1])));
    await first;
    expect(kv.refusedPuts).toBe(0);
    expect(kv.putTimes).toHaveLength(2);
    expect(kv.putTimes[1] - kv.putTimes[0]).toBeGreaterThanOrEqual(990);
    const cache = (await storeOn(kv).load(scope)).cache;
    for (let i = 0; i < 6; i++) expect(cache.nextTokens([100 + i, 200 + i], 1)[0]?.token).toBe(300 + i);
  });

  it("spaces a user's delete from their puts as their puts are (a delete is a write to the key)", async () => {
    const kv = kvOfOneWriteASecond();
    const scope = await cacheScope('k', 'forgets-soon');
    await storeOn(kv).saveMerged(await storeOn(kv).load(scope), [1, 400, 401, 402]);
    await new Promise((r) => setTimeout(r, 100));
    expect(await storeOn(kv).delete(scope)).toBe(true);
    expect(kv.refusedPuts).toBe(0);
    expect(kv.values.has(UserCacheStore.keyFor(scope))).toBe(false);
    expect(kv.putTimes[1] - kv.putTimes[0]).toBeGreaterThanOrEqual(990);
  });

  it("keeps a request whose put KV refused (another isolate wrote the key within the second), and that isolate's tokens too", async () => {
    const kv = kvOfOneWriteASecond();
    const scope = await cacheScope('k', 'two-isolates');
    const key = UserCacheStore.keyFor(scope);
    const loaded = await storeOn(kv).load(scope);
    // Another isolate's request of this user ends first: its put lands just before ours, which KV then refuses.
    await kv.put(key, mergeIntoUserCache(null, [1, 500, 501, 502], { vocabSize: 512 }));
    await storeOn(kv).saveMerged(loaded, [1, 600, 601, 602]);
    expect(kv.refusedPuts).toBe(1);
    expect(kv.putTimes).toHaveLength(2);
    expect(kv.putTimes[1] - kv.putTimes[0]).toBeGreaterThanOrEqual(1000);
    const cache = (await storeOn(kv).load(scope)).cache;
    expect(cache.nextTokens([600, 601], 1)[0]?.token).toBe(602);
    expect(cache.nextTokens([500, 501], 1)[0]?.token).toBe(502);
  });

  it('gives a refused write up after two tries, spaced, without throwing; a write that fails otherwise is not tried again', async () => {
    const kv = new MapKv();
    const scope = await cacheScope('k', 'always-refused');
    kv.refusingPuts = true;
    const store = new UserCacheStore(kv as unknown as KVNamespace, 16 * 1024, 512, undefined, 0, { putIntervalMs: 50 });
    const started = Date.now();
    await expect(store.saveMerged(await store.load(scope), [1, 2, 3])).resolves.toBeUndefined();
    expect(kv.refusedPuts).toBe(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(50);
    // A 503 may have landed: tried again, its requests would be merged twice.
    kv.refusingPuts = false;
    const failing = new MapKv();
    failing.values.set(UserCacheStore.keyFor(scope), mergeIntoUserCache(null, story, { vocabSize: 512 }));
    const onFailing = new UserCacheStore(failing as unknown as KVNamespace, 16 * 1024, 512, undefined, 0, { putIntervalMs: 50 });
    const loaded = await onFailing.load(scope);
    const put = failing.put.bind(failing);
    let puts = 0;
    failing.put = async (key: string, value: Uint8Array) => {
      puts++;
      await put(key, value);
      throw new Error('KV PUT failed: 503');
    };
    await onFailing.saveMerged(loaded, [1, 2, 3]);
    expect(puts).toBe(1);
    expect(Array.from((await onFailing.load(scope)).cache.history).slice(-4)).toEqual([0xffffffff, 1, 2, 3]);
    expect(kv.values.has(UserCacheStore.keyFor(scope))).toBe(false);
    // KV takes writes again: the user's next request is kept as any other.
    kv.refusingPuts = false;
    await store.saveMerged(await store.load(scope), [1, 2, 3]);
    expect(Array.from((await store.load(scope)).cache.history)).toEqual([1, 2, 3]);
  });

  it('lets the requests that joined a put that never answers end (it is given up on after a bound)', async () => {
    const kv = new MapKv();
    const scope = await cacheScope('k', 'joined-stuck');
    // The bound on a put, ioWaitMs, short too (2 s by default; the next write waits twice it for the late put).
    const ioWaitMs = 300;
    const latePutWaitMs = 300;
    const store = (): UserCacheStore => new UserCacheStore(kv as unknown as KVNamespace, 16 * 1024, 512, undefined, 0, { putIntervalMs: 200, latePutWaitMs, ioWaitMs });
    await store().saveMerged(await store().load(scope), [1, 10, 11, 12]);
    // Within the interval: the next two wait for it together, in one batch, whose put never answers.
    kv.hangNextPut = true;
    const loads = await Promise.all([store().load(scope), store().load(scope)]);
    const started = Date.now();
    await Promise.all([store().saveMerged(loads[0], [1, 20, 21, 22]), store().saveMerged(loads[1], [1, 30, 31, 32])]);
    // Given up on after the bound and a wait for it to land late (a timer may fire a few ms early), and not long after.
    expect(Date.now() - started).toBeGreaterThanOrEqual(ioWaitMs + latePutWaitMs - 10);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(kv.putTimes).toHaveLength(2);
    // Not put again while the hung one might still land; the user's next request writes as before.
    await store().saveMerged(await store().load(scope), [1, 40, 41, 42]);
    expect((await store().load(scope)).cache.nextTokens([40, 41], 1)[0]?.token).toBe(42);
  });

  it("does not wait for ever on a write before it that never ends (another request's, cancelled mid-write: its timers never run)", async () => {
    const kv = new MapKv();
    const scope = await cacheScope('k', 'stuck');
    kv.hangNextPut = true;
    // The cancelled request's own bound on its put never fires (no timers run for it): nothing of its own ends its write.
    const cancelled = new UserCacheStore(kv as unknown as KVNamespace, 16 * 1024, 512, undefined, 0, { ioWaitMs: Infinity });
    void cancelled.saveMerged(await cancelled.load(scope), [1, 50, 60, 70]);
    // (Its put, unanswered, is waited for twice ioWaitMs more, as a put given up on: it may land yet.)
    const next = new UserCacheStore(kv as unknown as KVNamespace, 16 * 1024, 512, undefined, 0, { previousWriteWaitMs: 300, ioWaitMs: 300 });
    const started = Date.now();
    await next.saveMerged(await next.load(scope), [1, 80, 90, 100]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(Date.now() - started).toBeLessThan(2_500);
    expect((await next.load(scope)).cache.nextTokens([80, 90], 1)[0]?.token).toBe(100);
    // And the user's writes after it go on as before.
    await next.saveMerged(await next.load(scope), [1, 110, 120, 130]);
    expect((await next.load(scope)).cache.nextTokens([110, 120], 1)[0]?.token).toBe(130);
  });

  it("writes a request whose own context died while it waited its turn (its timers never run) with the user's next one, and holds that one back not at all", async () => {
    const kv = new MapKv();
    const scope = await cacheScope('k', 'dead-waiter');
    const live = (): UserCacheStore => new UserCacheStore(kv as unknown as KVNamespace, 16 * 1024, 512, undefined, 0, { putIntervalMs: 100 });
    await live().saveMerged(await live().load(scope), [1, 10, 11, 12]);
    // Its wait for KV's interval never ends, as a request's whose context the runtime ended: no timer of its fires.
    const dead = new UserCacheStore(kv as unknown as KVNamespace, 16 * 1024, 512, undefined, 0, { putIntervalMs: 600_000 });
    void dead.saveMerged(await dead.load(scope), [1, 20, 21, 22]);
    await new Promise((r) => setTimeout(r, 10));
    const started = Date.now();
    await live().saveMerged(await live().load(scope), [1, 30, 31, 32]);
    expect(Date.now() - started).toBeLessThan(1_000);
    const cache = (await live().load(scope)).cache;
    // Both written, in one put: the live request took the dead one's tokens with its own.
    expect(cache.nextTokens([30, 31], 1)[0]?.token).toBe(32);
    expect(cache.nextTokens([20, 21], 1)[0]?.token).toBe(22);
    expect(cache.merges).toBe(3);
    expect(kv.putTimes).toHaveLength(2);
  });

  /**
   * A user with one write behind them, then two of their requests loaded: one that gets the turn first (its interval
   * shorter) and whose own timers never fire to give its KV calls up (ioWaitMs Infinity), and a live one.
   */
  async function dyingThenLive(user: string, live: Partial<UserCacheTiming>): Promise<{ kv: MapKv; scope: string; dying: UserCacheStore; live: UserCacheStore; dyingLoad: LoadedUserCache; liveLoad: LoadedUserCache }> {
    const kv = new MapKv();
    const scope = await cacheScope('k', user);
    const store = (timing: Partial<UserCacheTiming>): UserCacheStore => new UserCacheStore(kv as unknown as KVNamespace, 16 * 1024, 512, undefined, 0, timing);
    await store({}).saveMerged(await store({}).load(scope), [1, 10, 11, 12]);
    const dying = store({ putIntervalMs: 50, ioWaitMs: Infinity });
    const liveStore = store({ putIntervalMs: 150, ...live });
    const [dyingLoad, liveLoad] = await Promise.all([dying.load(scope), liveStore.load(scope)]);
    return { kv, scope, dying, live: liveStore, dyingLoad, liveLoad };
  }

  it("writes a live request's tokens that a write whose request died mid-read took, once that write is seen to have begun no put", async () => {
    // The dead request gets the turn first and takes the live one's tokens with its own; its read at the end never
    // answers, and no timer of its fires to give it up.
    const { kv, scope, dying: dead, live, dyingLoad: deadLoad, liveLoad } = await dyingThenLive('dead-claimer', { previousWriteWaitMs: 300 });
    kv.hangNextGet = true;
    void dead.saveMerged(deadLoad, [1, 20, 21, 22]);
    const started = Date.now();
    await live.saveMerged(liveLoad, [1, 30, 31, 32]);
    expect(Date.now() - started).toBeLessThan(2_000);
    const cache = (await live.load(scope)).cache;
    expect(cache.nextTokens([30, 31], 1)[0]?.token).toBe(32);
    // The dead request's too: the live one took them back with its own.
    expect(cache.nextTokens([20, 21], 1)[0]?.token).toBe(22);
    expect(cache.merges).toBe(3);
  });

  it("writes a stalled write's requests once: the write that took them back, never the stalled one when it comes back", async () => {
    const { kv, scope, dying: stalled, live, dyingLoad: stalledLoad, liveLoad } = await dyingThenLive('stalled-claimer', { ioWaitMs: 100, previousWriteWaitMs: 300 });
    kv.holdNextGet = true;
    const stalledSave = stalled.saveMerged(stalledLoad, [1, 20, 21, 22]);
    await live.saveMerged(liveLoad, [1, 30, 31, 32]);
    expect(kv.putTimes).toHaveLength(2);
    // The stalled write's read answers at last: it puts nothing (its requests were written by the live one).
    kv.releaseHeldGet();
    await stalledSave;
    expect(kv.putTimes).toHaveLength(2);
    expect((await live.load(scope)).cache.merges).toBe(3);
  });

  it("does not write again the requests of a write whose put began and never answers (they may be in KV)", async () => {
    const { kv, dying, live, dyingLoad, liveLoad } = await dyingThenLive('hung-put', { ioWaitMs: 100, previousWriteWaitMs: 300 });
    kv.hangNextPut = true;
    void dying.saveMerged(dyingLoad, [1, 20, 21, 22]);
    const started = Date.now();
    await live.saveMerged(liveLoad, [1, 30, 31, 32]);
    expect(Date.now() - started).toBeLessThan(2_000);
    // The hung put took both; the live request waited for it its bound, and put nothing of its own again.
    expect(kv.putTimes).toHaveLength(2);
  });

  it('leaves its tokens for the next write once its wait for a turn runs out, and that write takes them', async () => {
    const kv = new MapKv();
    const scope = await cacheScope('k', 'out-of-time');
    const store = (timing: Partial<UserCacheTiming>): UserCacheStore => new UserCacheStore(kv as unknown as KVNamespace, 16 * 1024, 512, undefined, 0, timing);
    await store({}).saveMerged(await store({}).load(scope), [1, 10, 11, 12]);
    // Its turn comes only a second after the put before: it may wait 200 ms.
    const hurried = store({ claimWaitMs: 200 });
    const started = Date.now();
    await hurried.saveMerged(await hurried.load(scope), [1, 20, 21, 22]);
    expect(Date.now() - started).toBeLessThan(600);
    expect(kv.putTimes).toHaveLength(1);
    await store({}).saveMerged(await store({}).load(scope), [1, 30, 31, 32]);
    const cache = (await store({}).load(scope)).cache;
    expect(cache.nextTokens([20, 21], 1)[0]?.token).toBe(22);
    expect(cache.merges).toBe(3);
  });

  it('waits for its own put given up on, a while, so that it lands from a live request', async () => {
    const kv = new MapKv();
    const scope = await cacheScope('k', 'late-own-put');
    const store = new UserCacheStore(kv as unknown as KVNamespace, 16 * 1024, 512, undefined, 0, { ioWaitMs: 100, latePutWaitMs: 2_000 });
    kv.putLatencyMs = 500;
    const started = Date.now();
    await store.saveMerged(await store.load(scope), [1, 10, 11, 12]);
    // Given up on at 100 ms (the turn handed on), waited for until it landed at ~500.
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(kv.values.has(UserCacheStore.keyFor(scope))).toBe(true);
  });

  it("waits for a put given up on before the user's next write, so that landing late it does not overwrite it", async () => {
    const kv = new MapKv();
    const scope = await cacheScope('k', 'late-then-next');
    const store = new UserCacheStore(kv as unknown as KVNamespace, 16 * 1024, 512, undefined, 0, { putIntervalMs: 50, ioWaitMs: 300, latePutWaitMs: 0 });
    kv.putLatencyMs = 500;
    // Given up on at 300 ms; it lands at ~500.
    await store.saveMerged(await store.load(scope), [1, 10, 11, 12]);
    kv.putLatencyMs = 0;
    await store.saveMerged(await store.load(scope), [1, 20, 21, 22]);
    const cache = (await store.load(scope)).cache;
    // The next write read what the late put wrote and merged into it: both kept, the late one not written over.
    expect(cache.nextTokens([10, 11], 1)[0]?.token).toBe(12);
    expect(cache.nextTokens([20, 21], 1)[0]?.token).toBe(22);
    expect(cache.merges).toBe(2);
  });

  /** A user's write whose put takes `putLatencyMs` (given up on after 100 ms), then a delete of theirs: what it said, and what it left for waitUntil. */
  async function slowPutThenDelete(user: string, putLatencyMs: number, previousWriteWaitMs: number): Promise<{ kv: MapKv; key: string; existed: boolean; late: Promise<unknown>[] }> {
    const kv = new MapKv();
    const scope = await cacheScope('k', user);
    const store = new UserCacheStore(kv as unknown as KVNamespace, 16 * 1024, 512, undefined, 0, { putIntervalMs: 50, ioWaitMs: 100, previousWriteWaitMs, latePutWaitMs: 50 });
    kv.putLatencyMs = putLatencyMs;
    await store.saveMerged(await store.load(scope), [1, 50, 60, 70]);
    kv.putLatencyMs = 0;
    const late: Promise<unknown>[] = [];
    const existed = await store.delete(scope, (p) => late.push(p));
    return { kv, key: UserCacheStore.keyFor(scope), existed, late };
  }

  it('deletes again after a put it gave up on lands late, so a forgotten user stays forgotten', async () => {
    // The write is given up on after 100 ms, its request waits 50 ms more for it; its put lands at ~700.
    const { kv, key, existed, late } = await slowPutThenDelete('slow-put', 700, 200);
    expect(existed).toBe(false);
    // The delete waited for it (200 ms), went ahead, and left a second delete for when it lands.
    expect(late).toHaveLength(1);
    await Promise.all(late);
    expect(kv.values.has(key)).toBe(false);
    // KV's writes of the key: the late put and the two deletes.
    expect(kv.putTimes).toHaveLength(3);
  });

  it('waits for a put it gave up on before a delete, where that put lands within the wait', async () => {
    const { kv, key, existed, late } = await slowPutThenDelete('slowish-put', 300, 1_000);
    // The put landed before the delete read: there was a value, and nothing is left to delete again.
    expect(existed).toBe(true);
    expect(late).toHaveLength(0);
    expect(kv.values.has(key)).toBe(false);
  });

  it('drafts from a damaged value inside the vocabulary, and replaces it with a valid one at the write', async () => {
    const kv = realKv;
    const store = storeOn(kv);
    const scope = await cacheScope('k', 'damaged');
    const damaged = mergeIntoUserCache(null, story, { vocabSize: 512 });
    // Every slot's next tokens made ids past the vocabulary (keys left intact,
    // so the contexts are still found): the checksum no longer holds.
    const slotCount = new DataView(damaged.buffer, damaged.byteOffset).getUint32(12, true);
    for (let slot = 0; slot < slotCount; slot++) for (let i = 0; i < 4; i++) damaged[32 + slot * 32 + 4 + 4 * i + 1] |= 0x7f;
    expect(UserCache.decode(damaged, { vocabSize: 512 }).isEmpty).toBe(true);
    await kv.put(UserCacheStore.keyFor(scope), damaged);
    const loaded = await store.load(scope);
    // Read without the checksum (the request path): whatever it drafts names only tokens the model has.
    expect(loaded.cache.nextTokens(story.slice(0, 4), 4)[0].token).toBeGreaterThanOrEqual(512);
    const trie = draftEdgeTrie(loaded.cache, story.slice(0, 6), { maxNodes: 64 });
    expect(edgeTrieTokenOutside(trie, 512)).toBeNull();
    await store.saveMerged(loaded, [1, 2, 3]);
    const rewritten = (await storedBytes(kv, UserCacheStore.keyFor(scope)))!;
    // The merge checked it: the damaged value is gone, the new request alone is kept.
    const fresh = UserCache.decode(rewritten, { vocabSize: 512 });
    expect(fresh.isEmpty).toBe(false);
    expect(Array.from(fresh.history)).toEqual([1, 2, 3]);
  });

  it('treats a value that is not a cache at all as empty', async () => {
    const kv = realKv;
    const store = storeOn(kv);
    const scope = await cacheScope('k', 'not-a-cache');
    await kv.put(UserCacheStore.keyFor(scope), 'not a cache, not even close');
    const loaded = await store.load(scope);
    expect(loaded.cache.isEmpty).toBe(true);
    expect(loaded.bytes).toBeNull();
    await store.saveMerged(loaded, story);
    expect((await store.load(scope)).cache.isEmpty).toBe(false);
  });
});
