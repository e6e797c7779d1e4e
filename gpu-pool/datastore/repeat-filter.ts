/**
 * Contributed outputs seen lately, by a 64-bit hash of their tokens: a
 * repeated request (a user's retry, a greedy prompt asked again, a system
 * prompt with the same reply) would add the same text to the datastore each
 * time. Copies teach the drafter nothing new, weight its counts towards one
 * text, and, once the contribution chunks are full, push unique text out.
 * Bounded: the newest `capacity` hashes, oldest forgotten first.
 */
export const REPEAT_FILTER_CAPACITY = 8192;

export class RepeatFilter {
  /** Hash → nothing; a Map keeps insertion order, so the first key is the oldest. */
  private readonly seen = new Map<bigint, true>();

  constructor(private readonly capacity = REPEAT_FILTER_CAPACITY) {}

  /** True the first time these tokens come (within the last `capacity`), false for a repeat. */
  admit(tokens: ArrayLike<number>): boolean {
    const key = hashTokens(tokens);
    if (this.seen.has(key)) {
      // Seen again: now the newest, so a text repeated often is never forgotten.
      this.seen.delete(key);
      this.seen.set(key, true);
      return false;
    }
    this.seen.set(key, true);
    if (this.seen.size > this.capacity) this.seen.delete(this.seen.keys().next().value as bigint);
    return true;
  }

  get size(): number {
    return this.seen.size;
  }
}

/** FNV-1a over each token's 32 bits, in two 32-bit halves (no BigInt per token), with the length mixed in. */
function hashTokens(tokens: ArrayLike<number>): bigint {
  let lo = 0x811c9dc5;
  let hi = 0x050c5d1f;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i] | 0;
    lo = Math.imul(lo ^ t, 0x01000193);
    hi = Math.imul(hi ^ (t * 31 + i), 0x01000193);
  }
  return (BigInt(hi >>> 0) << 32n) | BigInt((lo ^ tokens.length) >>> 0);
}
