/**
 * What `GET /v1/user-cache` shows of a user's cache: what the edge keeps of
 * them, so a user (or the operator answering their request for it) can see
 * it, not only delete it. The verbatim history is given as the requests it
 * holds, ids and text; the n-gram table, which is counts of which token
 * followed which, by its size.
 */
import { HISTORY_SEPARATOR, UserCache } from '../shared/drafting/user-cache';
import type { Tokenizer } from '../shared/tokenizer/tokenizer';

/**
 * The most history tokens one answer shows, the latest requests first to go
 * in: at the largest settings a value keeps 2^20 of them, several MB of JSON
 * built in the isolate for an answer that holds no slot. The default keeps
 * 2,048, all shown.
 */
export const USER_CACHE_VIEW_MAX_TOKENS = 65_536;

export interface UserCacheView {
  object: 'user_cache';
  user: string | null;
  /** The edge keeps users' caches (false under SSSD_EDGE_TRIE_NODES=0: nothing is read or written, a value kept before stays until it expires or is deleted). */
  enabled: boolean;
  /** A value is stored under this user's scope. */
  stored: boolean;
  /** Its size in KV. */
  bytes: number;
  /** It decodes, checksum included, for the served model's vocabulary (false: damaged or another model's; it drafts nothing, and the user's next request replaces it). */
  readable: boolean;
  /** Requests merged into it since it was made. */
  requests_merged: number;
  /** Contexts in its n-gram table (each with up to four next tokens and their counts). */
  contexts: number;
  /** Tokens of history kept in all (those shown in `history` are at most USER_CACHE_VIEW_MAX_TOKENS of them). */
  history_tokens: number;
  /**
   * The latest requests kept verbatim (prompt and output), oldest first; the
   * oldest may be cut at its start. `text` is null where an id is outside the
   * tokenizer's vocabulary (a value written by another model).
   */
  history: Array<{ token_ids: number[]; text: string | null }>;
}

export function viewUserCache(user: string | null, bytes: Uint8Array | null, tokenizer: Tokenizer, enabled = true): UserCacheView {
  const cache = UserCache.decode(bytes, { vocabSize: tokenizer.vocabSize, verify: true });
  // A value that fails to decode comes back as an empty one with no bytes; one that decodes may still hold no
  // n-gram entry (every request a single token).
  const readable = bytes !== null && cache.bytes.byteLength > 0;
  const ids = readable ? cache.history : new Uint32Array(0);
  let tokens = 0;
  for (const id of ids) if (id !== HISTORY_SEPARATOR) tokens++;
  const history: UserCacheView['history'] = [];
  let shown = 0;
  // Latest first, so that a cap keeps the newest requests; each whole, but for one cut at its start to fill the cap.
  for (let end = ids.length; end > 0 && shown < USER_CACHE_VIEW_MAX_TOKENS; ) {
    let start = end;
    while (start > 0 && ids[start - 1] !== HISTORY_SEPARATOR) start--;
    if (end > start) {
      const from = Math.max(start, end - (USER_CACHE_VIEW_MAX_TOKENS - shown));
      const tokenIds = Array.from(ids.subarray(from, end));
      shown += tokenIds.length;
      history.push({ token_ids: tokenIds, text: tokenIds.every((id) => id < tokenizer.vocabSize) ? tokenizer.decode(tokenIds) : null });
    }
    end = start - 1;
  }
  history.reverse();
  return {
    object: 'user_cache',
    user,
    enabled,
    stored: bytes !== null,
    bytes: bytes?.byteLength ?? 0,
    readable,
    requests_merged: readable ? cache.merges : 0,
    contexts: readable ? cache.entryCount : 0,
    history_tokens: tokens,
    history,
  };
}
