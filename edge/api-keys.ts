/**
 * API keys are never stored in plaintext: a key is known by its SHA-256 (hex),
 * looked up in (1) the dev-key hash var, (2) the SSSD_API_KEYS secret (JSON map
 * hash → record), (3) KV `key:<hash>`. Lookups are cached per isolate briefly
 * (key-lookup-cache.ts, bounded).
 */
import { z } from 'zod';
import { ApiError } from './api-error';
import { bytesToHex } from './hex';
import type { EdgeConfig } from './edge-config';
import type { EdgeEnv } from './env';
import { KeyLookupCache } from './key-lookup-cache';
import { kvBindingMissing, kvNamespace } from './kv-binding';

export interface KeyRecord {
  /** Stable id of the key (a prefix of its hash): scopes its limits. */
  keyId: string;
  /**
   * Scopes its stored data (chat completions, responses, conversations,
   * users' caches): its own keyId, or, for a key that replaced another
   * (`dataOf`), that key's, so a rotation keeps what the old one stored
   * (review h143).
   */
  dataScope: string;
  tenant: string;
  /** Requests per minute. */
  rpm: number;
  /** Requests in flight at once. */
  concurrency: number;
  /** Bytes a day this key may store: stored responses and chat completions, conversations, metadata (storage-budget.ts): its own, whatever other keys share its data scope. */
  storageBytesPerDay: number;
  /**
   * The operator's opt-in for this key: its outputs join the pool's global
   * datastore (`contributeToDatastore`), which drafts for every tenant.
   */
  contributeToDatastore: boolean;
  /** The development key (SSSD_DEV_KEY_SHA256): known to everyone, so web pages of other origins may not use it (dev-key-origin.ts). */
  dev?: boolean;
}

/**
 * A key's record as the operator writes it (SSSD_API_KEYS, KV). Checked, not
 * coerced: `"disabled": "true"` or `"rpm": "60"` must not quietly serve the
 * key at the defaults, so a record that does not parse refuses its key (and
 * says why in the log). Fields it does not name are left alone (notes).
 */
const storedKeySchema = z.object({
  tenant: z.string().min(1).max(256).optional(),
  rpm: z.number().int().positive().optional(),
  concurrency: z.number().int().positive().optional(),
  /** MiB a day (storage-budget.ts): conversations made, items added, metadata replaced. */
  storageMbPerDay: z.number().int().positive().max(1_000_000).optional(),
  disabled: z.boolean().optional(),
  contributeToDatastore: z.boolean().optional(),
  /** The SHA-256 (hex) of the key whose stored data this one shares: the key it replaces. */
  dataOf: z.string().regex(/^[0-9a-fA-F]{64}$/, 'must be the SHA-256 (64 hex digits) of the key whose data this one shares').optional(),
});

export async function sha256Hex(text: string): Promise<string> {
  return bytesToHex(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text))));
}

/** Hashes whose bad record was logged already (bounded): one line per key, not one per request. */
const reported = new Set<string>();

/** Logs once per key (bounded) why its record refuses it. */
function reportInvalid(hash: string, why: string): void {
  if (reported.has(hash)) return;
  if (reported.size >= 1000) reported.clear();
  reported.add(hash);
  console.error(`edge: the record of key ${hash.slice(0, 12)}… is invalid (${why}); the key is refused until it is fixed`);
}

/** A key's record as the operator wrote it, checked. */
export type StoredKey = z.infer<typeof storedKeySchema>;

/** A record as the edge reads it: checked, or why it refuses its key (the words its log says). */
export type CheckedKey = { ok: true; stored: StoredKey } | { ok: false; why: string };

/** A record as stored in KV (JSON text), checked as the edge checks it: `sssd key list` says what the edge would do. */
export function checkStoredKeyText(text: string): CheckedKey {
  let stored: unknown;
  try {
    stored = JSON.parse(text);
  } catch (err) {
    return { ok: false, why: `not JSON: ${err instanceof Error ? err.message : String(err)}` };
  }
  return checkStoredKey(stored);
}

/**
 * The data scope the requests of the key hashed `hash` (lower-case hex) store under: its own hash's first 24 hex digits,
 * or, for a key made with `dataOf`, those of the key it replaced. `sssd key list` and `sssd kv erase` read it so too.
 */
export function dataScopeOf(hash: string, stored: Pick<StoredKey, 'dataOf'>): string {
  return (stored.dataOf?.toLowerCase() ?? hash).slice(0, 24);
}

function checkStoredKey(stored: unknown): CheckedKey {
  const parsed = storedKeySchema.safeParse(stored);
  if (parsed.success) return { ok: true, stored: parsed.data };
  return { ok: false, why: parsed.error.issues.map((i) => `${i.path.join('.') || 'record'}: ${i.message}`).join('; ') };
}

/** A record as stored in KV (JSON text): a key record, or null (refused, logged) when it is no JSON or breaks the schema. */
function recordFromText(hash: string, text: string, config: EdgeConfig): KeyRecord | null {
  return recordOf(hash, checkStoredKeyText(text), config);
}

function toRecord(hash: string, stored: unknown, config: EdgeConfig): KeyRecord | null {
  return recordOf(hash, checkStoredKey(stored), config);
}

function recordOf(hash: string, checked: CheckedKey, config: EdgeConfig): KeyRecord | null {
  if (!checked.ok) {
    reportInvalid(hash, checked.why);
    return null;
  }
  const record = checked.stored;
  if (record.disabled === true) return null;
  return {
    keyId: hash.slice(0, 24),
    dataScope: dataScopeOf(hash, record),
    tenant: record.tenant ?? hash.slice(0, 12),
    rpm: record.rpm ?? config.defaultRpm,
    concurrency: record.concurrency ?? config.defaultConcurrency,
    storageBytesPerDay: (record.storageMbPerDay ?? config.defaultStorageMbPerDay) * 1024 * 1024,
    contributeToDatastore: record.contributeToDatastore === true,
  };
}

const lookupCache = new KeyLookupCache<KeyRecord>();
/** SSSD_API_KEYS as last read: its value (text, or the object a table under [vars] becomes), and its map. */
let secretKeys: { source: unknown; map: Record<string, unknown> } | null = null;

function secretKeyMap(env: EdgeEnv): Record<string, unknown> {
  // Text compares by value, a table's object by identity (the env object lives as long as the isolate).
  const given: unknown = env.SSSD_API_KEYS ?? '';
  if (secretKeys !== null && secretKeys.source === given) return secretKeys.map;
  let map: Record<string, unknown> = {};
  if (typeof given === 'object') map = keyMapOf(given);
  else {
    try {
      map = given ? keyMapOf(JSON.parse(String(given))) : {};
    } catch {
      console.error('edge: SSSD_API_KEYS is not valid JSON; ignoring it');
    }
  }
  secretKeys = { source: given, map };
  return map;
}

/** SSSD_API_KEYS parsed: hash → record, the hashes in lower case (some tools print them in upper case). */
function keyMapOf(parsed: unknown): Record<string, unknown> {
  if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return Object.fromEntries(Object.entries(parsed).map(([hash, record]) => [hash.toLowerCase(), record]));
  console.error('edge: SSSD_API_KEYS is not a JSON object of key hash → record; ignoring it');
  return {};
}

async function lookup(hash: string, env: EdgeEnv, config: EdgeConfig): Promise<KeyRecord | null> {
  if (env.SSSD_DEV_KEY_SHA256 && env.SSSD_DEV_KEY_SHA256.toLowerCase() === hash) {
    const record = toRecord(hash, { tenant: 'dev' }, config);
    return record && { ...record, dev: true };
  }
  const map = secretKeyMap(env);
  if (Object.hasOwn(map, hash)) return toRecord(hash, map[hash], config);
  const now = Date.now();
  const cached = lookupCache.get(hash, now);
  if (cached?.fresh) return cached.record;
  const kv = kvNamespace(env);
  // No binding is no outage: no retry finds the key until the operator binds it.
  if (kv === null) throw kvBindingMissing();
  let text: string | null;
  try {
    text = await kv.get(`key:${hash}`, 'text');
  } catch (err) {
    // A KV outage must not lock everyone out of keys we saw recently. A key found unknown before is not refused on
    // that: it may have been provisioned since (a client's first try often comes before KV has its record), and a
    // 401 is an answer SDKs do not retry.
    if (cached?.record) return cached.record;
    console.error('edge: key lookup failed', err);
    throw new ApiError(503, 'Key store unavailable, retry shortly.', 'service_unavailable', 'key_store_unavailable', null, 2);
  }
  // Parsed apart from the read: a record that is not JSON is the operator's
  // mistake, refused as any invalid record is (a botched edit that meant to
  // revoke the key must not keep it serving), not an outage.
  const record = text === null ? null : recordFromText(hash, text, config);
  lookupCache.set(hash, record, now);
  return record;
}

/** The caller's key record from `Authorization: Bearer <key>`, or a 401. */
export async function authenticate(authorization: string | undefined, env: EdgeEnv, config: EdgeConfig): Promise<KeyRecord> {
  const match = authorization ? /^Bearer\s+(\S+)\s*$/i.exec(authorization) : null;
  if (!match) {
    // Sent but not as a bearer key (Basic, two values, a space inside): said so, not taken for none.
    const said = authorization ? 'Malformed Authorization header' : 'Missing API key';
    throw new ApiError(401, `${said}: send it as "Authorization: Bearer <key>".`, 'invalid_request_error', 'invalid_api_key');
  }
  const record = await lookup(await sha256Hex(match[1]), env, config);
  if (!record) throw new ApiError(401, 'Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key');
  return record;
}
