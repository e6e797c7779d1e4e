// Key records from SSSD_API_KEYS (the secret map: no KV is read for the keys
// it holds). A record is checked, not coerced: a limit or a revocation written
// wrongly refuses its key rather than serve it at the defaults.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { authenticate, sha256Hex } from '../../edge/api-keys';
import { edgeConfig } from '../../edge/edge-config';
import type { EdgeEnv } from '../../edge/env';

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

async function envWith(records: Record<string, unknown>): Promise<EdgeEnv> {
  const map: Record<string, unknown> = {};
  for (const [key, record] of Object.entries(records)) map[await sha256Hex(key)] = record;
  // Every key asked for below is in the map: KV is never reached, and there is none (a Worker without the binding).
  return { SSSD_POOL_URLS: 'http://127.0.0.1:8788', SSSD_API_KEYS: JSON.stringify(map) };
}

const auth = async (key: string, env: EdgeEnv) => authenticate(`Bearer ${key}`, env, edgeConfig(env)).catch((err: unknown) => err);

describe('API key records', () => {
  it('serves a key at its own limits, the defaults where it names none', async () => {
    const env = await envWith({ good: { tenant: 'acme', rpm: 60, concurrency: 2, storageMbPerDay: 5, note: 'owner: ops' }, bare: {} });
    expect(await auth('good', env)).toMatchObject({ tenant: 'acme', rpm: 60, concurrency: 2, storageBytesPerDay: 5 * 1024 * 1024, contributeToDatastore: false });
    expect(await auth('bare', env)).toMatchObject({ rpm: 600, concurrency: 8, storageBytesPerDay: 64 * 1024 * 1024 });
    // SSSD_DEFAULT_STORAGE_MB_PER_DAY for a key that names none.
    expect(await auth('bare', { ...env, SSSD_DEFAULT_STORAGE_MB_PER_DAY: '2' })).toMatchObject({ storageBytesPerDay: 2 * 1024 * 1024 });
    // The same map written as a table under [vars] reaches the Worker as an object, not as text.
    const asTable = { ...env, SSSD_API_KEYS: JSON.parse(env.SSSD_API_KEYS!) as Record<string, unknown> };
    expect(await auth('good', asTable as unknown as EdgeEnv)).toMatchObject({ tenant: 'acme', rpm: 60 });
  });

  it("scopes a key's stored data to its own id, or to the key it replaces (dataOf), and refuses a dataOf that is no SHA-256", async () => {
    const oldHash = await sha256Hex('old');
    const env = await envWith({ old: {}, rotated: { dataOf: oldHash.toUpperCase() }, other: {}, typo: { dataOf: 'old' } });
    const [old, rotated, other] = (await Promise.all(['old', 'rotated', 'other'].map((k) => auth(k, env)))) as Array<{ keyId: string; dataScope: string }>;
    expect(old.dataScope).toBe(old.keyId);
    expect(rotated.dataScope).toBe(old.keyId);
    expect(rotated.keyId).not.toBe(old.keyId);
    expect(other.dataScope).not.toBe(old.dataScope);
    expect(await auth('typo', env)).toMatchObject({ status: 401 });
  });

  it('serves the development key named by its hash in either case', async () => {
    const env = { ...(await envWith({})), SSSD_DEV_KEY_SHA256: (await sha256Hex('dev-key')).toUpperCase() };
    expect(await auth('dev-key', env)).toMatchObject({ tenant: 'dev', dev: true });
  });

  it('makes each key whose record names no tenant a tenant of its own (no prefix cache or fair share in common)', async () => {
    const env = await envWith({ one: {}, two: {} });
    const [a, b] = [(await auth('one', env)) as { tenant: string }, (await auth('two', env)) as { tenant: string }];
    expect(a.tenant).not.toBe(b.tenant);
    expect(((await auth('one', env)) as { tenant: string }).tenant).toBe(a.tenant);
  });

  it('answers a key store outage with 503 for a key once unknown (provisioned since, maybe), and serves a key it knows through it', async () => {
    vi.spyOn(console, 'error').mockImplementation(() => undefined);
    vi.useFakeTimers({ toFake: ['Date'] });
    let failing = false;
    let stored: string | null = null;
    const kv = {
      get: async (): Promise<string | null> => {
        if (failing) throw new Error('KV GET failed: 503');
        return stored;
      },
    };
    const env: EdgeEnv = { SSSD_KV: kv as unknown as KVNamespace, SSSD_POOL_URLS: 'http://127.0.0.1:8788' };
    expect(await auth('provisioned-late', env)).toMatchObject({ status: 401, code: 'invalid_api_key' });
    stored = JSON.stringify({ tenant: 'late' });
    vi.setSystemTime(Date.now() + 60_000);
    failing = true;
    expect(await auth('provisioned-late', env)).toMatchObject({ status: 503, code: 'key_store_unavailable' });
    failing = false;
    expect(await auth('provisioned-late', env)).toMatchObject({ tenant: 'late' });
    vi.setSystemTime(Date.now() + 60_000);
    failing = true;
    expect(await auth('provisioned-late', env)).toMatchObject({ tenant: 'late' });
  });

  it("serves SSSD_API_KEYS' keys without a KV binding, and answers a key only KV could know with a 500 naming the binding, not to retry", async () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const env = await envWith({ listed: { tenant: 'acme' } });
    expect(await auth('listed', env)).toMatchObject({ tenant: 'acme' });
    const err = await auth('provisioned-in-kv', env);
    expect(err).toMatchObject({ status: 500, code: 'kv_binding_missing', shouldRetry: false });
    expect((err as ApiError).message).toContain('SSSD_KV');
    // Said once for the env, however many requests.
    await auth('provisioned-in-kv', env);
    expect(error.mock.calls.filter((c) => String(c[0]).includes('SSSD_KV binding is missing'))).toHaveLength(1);
  });

  it('refuses a revoked key, and one whose record is written wrongly, saying why once', async () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const env = await envWith({
      revoked: { disabled: true },
      revokedAsText: { disabled: 'true' },
      zeroLimit: { rpm: 0 },
      textLimit: { rpm: '60' },
      fraction: { concurrency: 1.5 },
      zeroStorage: { storageMbPerDay: 0 },
      notARecord: 'yes',
    });
    for (const key of ['revoked', 'revokedAsText', 'zeroLimit', 'textLimit', 'fraction', 'zeroStorage', 'notARecord']) {
      const err = await auth(key, env);
      expect(err, key).toBeInstanceOf(ApiError);
      expect((err as ApiError).status, key).toBe(401);
    }
    await auth('textLimit', env);
    // The env has no KV binding, said once apart (kv-binding.ts); the rest are the records'.
    const logged = error.mock.calls.map((c) => String(c[0])).filter((l) => !l.startsWith('edge: the SSSD_KV binding is missing'));
    expect(logged).toHaveLength(6);
    expect(logged.find((l) => l.includes('rpm: Invalid input: expected number, received string'))).toBeDefined();
    expect(logged.every((l) => l.includes('the key is refused until it is fixed'))).toBe(true);
  });
});
