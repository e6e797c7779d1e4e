/**
 * The longest match of a context's tail in a user's history (their latest
 * requests, verbatim; see user-cache.ts), and how far to trust what followed
 * it.
 *
 * A repeated or retried greedy request, or one that runs into a passage the
 * user has seen generated before, continues exactly as the history did; an
 * n-gram table only sees 4-token contexts, which TinyStories' stories share
 * by the hundred, and drafts such a request as shallowly as any other. The
 * match length tells them apart. Measured on dev-sessions (stories260K,
 * greedy requests, each user's last 2,048 tokens as history): the token
 * after a match of k tokens was the history's next token for k = 8-11 in 84%
 * of 350 positions, 12-15: 86%, 16-23: 91%, 24-31: 98%, 32-63: 98%, 64+:
 * 99.7% (1,168); sampled requests (temperature 0.7-1): 37-55% at k = 2-8,
 * where the n-gram table does as well, so they are not drafted this way.
 *
 * Cost: one pass over the history, extending only where the last token
 * matches and the run could beat the longest so far, each extension at most
 * `maxLength`: ~2,048 × (1 + a few) word compares; no allocation. (Without
 * the check against the longest, a history of one token repeated, at the
 * largest SSSD_USER_CACHE_HISTORY_TOKENS, took 165-230 ms a draft.)
 */
import { HISTORY_SEPARATOR } from './user-cache';

/** Where the longest match ends: the history index of the token that followed it, and its length (0: none). */
export interface HistoryMatch {
  length: number;
  next: number;
}

/**
 * Finds the longest run of history ending at some index i, with a token after
 * it in the same request, that equals the context's last tokens (at most
 * `maxLength` compared). The latest such run wins ties: newer history is the
 * likelier repeat. Writes into `out`; false when nothing matches.
 */
export function longestHistoryMatch(history: Uint32Array, context: ArrayLike<number>, maxLength: number, out: HistoryMatch): boolean {
  out.length = 0;
  out.next = -1;
  const n = context.length;
  if (n === 0 || history.length < 2) return false;
  const last = context[n - 1];
  const limit = Math.min(maxLength, n);
  for (let i = history.length - 2; i >= 0; i--) {
    if (history[i] !== last) continue;
    const after = history[i + 1];
    if (after === HISTORY_SEPARATOR) continue;
    // Only a run longer than the best so far counts (ties go to the later one, found first), so it must match at
    // the best's length too: checked first, a history of one token repeated cost ~63 compares per position.
    const best = out.length;
    if (best > 0 && (i - best < 0 || history[i - best] !== context[n - 1 - best])) continue;
    let m = 1;
    while (m < limit && i - m >= 0 && history[i - m] === context[n - 1 - m]) m++;
    if (m > out.length) {
      out.length = m;
      out.next = i + 1;
      if (m === limit) break;
    }
  }
  return out.length > 0;
}

/** Shortest match worth drafting a chain from (below it, the n-gram table does as well). */
export const MIN_CHAIN_MATCH = 8;
/** Longest match measured: past it, trust stops growing. */
export const MAX_CHAIN_MATCH = 64;

/**
 * The probability that a greedy request goes on with the history's next
 * token after a match of `length` tokens: 1 - 1.3/length, fitted to the
 * figures above (0.84 at 8, 0.92 at 16, 0.96 at 32, 0.98 at 64; a little
 * under the measured 98-99.7% past 24, where an overconfident chain would
 * cost a deep tree its pass time), 0 below MIN_CHAIN_MATCH.
 */
export function chainTrust(length: number): number {
  if (length < MIN_CHAIN_MATCH) return 0;
  return 1 - 1.3 / Math.min(length, MAX_CHAIN_MATCH);
}
