/**
 * API keys are never stored in plaintext: a key is known by its SHA-256 (hex),
 * looked up in (1) the dev-key hash var, (2) the SSSD_API_KEYS secret (JSON map
 * hash → record), (3) KV `key:<hash>`. Lookups are cached per isolate briefly
 * (key-lookup-cache.ts, bounded).
 */
import { ApiError } from './api-error';
import { bytesToHex } from './hex';
import type { EdgeConfig } from './edge-config';
import type { EdgeEnv } from './env';
import { KeyLookupCache } from './key-lookup-cache';

export interface KeyRecord {
  /** Stable id of the key (a prefix of its hash): scopes caches and limits. */
  keyId: string;
  tenant: string;
  /** Requests per minute. */
  rpm: number;
  /** Requests in flight at once. */
  concurrency: number;
  /**
   * The operator's opt-in for this key: its outputs join the pool's global
   * datastore (`contributeToDatastore`), which drafts for every tenant.
   */
  contributeToDatastore: boolean;
}

interface StoredKey {
  tenant?: unknown;
  rpm?: unknown;
  concurrency?: unknown;
  disabled?: unknown;
  contributeToDatastore?: unknown;
}

export async function sha256Hex(text: string): Promise<string> {
  return bytesToHex(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text))));
}

function positiveInt(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : fallback;
}

function toRecord(hash: string, stored: StoredKey, config: EdgeConfig): KeyRecord | null {
  if (stored.disabled === true) return null;
  return {
    keyId: hash.slice(0, 24),
    tenant: typeof stored.tenant === 'string' ? stored.tenant : hash.slice(0, 12),
    rpm: positiveInt(stored.rpm, config.defaultRpm),
    concurrency: positiveInt(stored.concurrency, config.defaultConcurrency),
    contributeToDatastore: stored.contributeToDatastore === true,
  };
}

const lookupCache = new KeyLookupCache<KeyRecord>();
let secretKeys: { source: string; map: Record<string, StoredKey> } | null = null;

function secretKeyMap(env: EdgeEnv): Record<string, StoredKey> {
  const source = env.SSSD_API_KEYS ?? '';
  if (secretKeys?.source === source) return secretKeys.map;
  let map: Record<string, StoredKey> = {};
  try {
    const parsed: unknown = source ? JSON.parse(source) : {};
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) map = parsed as Record<string, StoredKey>;
  } catch {
    console.error('edge: SSSD_API_KEYS is not valid JSON; ignoring it');
  }
  secretKeys = { source, map };
  return map;
}

async function lookup(hash: string, env: EdgeEnv, config: EdgeConfig): Promise<KeyRecord | null> {
  if (env.SSSD_DEV_KEY_SHA256 && env.SSSD_DEV_KEY_SHA256.toLowerCase() === hash) {
    return toRecord(hash, { tenant: 'dev' }, config);
  }
  const secret = secretKeyMap(env)[hash];
  if (secret && typeof secret === 'object') return toRecord(hash, secret, config);
  const now = Date.now();
  const cached = lookupCache.get(hash, now);
  if (cached?.fresh) return cached.record;
  let record: KeyRecord | null = null;
  try {
    const stored = await env.SSSD_KV.get<StoredKey>(`key:${hash}`, 'json');
    record = stored && typeof stored === 'object' ? toRecord(hash, stored, config) : null;
  } catch (err) {
    // A KV outage must not lock everyone out of keys we saw recently.
    if (cached) return cached.record;
    console.error('edge: key lookup failed', err);
    throw new ApiError(503, 'Key store unavailable, retry shortly.', 'service_unavailable', 'key_store_unavailable', null, 2);
  }
  lookupCache.set(hash, record, now);
  return record;
}

/** The caller's key record from `Authorization: Bearer <key>`, or a 401. */
export async function authenticate(authorization: string | undefined, env: EdgeEnv, config: EdgeConfig): Promise<KeyRecord> {
  const match = authorization ? /^Bearer\s+(\S+)\s*$/i.exec(authorization) : null;
  if (!match) {
    throw new ApiError(401, 'Missing API key: send it as "Authorization: Bearer <key>".', 'invalid_request_error', 'invalid_api_key');
  }
  const record = await lookup(await sha256Hex(match[1]), env, config);
  if (!record) throw new ApiError(401, 'Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key');
  return record;
}
