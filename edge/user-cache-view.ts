/**
 * What `GET /v1/user-cache` shows of a user's cache: what the edge keeps of
 * them, so a user (or the operator answering their request for it) can see
 * it, not only delete it. The verbatim history is given as the requests it
 * holds, ids and text; the n-gram table, which is counts of which token
 * followed which, by its size.
 */
import { HISTORY_SEPARATOR, UserCache } from '../shared/drafting/user-cache';
import type { Tokenizer } from '../shared/tokenizer/tokenizer';

export interface UserCacheView {
  object: 'user_cache';
  user: string | null;
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
  /** The latest requests kept verbatim (prompt and output), oldest first; the oldest may be cut at its start. */
  history: Array<{ token_ids: number[]; text: string }>;
}

export function viewUserCache(user: string | null, bytes: Uint8Array | null, tokenizer: Tokenizer): UserCacheView {
  const cache = UserCache.decode(bytes, { vocabSize: tokenizer.vocabSize, verify: true });
  const readable = bytes !== null && !cache.isEmpty;
  const history: UserCacheView['history'] = [];
  if (readable) {
    let start = 0;
    const ids = cache.history;
    for (let i = 0; i <= ids.length; i++) {
      if (i < ids.length && ids[i] !== HISTORY_SEPARATOR) continue;
      if (i > start) {
        const tokenIds = Array.from(ids.subarray(start, i));
        history.push({ token_ids: tokenIds, text: tokenizer.decode(tokenIds) });
      }
      start = i + 1;
    }
  }
  return {
    object: 'user_cache',
    user,
    stored: bytes !== null,
    bytes: bytes?.byteLength ?? 0,
    readable,
    requests_merged: readable ? cache.merges : 0,
    contexts: readable ? cache.entryCount : 0,
    history,
  };
}
