/**
 * What the edge's per-key stores in KV share (stored responses:
 * response-store.ts; stored chat completions: chat-completion-store.ts): a
 * record's KV key hashes the API key's id with the record's id, so a key
 * finds its own records only; a read that fails is a 503 a client retries;
 * a value expires with the store's TTL (KV's least is 60 s); a value's size
 * is its JSON's UTF-8, counted without encoding it. Every record carries
 * its data scope in its KV metadata (scopeMetadata), as no name says whose it
 * is: `sssd kv erase` lists a tenant's records by it (review h150).
 */
import { ApiError } from './api-error';
import { sha256Hex } from './api-keys';
import { sleep } from './settled-within';

/** KV takes one write a second per key. */
export const KEY_WRITE_INTERVAL_MS = 1_100;

/**
 * KV work tried once more after KV's second where it throws (most often a
 * write refused: the key was written a moment ago); where it throws again,
 * `failure`'s error for it.
 */
export async function onceMore<T>(work: () => Promise<T>, failure: (err: unknown) => Error): Promise<T> {
  try {
    return await work();
  } catch {
    await sleep(KEY_WRITE_INTERVAL_MS);
  }
  try {
    return await work();
  } catch (err) {
    throw failure(err);
  }
}

/** KV's smallest expiration. */
export const MIN_KV_TTL_SECONDS = 60;

/** The KV key of record `id` of API key `keyId`, under `prefix`: no other key's id hashes to it. */
export async function scopedKey(prefix: string, keyId: string, id: string): Promise<string> {
  return `${prefix}:${await sha256Hex(`${keyId}:${id}`)}`;
}

/** A store's 503 where KV fails: a retry shortly is what helps. `code` names the store. */
export function storeUnavailable(message: string, code: string): ApiError {
  return new ApiError(503, message, 'service_unavailable', code, null, 2);
}

/** A value as text, or null; `unavailable` (thrown) where KV fails, `what` for the log. */
export async function readKvText(kv: KVNamespace, key: string, what: string, unavailable: () => ApiError): Promise<string | null> {
  try {
    return await kv.get(key, 'text');
  } catch (err) {
    console.error(`edge: ${what} read failed`, err);
    throw unavailable();
  }
}

/**
 * A record's KV metadata: the data scope it belongs to (KeyRecord.dataScope, 24 hex digits). Its name is a hash
 * that ties it to no key, and KV's list returns metadata with the names: this is what an operator erases a
 * tenant's data by (`sssd kv erase`, review h150).
 */
export interface ScopeMetadata {
  scope: string;
}

export function scopeMetadata(scope: string): ScopeMetadata {
  return { scope };
}

/** A put's options for a record of data scope `scope` under a store's TTL (0: for good). */
export function recordPutOptions(scope: string, ttlSeconds: number): KVNamespacePutOptions {
  return ttlSeconds > 0 ? { expirationTtl: Math.max(MIN_KV_TTL_SECONDS, ttlSeconds), metadata: scopeMetadata(scope) } : { metadata: scopeMetadata(scope) };
}

/** `text`'s length as UTF-8, without encoding it (a surrogate pair 4 bytes; JSON.stringify leaves no lone one in a frame). */
export function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= 0x80) bytes += unit < 0x800 || (unit >= 0xd800 && unit < 0xe000) ? 1 : 2;
  }
  return bytes;
}

/**
 * Whether `text`'s UTF-8 is at most `maxBytes`, without encoding it: a
 * UTF-16 unit is 1 to 3 bytes (a surrogate pair 4 for 2 units), so most
 * texts are decided by their length alone.
 */
export function withinBytes(text: string, maxBytes: number): boolean {
  if (text.length > maxBytes) return false;
  if (text.length * 3 <= maxBytes) return true;
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    bytes += unit < 0x80 ? 1 : unit < 0x800 || (unit >= 0xd800 && unit < 0xe000) ? 2 : 3;
    if (bytes > maxBytes) return false;
  }
  return true;
}
