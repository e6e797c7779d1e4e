/**
 * The per-user cache in KV (an n-gram table and the latest requests verbatim): one read at request start, and at the end
 * (via waitUntil) a read and one bounded write, shared by the user's requests that end together (KV takes one write a
 * second per key). The cache scope is hash(keyId + ':' + user), so a
 * request can only ever read or write its own user's cache. Missing or corrupt
 * values decode to an empty cache and a KV outage never fails a request: the
 * request just drafts without the cache, and leaves the stored value alone.
 */
import { mergeIntoUserCache, UserCache } from '../shared/drafting/user-cache';
import { sha256Hex } from './api-keys';
import { scopeMetadata } from './kv-record';
import { sleep, TIMED_OUT, within } from './settled-within';

export interface LoadedUserCache {
  scope: string;
  /** The data scope (KeyRecord.dataScope) `scope` was hashed from: the write's KV metadata (review h150). */
  dataScope?: string;
  /** The stored bytes (null when none or unreadable): the base of the merge at the end. */
  bytes: Uint8Array | null;
  cache: UserCache;
  /** When it was read (Date.now()): a delete of the scope after it means the request merges into nothing. */
  readAt: number;
  /**
   * The read failed (KV unreachable): what is stored is unknown, so the write
   * at the end is skipped rather than replace the user's cache with one made
   * of this request alone.
   */
  unread: boolean;
}

const LONE_SURROGATE = /\p{Cs}/u;

export async function cacheScope(keyId: string, user: string | null | undefined): Promise<string> {
  // UTF-8 turns every lone surrogate into U+FFFD, and "\udc01", "\ud83d" and
  // "\ufffd" would share one user's cache (and its verbatim history): such a
  // name is hashed spelled out as JSON, after '#' where others have ':' (a
  // key id is hex), so no other name can spell the same.
  const name = user ?? '';
  return sha256Hex(LONE_SURROGATE.test(name) ? `${keyId}#${JSON.stringify(name)}` : `${keyId}:${name}`);
}

/**
 * Per scope, the write (a merge and put, or a delete) under way in this
 * isolate: the next waits for it, so a user's requests that end together
 * here merge one after the other instead of each overwriting the other's
 * tokens. (Requests that end in other isolates still race: KV has no
 * compare-and-set.) Settles once the write is done; never rejects.
 */
const writesInFlight = new Map<string, Promise<void>>();
/**
 * Per turn of a write, that write: a request that gives up waiting for a turn
 * whose write began no put hands that write's requests back to wait.
 */
const writesByTurn = new WeakMap<Promise<void>, Write>();
/** A write whose put has not begun this long after a waiter looked (ioWaitMs more) is taken for one whose request died. */
const PUT_START_SLACK_MS = 1_000;
/**
 * How long one user's writes wait, and are waited for (the constructor's
 * `timing`; tests shorten them).
 */
export interface UserCacheTiming {
  /** The least time between two puts (or deletes) of one user's value: KV's one write a second per key. */
  putIntervalMs: number;
  /**
   * The most one KV call of a write (its read, its put) is waited for: one
   * unanswered by then is given up on, so the requests that joined the write
   * end; a put given up on may still land (delete() sees to that).
   */
  ioWaitMs: number;
  /**
   * The most a write (or a delete) waits for the one before it. That one is
   * another request's I/O: if the runtime cancels that request first (its
   * waitUntil time ran out), it runs no more timers and its promise never
   * settles, and without a bound every later write of the user in this
   * isolate would wait for it for ever. Past the longest a write takes that
   * is not stuck: MAX_PUT_TRIES reads and puts, each bounded by ioWaitMs,
   * spaced by the interval and its jitter (~9.3 s by default).
   */
  previousWriteWaitMs: number;
  /** How long the request whose put was given up on (its turn handed on) still waits for it, so that it lands, if it does, from a live context. */
  latePutWaitMs: number;
  /**
   * A request's whole wait, all of it inside Workers' 30 s of waitUntil: past
   * it a request leaves its tokens for the user's next write, and waits no
   * more for a write or a late put.
   */
  saveWaitMs: number;
  /** The part of saveWaitMs in which a request may still take its turn (the rest is for its write: ~8 s at most). */
  claimWaitMs: number;
}

const DEFAULT_TIMING: UserCacheTiming = { putIntervalMs: 1_000, ioWaitMs: 2_000, previousWriteWaitMs: 10_000, latePutWaitMs: 20_000, saveWaitMs: 28_000, claimWaitMs: 18_000 };

/** Hands a write's requests that it still holds back to wait, and the turn on; it writes nothing (its put had not begun). */
function abandonWrite(scope: string, write: Write): void {
  if (write.abandoned || write.putStarted) return;
  write.abandoned = true;
  if (writesInFlight.get(scope) === write.turn) writesInFlight.delete(scope);
  for (const taken of write.entries) {
    if (taken.takenBy !== write) continue;
    taken.takenBy = undefined;
    addPending(scope, taken);
  }
}

/**
 * A put KV refuses with 429 (another isolate wrote the key within the
 * second: it did not land) is tried again, re-read and re-merged: this many
 * tries in all. Other failures are not: the put may have landed, and merged
 * again its requests would be kept twice.
 */
const MAX_PUT_TRIES = 2;
/** Up to this much more than the interval before a retry: isolates refused together retry apart. */
const RETRY_JITTER_MS = 250;

/**
 * Per scope, this isolate's puts not yet answered (given up on or not), with
 * when each began: a delete waits for them, and deletes again after one that
 * lands late. One unanswered past LATE_PUT_MEMORY_MS is forgotten: its
 * request's context has ended (its waitUntil time is 30 s), and a put
 * workerd cancels with it never settles.
 */
const putsInFlight = new Map<string, Map<Promise<void>, number>>();
const LATE_PUT_MEMORY_MS = 30_000;

function notePutInFlight(scope: string, put: Promise<unknown>): Promise<void> {
  const settled = put.then(
    () => undefined,
    () => undefined,
  );
  let puts = putsInFlight.get(scope);
  if (!puts) putsInFlight.set(scope, (puts = new Map()));
  puts.set(settled, Date.now());
  void settled.then(() => {
    puts.delete(settled);
    if (puts.size === 0 && putsInFlight.get(scope) === puts) putsInFlight.delete(scope);
  });
  return settled;
}

/** The scope's unanswered puts that may still land (those older than LATE_PUT_MEMORY_MS forgotten). */
function latePuts(scope: string): Promise<void>[] {
  const puts = putsInFlight.get(scope);
  if (!puts) return [];
  const now = Date.now();
  for (const [put, startedAt] of puts) if (now - startedAt > LATE_PUT_MEMORY_MS) puts.delete(put);
  if (puts.size === 0) putsInFlight.delete(scope);
  return [...puts.keys()];
}

/** KV's refusal of a write to a key written within the second (Workers KV: "KV PUT failed: 429 Too Many Requests"). */
function isRateLimited(err: unknown): boolean {
  return /\b429\b|too many requests/i.test(err instanceof Error ? err.message : String(err));
}


/**
 * Per scope, when this isolate last deleted it (DELETE /v1/user-cache): a
 * request of that user which read the cache before then writes nothing at
 * its end (merged, it would put the forgotten value back, which a read at
 * its end may still see: KV is eventually consistent). Kept
 * DELETED_MEMORY_MS, past KV's ~60 s of staleness; bounded.
 */
const deletedAt = new Map<string, number>();
const DELETED_MEMORY_MS = 120_000;
const DELETED_MAX = 10_000;

function noteDeleted(scope: string, at: number): void {
  if (deletedAt.size >= DELETED_MAX) {
    for (const [s, t] of deletedAt) if (t < at - DELETED_MEMORY_MS) deletedAt.delete(s);
    // Still full of fresh ones: the oldest goes (Map keeps insertion order).
    if (deletedAt.size >= DELETED_MAX) deletedAt.delete(deletedAt.keys().next().value!);
  }
  deletedAt.delete(scope);
  deletedAt.set(scope, at);
}

/** An ended request waiting to be written. */
interface BatchEntry {
  /** When its request read the cache. */
  readAt: number;
  /** What it read, kept only on the scope's latest-read waiting entry (the base of a merge whose read at the end fails). */
  bytes: Uint8Array | null;
  tokens: ArrayLike<number>;
  /** The write that took it; undefined while it waits. */
  takenBy?: Write;
  /** When it was added to the waiting list. */
  addedAt?: number;
  /** Its request's data scope (each entry of a cache scope has the same: the scope hashes it). */
  dataScope?: string;
}

/** One merge and put of a user's waiting requests. */
interface Write {
  /** Settles once it is done or given up on; never rejects. */
  done: Promise<void>;
  /** Its turn (the scope's writesInFlight entry). */
  turn: Promise<void>;
  /** The requests it took. */
  entries: BatchEntry[];
  /** Its put has begun: its requests may be in KV, so none is written again. */
  putStarted: boolean;
  /** Given up on before its put began (its request's context ended, most likely): it writes nothing, its requests wait again. */
  abandoned: boolean;
  /** A put given up on after ioWaitMs, which may still land: its request waits for it a while longer. */
  latePut: Promise<void> | null;
}

/**
 * Per scope, the ended requests waiting for a write: the next write of the
 * user takes them all, whichever of their requests (or a later one) gets its
 * turn first. Every waiting request drives that on its own timers: a
 * request whose context the runtime ended (workerd stops a cancelled
 * request's timers) leaves its entry here for the others, where a batch
 * waiting on that request's timer held every later request of the user in
 * it, never written (a soak lost a user's 115 requests so).
 */
const pendingEntries = new Map<string, BatchEntry[]>();
/** Scopes with entries waiting, at most (each list holds one value's bytes at most); lists not added to for PENDING_STALE_MS go first. */
const PENDING_SCOPES_MAX = 256;
const PENDING_STALE_MS = 60_000;

/** Adds an entry to its scope's waiting list, the older entries' bytes dropped where it read later. */
function addPending(scope: string, entry: BatchEntry): void {
  let pending = pendingEntries.get(scope);
  if (!pending) {
    if (pendingEntries.size >= PENDING_SCOPES_MAX) {
      const now = Date.now();
      for (const [s, list] of pendingEntries) if (now - (list[list.length - 1]?.addedAt ?? 0) > PENDING_STALE_MS) pendingEntries.delete(s);
      if (pendingEntries.size >= PENDING_SCOPES_MAX) pendingEntries.delete(pendingEntries.keys().next().value!);
    }
    pendingEntries.set(scope, (pending = []));
  }
  for (const older of pending) if (older.readAt <= entry.readAt) older.bytes = null;
  if (pending.some((older) => older.bytes !== null)) entry.bytes = null;
  entry.addedAt = Date.now();
  pending.push(entry);
}

/** Per scope, when this isolate last began a put of it; entries older than the interval are dropped as it grows. */
const lastPutAt = new Map<string, number>();
const LAST_PUTS_MAX = 10_000;

function notePut(scope: string, at: number): void {
  // Entries that no interval in use reaches any more (tests shorten it; KV's is a second).
  if (lastPutAt.size >= LAST_PUTS_MAX) for (const [s, t] of lastPutAt) if (t < at - 60_000) lastPutAt.delete(s);
  if (lastPutAt.size >= LAST_PUTS_MAX) lastPutAt.delete(lastPutAt.keys().next().value!);
  lastPutAt.delete(scope);
  lastPutAt.set(scope, at);
}

/** How long a put of `scope` must wait: until `intervalMs` after the last one this isolate began. */
function putWaitMs(scope: string, intervalMs: number): number {
  return (lastPutAt.get(scope) ?? -Infinity) + intervalMs - Date.now();
}

/** Resolves once a put of `scope` may go. */
async function untilPutAllowed(scope: string, intervalMs: number): Promise<void> {
  const wait = putWaitMs(scope, intervalMs);
  if (wait > 0) await sleep(wait);
}

export class UserCacheStore {
  constructor(
    private readonly kv: KVNamespace,
    private readonly maxBytes: number,
    /** Lets a value written for another model's vocabulary decode as empty. */
    private readonly vocabSize?: number,
    /** Tokens of the latest requests kept verbatim (undefined: the codec's default; 0: none, and a stored history goes at the next write). */
    private readonly historyTokens?: number,
    /** Seconds a value stays after its last write (0: for good); KV takes 60 at least. */
    private readonly ttlSeconds = 0,
    /** How long writes wait and are waited for (DEFAULT_TIMING where not given). */
    timing: Partial<UserCacheTiming> = {},
  ) {
    this.timing = { ...DEFAULT_TIMING, ...timing };
  }

  private readonly timing: UserCacheTiming;

  static keyFor(scope: string): string {
    return `uc:${scope}`;
  }

  /** The cache of `scope` (cacheScope's hash of `dataScope` and the user): `dataScope` goes into its write's KV metadata. */
  async load(scope: string, dataScope?: string): Promise<LoadedUserCache> {
    const readAt = Date.now();
    let bytes: Uint8Array | null = null;
    let unread = false;
    try {
      const value = await this.kv.get(UserCacheStore.keyFor(scope), 'arrayBuffer');
      bytes = value ? new Uint8Array(value) : null;
    } catch (err) {
      unread = true;
      console.warn('edge: user cache read failed; drafting without it', err);
    }
    let cache: UserCache;
    try {
      // The checksum is checked where the value is merged, off the request
      // path (it was most of the request's edge CPU: ~120 of ~150 µs in
      // workerd); a damaged value drafts badly for one request at most.
      cache = UserCache.decode(bytes, { vocabSize: this.vocabSize, verify: false });
    } catch {
      cache = UserCache.decode(null);
    }
    // A value that decodes as empty (corrupt, foreign) is not merged into either.
    if (cache.isEmpty) bytes = null;
    return { scope, ...(dataScope !== undefined ? { dataScope } : {}), bytes, cache, readAt, unread };
  }

  /** The stored value as KV holds it (null: none), for GET /v1/user-cache; throws where KV fails. */
  async read(scope: string): Promise<Uint8Array | null> {
    const value = await this.kv.get(UserCacheStore.keyFor(scope), 'arrayBuffer');
    return value ? new Uint8Array(value) : null;
  }

  /**
   * Merge the finished request's tokens into the stored value and write it
   * back (not after a failed read); never throws. The value is read again
   * first: the user's other requests that ended while this one ran wrote
   * theirs in the meantime, and merging into the value read at the start
   * would drop what they added (last writer wins). KV takes one write a
   * second per key: the user's requests that end here while a write of
   * theirs is under way or spaced wait together, and the first to get its
   * turn merges them all into one put; puts of one user are spaced
   * `putIntervalMs` apart (a second put within it would fail, and lose
   * those requests). Resolves once the write that took this request is done
   * (or given up on). Ends in other isolates still race for the few ms
   * between a read and its write.
   */
  async saveMerged(loaded: LoadedUserCache, tokens: ArrayLike<number>): Promise<void> {
    if (loaded.unread) return;
    const { scope } = loaded;
    const { ioWaitMs, previousWriteWaitMs, latePutWaitMs, saveWaitMs, claimWaitMs } = this.timing;
    const started = Date.now();
    const left = (): number => Math.max(0, started + saveWaitMs - Date.now());
    const entry: BatchEntry = { readAt: loaded.readAt, bytes: loaded.bytes, tokens, ...(loaded.dataScope !== undefined ? { dataScope: loaded.dataScope } : {}) };
    addPending(scope, entry);
    for (;;) {
      const release = await this.claimTurn(scope, started + claimWaitMs, () => entry.takenBy === undefined);
      if (release === null) {
        const write = entry.takenBy;
        // Past the deadline, still waiting: left for the user's next write.
        if (write === undefined) return;
        // A live write begins its put within ioWaitMs of its turn (its read bounded so): one that has not by then
        // (its request's context ended, most likely) writes nothing now, and its requests wait again.
        if ((await within(write.done, Math.min(previousWriteWaitMs, ioWaitMs + PUT_START_SLACK_MS, left()))) !== TIMED_OUT || write.putStarted || left() === 0) return;
        abandonWrite(scope, write);
        continue;
      }
      const entries = pendingEntries.get(scope) ?? [];
      pendingEntries.delete(scope);
      // Its scope's list dropped by the bound meanwhile: its own entry still goes, with the value it read.
      if (!entries.includes(entry)) {
        entry.bytes = loaded.bytes;
        entries.push(entry);
      }
      const write: Write = { done: Promise.resolve(), turn: release.turn, entries, putStarted: false, abandoned: false, latePut: null };
      writesByTurn.set(release.turn, write);
      for (const taken of entries) taken.takenBy = write;
      write.done = this.mergeAndWrite(scope, entries, write);
      try {
        await write.done;
      } finally {
        release.end();
      }
      // Its put given up on (the turn handed on): waited for a while yet, so that it lands, if it does, from a live request.
      if (write.latePut) await within(write.latePut, Math.min(latePutWaitMs, left()));
      return;
    }
  }

  /**
   * Waits for the user's write under way (at most previousWriteWaitMs: one
   * past it is another request's that the runtime ended, and is not waited
   * for again) and for KV's interval since their last put, on this request's
   * own timers, then takes the turn. Null, without a turn, once `stillNeeded`
   * says another write took this one's work, or past `deadline`.
   */
  private async claimTurn(scope: string, deadline: number, stillNeeded: () => boolean = () => true): Promise<{ turn: Promise<void>; end: () => void } | null> {
    const { putIntervalMs, previousWriteWaitMs, ioWaitMs } = this.timing;
    let waitedForLatePuts = false;
    for (;;) {
      if (!stillNeeded() || Date.now() > deadline) return null;
      const inFlight = writesInFlight.get(scope);
      if (inFlight !== undefined) {
        if ((await within(inFlight, Math.min(previousWriteWaitMs, Math.max(1, deadline - Date.now())))) === TIMED_OUT && writesInFlight.get(scope) === inFlight && Date.now() <= deadline) {
          // Another request's, which the runtime ended, most likely: where its write began no put, its requests wait again.
          const write = writesByTurn.get(inFlight);
          if (write && !write.putStarted) abandonWrite(scope, write);
          else writesInFlight.delete(scope);
        }
        continue;
      }
      // A put given up on may still land, and landing after this write it would overwrite it: waited for a while
      // (once), so that this write reads it and merges into it.
      const late = waitedForLatePuts ? [] : latePuts(scope);
      if (late.length > 0) {
        waitedForLatePuts = true;
        await within(Promise.all(late), Math.min(2 * ioWaitMs, Math.max(1, deadline - Date.now())));
        continue;
      }
      const wait = putWaitMs(scope, putIntervalMs);
      if (wait > 0) {
        await sleep(Math.min(wait, Math.max(1, deadline - Date.now())));
        continue;
      }
      let end!: () => void;
      const turn = new Promise<void>((resolve) => (end = resolve));
      writesInFlight.set(scope, turn);
      return {
        turn,
        end: () => {
          if (writesInFlight.get(scope) === turn) writesInFlight.delete(scope);
          end();
        },
      };
    }
  }

  /**
   * Deletes a user's cache (their request to be forgotten, or an operator's),
   * in turn with this isolate's writes for them: after the one in flight (so
   * it does not put the value back), and before any that follows, which
   * writes nothing of a request that read the cache before the delete
   * (deletedAt). Whether a value was there. Throws where KV fails, or does
   * not answer within ioWaitMs. A request of theirs ending in another isolate
   * within KV's staleness (~60 s) can still merge into the old value there.
   * A put of this isolate given up on (unanswered past ioWaitMs) is waited for
   * twice that more; one still unanswered then may land after the delete and
   * put the value back, so the key is deleted again once it settles, in a
   * promise handed to `waitUntil` (the request's, off its response). Its turn
   * lasts under previousWriteWaitMs, so no write gives up waiting for it.
   */
  async delete(scope: string, waitUntil?: (promise: Promise<unknown>) => void): Promise<boolean> {
    const key = UserCacheStore.keyFor(scope);
    const { putIntervalMs, ioWaitMs } = this.timing;
    const release = await this.claimTurn(scope, Infinity);
    if (release === null) throw new Error('unreachable: a delete always takes its turn');
    const unanswered = (what: string): Error => new Error(`KV ${what} unanswered after ${ioWaitMs} ms`);
    try {
      notePut(scope, Date.now());
      noteDeleted(scope, Date.now());
      const read = await within(this.kv.get(key, 'arrayBuffer'), ioWaitMs);
      // Unread: said to have been there (it is gone either way once the delete lands).
      const existed = read === TIMED_OUT || read !== null;
      // Whatever the read said: it may be stale (KV is eventually consistent), and a forgotten value must go.
      const deleted = await within(this.kv.delete(key), ioWaitMs);
      const still = latePuts(scope);
      if (still.length > 0) {
        // For as long as such a put is remembered, within the delete's own waitUntil time (30 s).
        const again = within(Promise.all(still), LATE_PUT_MEMORY_MS - 5_000)
          .then(() => untilPutAllowed(scope, putIntervalMs))
          .then(() => {
            notePut(scope, Date.now());
            return this.kv.delete(key);
          })
          .catch((err: unknown) => console.warn('edge: user cache delete after a late write failed', err));
        waitUntil?.(again);
      }
      if (deleted === TIMED_OUT) throw unanswered('DELETE');
      return existed;
    } finally {
      release.end();
    }
  }

  /**
   * Reads the stored value, merges each ended request's tokens in, in turn, and writes it back once; never throws. A put
   * KV refuses with 429 is tried again after KV's interval, from a fresh read (what refused it was most likely another
   * isolate's write of the key, whose tokens the retry keeps where the read sees them), up to MAX_PUT_TRIES in all.
   */
  private async mergeAndWrite(scope: string, entries: readonly BatchEntry[], write: Write): Promise<void> {
    for (let tries = 1; ; tries++) {
      const outcome = await this.mergeAndPut(scope, entries, write);
      if (outcome !== 'refused') return;
      // Refused: it did not land, so its requests may be handed back should this request die before the next try.
      write.putStarted = false;
      if (tries >= MAX_PUT_TRIES) {
        console.warn(`edge: user cache write refused ${tries} times; these requests are not kept`);
        return;
      }
      // Spaced from the refused put (noted when it began), with a little jitter: isolates refused together retry apart.
      await untilPutAllowed(scope, this.timing.putIntervalMs + Math.floor(Math.random() * RETRY_JITTER_MS));
    }
  }

  /** One read, merge and put: 'refused' where KV refused the put (429: worth another try), else done (written, nothing to write, or given up). */
  private async mergeAndPut(scope: string, entries: readonly BatchEntry[], write: Write): Promise<'done' | 'refused'> {
    // Deleted since a request read it: the user asked to be forgotten after sending it, so it is not kept
    // either (and what it read, or what KV may still show, is not written back).
    const kept = entries.filter((entry) => (deletedAt.get(scope) ?? 0) < entry.readAt);
    if (kept.length === 0) return 'done';
    const { ioWaitMs } = this.timing;
    let base: Uint8Array | null;
    try {
      const value = await within(this.kv.get(UserCacheStore.keyFor(scope), 'arrayBuffer'), ioWaitMs);
      if (value === TIMED_OUT) throw new Error(`KV GET unanswered after ${ioWaitMs} ms`);
      base = value ? new Uint8Array(value) : null;
    } catch (err) {
      // Deleted lately: the value read at the start may be the forgotten one (read while the delete ran); not written back.
      if ((deletedAt.get(scope) ?? 0) > Date.now() - DELETED_MEMORY_MS) {
        console.warn('edge: user cache re-read failed after a delete of it; this request is not kept', err);
        return 'done';
      }
      // Still the value of a moment ago at worst: merge into the latest read.
      console.warn('edge: user cache re-read failed; merging into the value read at the start', err);
      base = kept.reduce((latest, entry) => (entry.readAt >= latest.readAt ? entry : latest)).bytes;
    }
    // A delete that came while the read was under way: nothing read before it is written back.
    if (kept.some((entry) => (deletedAt.get(scope) ?? 0) >= entry.readAt)) return 'done';
    let merged: Uint8Array | null = base;
    try {
      for (const entry of kept) merged = mergeIntoUserCache(merged, entry.tokens, { maxBytes: this.maxBytes, vocabSize: this.vocabSize, historyTokens: this.historyTokens });
    } catch (err) {
      console.warn('edge: user cache merge failed', err);
      return 'done';
    }
    // Given up on by a request it took (this request's context ended while it read, most likely): they wait again.
    if (write.abandoned) return 'done';
    write.putStarted = true;
    notePut(scope, Date.now());
    // Named by a hash, the value says whose it is in its metadata: `sssd kv erase` finds it by that (review h150).
    const dataScope = entries.find((entry) => entry.dataScope !== undefined)?.dataScope;
    const metadata = dataScope !== undefined ? { metadata: scopeMetadata(dataScope) } : {};
    const put = this.kv.put(UserCacheStore.keyFor(scope), merged!, this.ttlSeconds > 0 ? { expirationTtl: Math.max(60, this.ttlSeconds), ...metadata } : metadata);
    const settled = notePutInFlight(scope, put);
    let outcome: void | typeof TIMED_OUT;
    try {
      outcome = await within(put, ioWaitMs);
    } catch (err) {
      if (isRateLimited(err)) {
        console.warn('edge: user cache write refused by KV (429)', err);
        return 'refused';
      }
      console.warn('edge: user cache write failed; these requests are not kept', err);
      return 'done';
    }
    if (outcome === TIMED_OUT) {
      // Not tried again: it may still land, and a second put would then be refused or overwrite it.
      console.warn(`edge: user cache write unanswered after ${ioWaitMs} ms; the user's next write goes ahead`);
      write.latePut = settled;
    }
    return 'done';
  }
}
