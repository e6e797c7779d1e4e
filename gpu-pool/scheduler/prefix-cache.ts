/**
 * Prompt prefix caching: the keys/values of finished generations, kept so that
 * a request whose prompt starts with tokens the pool has already run (a shared
 * system prompt, the earlier turns of a chat) takes them instead of
 * prefilling them again. vLLM's automatic prefix caching and SGLang's radix
 * cache do the same; here a finished sequence is kept whole, and a prompt
 * takes the longest prefix any kept sequence shares with it.
 *
 * Index: every kept sequence is hashed at each block boundary (16, 32, ...
 * tokens); a lookup hashes the prompt at the same boundaries, takes the
 * longest one present, checks the tokens themselves (a hash collision only
 * costs a miss), then extends the match token by token inside that sequence.
 * Sequences live in least-recently-used order under a byte bound; a kept
 * sequence that another one extends is dropped (the longer holds it all).
 *
 * A running generation's prompt is shared too, from its first step on (its
 * prompt's positions never change after that): a burst of requests with a
 * new system prompt prefills it once, not in each until the first one ends.
 * Such a live entry is not the cache's: it holds no bytes of the bound, is
 * never evicted, and leaves when its generation does (`unshare`).
 *
 * Isolation: a `salt` scopes sharing. Requests share prefixes only with
 * requests of the same salt (vLLM's `cache_salt`): a cache hit is faster, and
 * that difference would otherwise tell one tenant what another's prompts
 * begin with.
 */
import type { RunnerSequence } from './batch-runner';

/** Prefixes are matched in blocks of this many tokens at least (shorter ones are not worth a copy). */
export const PREFIX_BLOCK = 16;

/** Holders of a block a lookup compares once it has a match. */
const HOLDERS_COMPARED = 16;

export interface PrefixCacheOptions<S extends RunnerSequence> {
  /** Bound on the bytes of kept sequences (bytesOf summed). */
  maxBytes: number;
  bytesOf(sequence: S): number;
}

interface Entry<S> {
  readonly sequence: S;
  /** The tokens whose keys/values the sequence holds (its positions 0..length). */
  readonly tokens: Int32Array;
  readonly salt: string;
  readonly keys: number[];
  readonly bytes: number;
  /** A running generation's sequence, shared while it runs (not the cache's to keep or release). */
  readonly live: boolean;
}

/** A running generation's shared prompt, to hand back to `unshare` when it ends. */
export interface SharedPrefix {
  readonly live: true;
}

export interface PrefixMatch<S> {
  /** The kept sequence whose first `length` positions the prompt shares. */
  readonly sequence: S;
  readonly length: number;
  /** @internal the entry, to mark it used */
  readonly entry: Entry<S>;
}

/** 32-bit FNV-1a of a salt (the seed of its block hashes). */
function saltSeed(salt: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < salt.length; i++) h = Math.imul(h ^ salt.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * Calls `visit(boundary, key)` for each block boundary up to `upTo` tokens:
 * the key hashes the salt and tokens[0..boundary) into 53 bits (two 32-bit
 * multiplicative hashes, so a Map<number> holds it exactly).
 */
function forEachBlockKey(salt: string, tokens: ArrayLike<number>, upTo: number, visit: (boundary: number, key: number) => void): void {
  const seed = saltSeed(salt);
  let a = seed ^ 0x9e3779b9;
  let b = Math.imul(seed, 0x85ebca6b) ^ 0x27d4eb2f;
  for (let i = 0; i < upTo; i++) {
    const t = tokens[i] + 1;
    a = Math.imul(a ^ t, 0x01000193);
    b = Math.imul(b + t, 0x5bd1e995) ^ (b >>> 13);
    if ((i + 1) % PREFIX_BLOCK === 0) visit(i + 1, (a >>> 0) * 2 ** 21 + ((b >>> 0) >>> 11));
  }
}

export class PrefixCache<S extends RunnerSequence> {
  /**
   * Block key → every sequence registered under it, oldest first. All of them,
   * not the newest alone: when the newest goes, the older ones that hold the
   * same blocks must still be found (a chat evicted took its system prompt's
   * blocks out of reach of the chats that shared them, which then prefilled
   * it again).
   */
  private readonly byKey = new Map<number, Entry<S>[]>();
  /** Kept sequences, least recently used first (a Set keeps insertion order). */
  private readonly entries = new Set<Entry<S>>();
  private bytes = 0;
  /** Clears so far, and the count at the latest clear of everything and of each salt cleared. */
  private clears = 0;
  private clearedAll = 0;
  private readonly clearedSalts = new Map<string, number>();

  constructor(private readonly options: PrefixCacheOptions<S>) {
    if (!(options.maxBytes > 0)) throw new RangeError(`a prefix cache needs a positive byte bound, not ${options.maxBytes}`);
  }

  /** Whether `salt` (or everything) was cleared after the clear count `since` was read (undefined: never asked). */
  private clearedSince(salt: string, since: number | undefined): boolean {
    return since !== undefined && since < Math.max(this.clearedAll, this.clearedSalts.get(salt) ?? 0);
  }

  /** Clears so far: pass the count read when a generation came in to `store` and `share`. */
  get epoch(): number {
    return this.clears;
  }

  /** Salts whose clear is remembered (tests, bounds). */
  get clearedSaltCount(): number {
    return this.clearedSalts.size;
  }

  /** Sequences kept. */
  get size(): number {
    return this.entries.size;
  }

  /** Bytes of the kept sequences. */
  get totalBytes(): number {
    return this.bytes;
  }

  /**
   * The longest prefix of `tokens`, at most `limit` tokens and at least one
   * block, that a kept sequence of the same salt holds; null if none.
   */
  lookup(salt: string, tokens: ArrayLike<number>, limit: number): PrefixMatch<S> | null {
    const upTo = Math.min(limit, tokens.length);
    if (upTo < PREFIX_BLOCK) return null;
    const found: Array<{ boundary: number; holders: Entry<S>[] }> = [];
    forEachBlockKey(salt, tokens, upTo, (boundary, key) => {
      const holders = this.byKey.get(key);
      if (holders) found.push({ boundary, holders });
    });
    // Longest first; a candidate whose tokens differ is a hash collision.
    for (let f = found.length - 1; f >= 0; f--) {
      const { boundary, holders } = found[f];
      let best: PrefixMatch<S> | null = null;
      // Newest first. A kept sequence before a running one's prompt (store's
      // dedup asks for the kept), then the one that goes furthest past the
      // boundary; past the newest few, only until one is found (a burst
      // sharing a system prompt makes the holders many, and each costs a compare).
      for (let h = holders.length - 1, looked = 0; h >= 0 && (best === null || looked < HOLDERS_COMPARED); h--, looked++) {
        const entry = holders[h];
        if (entry.salt !== salt || !samePrefix(entry.tokens, tokens, boundary)) continue;
        let length = boundary;
        const most = Math.min(upTo, entry.tokens.length);
        while (length < most && entry.tokens[length] === tokens[length]) length++;
        const better = best === null || (best.entry.live && !entry.live) || (best.entry.live === entry.live && length > best.length);
        if (better) best = { sequence: entry.sequence, length, entry };
      }
      if (best) return best;
    }
    return null;
  }

  /** Marks a match's sequence as just used (it leaves last). */
  touch(match: PrefixMatch<S>): void {
    if (!this.entries.has(match.entry)) return;
    this.entries.delete(match.entry);
    this.entries.add(match.entry);
  }

  /**
   * Keeps `sequence`, whose positions hold `tokens`. Returns false when it is
   * not kept (too big for the bound, shorter than a block, or a kept sequence
   * already holds all of it): the caller still owns it then. Once kept, the
   * cache owns it and releases it on eviction.
   */
  store(salt: string, tokens: Int32Array, sequence: S, since?: number): boolean {
    // Its generation came in before a clear of its salt (a tenant's deletion request): its keys/values go too.
    if (this.clearedSince(salt, since)) return false;
    const bytes = this.options.bytesOf(sequence);
    if (tokens.length < PREFIX_BLOCK || tokens.length !== sequence.length || bytes > this.options.maxBytes) return false;
    // (A running generation's shared prompt does not count: it goes when that generation does.)
    const existing = this.lookup(salt, tokens, tokens.length);
    if (existing && !existing.entry.live && existing.length === tokens.length) {
      this.touch(existing);
      return false;
    }
    // A kept sequence this one extends holds nothing this one does not.
    if (existing && !existing.entry.live && existing.length === existing.entry.tokens.length) this.evict(existing.entry);
    const keys: number[] = [];
    const entry: Entry<S> = { sequence, tokens, salt, keys, bytes, live: false };
    forEachBlockKey(salt, tokens, tokens.length, (_, key) => {
      keys.push(key);
      this.index(key, entry);
    });
    this.entries.add(entry);
    this.bytes += bytes;
    for (const oldest of this.entries) {
      if (this.bytes <= this.options.maxBytes) break;
      this.evict(oldest);
    }
    return true;
  }

  /**
   * Shares a running generation's prompt: `sequence` holds `tokens` at its
   * first positions and will not change them. Where a kept sequence holds the
   * same blocks, lookups take the kept one. Null when shorter than a block.
   */
  share(salt: string, tokens: Int32Array, sequence: S, since?: number): SharedPrefix | null {
    // Queued or prefilling when its salt was cleared: offered to nobody, or a later request would copy it and be kept.
    if (tokens.length < PREFIX_BLOCK || sequence.length < tokens.length || this.clearedSince(salt, since)) return null;
    const keys: number[] = [];
    const entry: Entry<S> = { sequence, tokens, salt, keys, bytes: 0, live: true };
    forEachBlockKey(salt, tokens, tokens.length, (_, key) => {
      keys.push(key);
      this.index(key, entry);
    });
    return entry as Entry<S> & SharedPrefix;
  }

  /** The generation behind a shared prompt has ended: its sequence is no longer offered. */
  unshare(shared: SharedPrefix): void {
    this.unindex(shared as unknown as Entry<S>);
  }

  /**
   * Releases every kept sequence, or those of one salt (a tenant's prompts to
   * forget). Running generations' prompts are no longer offered to others,
   * and their sequences are not kept when they end (`store`'s `since`).
   * Returns how many kept sequences and bytes went. `oldestLive`: the
   * smallest `epoch` a running or queued generation read; a salt's clear no
   * generation came in before is forgotten (an operator clearing salt after
   * salt grew the record by ~500 bytes each, for good).
   */
  clear(salt?: string, oldestLive = 0): { sequences: number; bytes: number } {
    this.clears++;
    for (const [cleared, at] of this.clearedSalts) if (at <= oldestLive) this.clearedSalts.delete(cleared);
    if (salt === undefined) this.clearedAll = this.clears;
    else this.clearedSalts.set(salt, this.clears);
    for (const [key, holders] of this.byKey) {
      const kept = holders.filter((entry) => !entry.live || (salt !== undefined && entry.salt !== salt));
      if (kept.length === 0) this.byKey.delete(key);
      else if (kept.length < holders.length) this.byKey.set(key, kept);
    }
    let sequences = 0;
    let bytes = 0;
    for (const entry of [...this.entries]) {
      if (salt !== undefined && entry.salt !== salt) continue;
      sequences++;
      bytes += entry.bytes;
      this.evict(entry);
    }
    return { sequences, bytes };
  }

  private evict(entry: Entry<S>): void {
    if (!this.entries.delete(entry)) return;
    this.unindex(entry);
    this.bytes -= entry.bytes;
    entry.sequence.release();
  }

  private index(key: number, entry: Entry<S>): void {
    const holders = this.byKey.get(key);
    if (holders) holders.push(entry);
    else this.byKey.set(key, [entry]);
  }

  /** Takes `entry` out of the index; a key no one else holds goes. */
  private unindex(entry: Entry<S>): void {
    for (const key of entry.keys) {
      const holders = this.byKey.get(key);
      if (!holders) continue;
      const at = holders.indexOf(entry);
      if (at < 0) continue;
      if (holders.length === 1) this.byKey.delete(key);
      else holders.splice(at, 1);
    }
  }
}

function samePrefix(a: ArrayLike<number>, b: ArrayLike<number>, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}
