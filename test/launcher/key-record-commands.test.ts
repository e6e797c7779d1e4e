// `sssd key list`, `revoke` and `restore` as an operator runs them against wrangler's local KV (the store `wrangler dev
// --persist-to` keeps): key records as `sssd key create` makes them and some written by hand, read back and changed by
// the commands on that store (opened in their own process, launcher/local-kv-store.ts), and the edge's own lookup
// (edge/api-keys.ts) on it refusing a revoked key and serving it restored (review h203).
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { authenticate, sha256Hex } from '../../edge/api-keys';
import { edgeConfig } from '../../edge/edge-config';
import type { EdgeEnv } from '../../edge/env';
import type { NewKey } from '../../launcher/key-command';
import type { KeyEntry } from '../../launcher/key-records';
import { sssdNodeArgs } from '../support/compiled-cli';
import { namesIn, withLocalKv } from '../support/local-kv';
import { repoRoot } from '../support/shared-data';

interface Run { code: number; stdout: string; stderr: string }
/** `sssd ARGS`: compiled for the run (compiled-cli.ts), or through bin/sssd.mjs itself where `viaBin`. */
function sssd(args: string[], env: NodeJS.ProcessEnv, viaBin = false): Promise<Run> {
  const node = viaBin ? [path.join(repoRoot, 'bin/sssd.mjs')] : sssdNodeArgs();
  return new Promise((resolve) => {
    execFile(process.execPath, [...node, ...args], { cwd: repoRoot, env: { ...env, WRANGLER_SEND_METRICS: 'false' } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** A record and its metadata as the local store (withLocalKv) holds them. */
async function stored(kv: KVNamespace, name: string): Promise<{ value: unknown; metadata: unknown }> {
  const { value, metadata } = await kv.getWithMetadata(name, 'text');
  return { value: value === null ? null : (JSON.parse(value) as unknown), metadata };
}

/** What the edge answers `key`, looking it up in the local store (its lookup cache is this process's). */
function edgeAnswer(kv: KVNamespace, key: string): Promise<unknown> {
  const env: EdgeEnv = { SSSD_KV: kv, SSSD_POOL_URLS: 'http://127.0.0.1:8788', SSSD_POOL_TOKEN: 't' };
  return authenticate(`Bearer ${key}`, env, edgeConfig(env)).catch((err: unknown) => err);
}

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('sssd key list, revoke and restore', () => {
  it('lists the key records as the edge reads them, revokes one by a hash prefix (its fields and metadata kept: the edge refuses it), restores it, and refuses what it cannot do', async () => {
    const persistTo = mkdtempSync(path.join(tmpdir(), 'sssd-key-records-'));
    dirs.push(persistTo);
    const env = { ...process.env, SSSD_EDGE_STATE: persistTo };
    const create = async (viaBin: boolean, ...flags: string[]): Promise<NewKey> => {
      const run = await sssd(['key', 'create', '--json', '--local', ...flags], env, viaBin);
      expect(run.stderr).toBe('');
      return JSON.parse(run.stdout) as NewKey;
    };
    const [acme, limited, own] = await Promise.all([
      create(true, '--tenant', 'acme'),
      create(false, '--tenant', 'acme', '--rpm', '60', '--concurrency', '4', '--storage-mb-per-day', '8', '--contribute-to-datastore'),
      create(false),
    ]);
    const rotated = await create(false, '--tenant', 'acme', '--data-of', acme.hash);
    const byHand = await sha256Hex('sk-by-hand');
    const broken = await sha256Hex('sk-broken');
    // Two hashes alike in their first 7 digits: a prefix of them is ambiguous. One record breaks the schema besides.
    const [twin1, twin2] = [`abcdef0${'1'.repeat(57)}`, `abcdef0${'2'.repeat(57)}`];
    await withLocalKv(persistTo, async (kv) => {
      // As the printed put lines write them (test/launcher/key-command.test.ts runs those lines).
      for (const made of [acme, limited, own, rotated]) await kv.put(`key:${made.hash}`, JSON.stringify(made.record), { metadata: made.metadata });
      await kv.put(`key:${byHand}`, '{"tenant":"by-hand"}');
      await kv.put(`key:${broken}`, '{"tenant": "broken"', { metadata: { tenant: 'broken', scope: broken.slice(0, 24) } });
      await kv.put(`key:${twin1}`, '{"tenant":"twin","rpm":"60","disabled":true}');
      await kv.put(`key:${twin2}`, '{"tenant":"twin"}');
      // Not a key record: never listed.
      await kv.put('resp:0123', '{}', { metadata: { scope: acme.hash.slice(0, 24) } });
    });

    const [listed, table] = await Promise.all([sssd(['key', 'list', '--local', '--json'], env), sssd(['key', 'list', '--local', '--persist-to', persistTo, '--tenant', 'acme'], process.env)]);
    expect(listed.stderr).toBe('');
    expect(listed.code).toBe(0);
    const entries = JSON.parse(listed.stdout) as KeyEntry[];
    const made = (key: NewKey, fields: Partial<KeyEntry>): KeyEntry => ({
      hash: key.hash,
      state: 'active',
      refusedWhy: null,
      tenant: key.metadata.tenant,
      scope: key.metadata.scope,
      rpm: null,
      concurrency: null,
      storageMbPerDay: null,
      contributeToDatastore: false,
      dataOf: null,
      created: key.metadata.created,
      metadata: key.metadata,
      ...fields,
    });
    const refused = { state: 'refused', rpm: null, concurrency: null, storageMbPerDay: null, contributeToDatastore: false, dataOf: null, created: null } as const;
    expect(entries).toEqual(
      [
        made(acme, {}),
        made(limited, { rpm: 60, concurrency: 4, storageMbPerDay: 8, contributeToDatastore: true }),
        made(own, { tenant: own.hash.slice(0, 12) }),
        made(rotated, { scope: acme.hash.slice(0, 24), dataOf: acme.hash }),
        { ...made(own, {}), hash: byHand, tenant: 'by-hand', scope: byHand.slice(0, 24), created: null, metadata: null },
        { ...refused, hash: broken, refusedWhy: expect.stringMatching(/^not JSON: /) as unknown as string, tenant: 'broken', scope: broken.slice(0, 24), metadata: { tenant: 'broken', scope: broken.slice(0, 24) } },
        { ...refused, hash: twin1, refusedWhy: expect.stringMatching(/^rpm: /) as unknown as string, tenant: null, scope: null, metadata: null },
        { ...made(own, {}), hash: twin2, tenant: 'twin', scope: twin2.slice(0, 24), created: null, metadata: null },
      ].sort((a, b) => a.hash.localeCompare(b.hash)),
    );

    // The table: a line a key of the tenant, its hash's first 12 digits, never the key.
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^HASH +TENANT +SCOPE +RPM +CONCURRENCY +STATE +CREATED +NOTES$/);
    const rowOf = (key: NewKey): string => lines.find((line) => line.startsWith(`${key.hash.slice(0, 12)} `)) ?? '';
    expect(lines.slice(1, 4).map((line) => line.slice(0, 12)).sort()).toEqual([acme, limited, rotated].map((key) => key.hash.slice(0, 12)).sort());
    expect(rowOf(limited).split(/ {2,}/)).toEqual([limited.hash.slice(0, 12), 'acme', limited.hash.slice(0, 24), '60', '4', 'active', limited.metadata.created, 'stores 8 MiB a day; contributes to the datastore']);
    expect(rowOf(rotated)).toMatch(new RegExp(`^${rotated.hash.slice(0, 12)} +acme +${acme.hash.slice(0, 24)} +default +default +active +\\S+Z +data of ${acme.hash.slice(0, 12)}$`));
    expect(lines.slice(4)).toEqual([`3 key records of tenant "acme" in the local store (${persistTo})`, expect.stringContaining("the dev key and SSSD_API_KEYS' keys are not in KV")]);
    for (const key of [acme, limited, rotated]) expect(table.stdout).not.toContain(key.key);

    // Revoked by its first 8 digits: the record read and written back with "disabled": true, its metadata kept.
    const revoked = await sssd(['key', 'revoke', limited.hash.slice(0, 8), '--local'], env);
    expect(revoked.stderr).toBe('');
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toContain(`revoked key:${limited.hash} in the local store (${persistTo})`);
    expect(revoked.stdout).toContain(`\`sssd key restore ${limited.hash.slice(0, 12)} --local\` undoes it`);
    expect(revoked.stdout).toContain('edges refuse the key (401 invalid_api_key) within 30 s: each edge isolate keeps a key it looked up for 30 s (hitMs in edge/key-lookup-cache.ts)');
    // The store read back and the edge's lookup on it with one workerd (each start ~1 s of CPU).
    await withLocalKv(persistTo, async (kv) => {
      expect(await stored(kv, `key:${limited.hash}`)).toEqual({ value: { ...limited.record, disabled: true }, metadata: limited.metadata });
      expect(await edgeAnswer(kv, limited.key)).toMatchObject({ status: 401, code: 'invalid_api_key' });
    });

    const restored = await sssd(['key', 'restore', `key:${limited.hash.slice(0, 10).toUpperCase()}`, '--local'], env);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    expect(restored.stdout).toContain(`restored key:${limited.hash}`);
    expect(restored.stdout).toContain('edges serve the key again within 2 s');
    await withLocalKv(persistTo, async (kv) => {
      expect(await stored(kv, `key:${limited.hash}`)).toEqual({ value: limited.record, metadata: limited.metadata });
      // Past the 2 s the edge remembers a refused key for.
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(Date.now() + 3_000);
      expect(await edgeAnswer(kv, limited.key)).toMatchObject({ tenant: 'acme', rpm: 60, concurrency: 4 });
      vi.useRealTimers();
    });

    // Refused, exit 2, nothing written: a prefix of two records, of none, something not a hash, a record not JSON.
    const [ambiguous, unknown, notAHash, notJson] = await Promise.all([
      sssd(['key', 'revoke', 'abcdef0', '--local'], env),
      sssd(['key', 'revoke', '0123456789', '--local'], env),
      sssd(['key', 'revoke', limited.key, '--local'], env),
      sssd(['key', 'revoke', broken.slice(0, 12), '--local'], env),
    ]);
    expect(ambiguous).toMatchObject({ code: 2, stdout: '' });
    expect(ambiguous.stderr).toBe(`sssd: key revoke: 2 key records' hashes start with abcdef0 in the local store (${persistTo}); give more of the hash:\n  ${twin1.slice(0, 16)}…  tenant "?"\n  ${twin2.slice(0, 16)}…  tenant "?"\n`);
    expect(unknown).toMatchObject({ code: 2, stdout: '' });
    expect(unknown.stderr).toContain("no key record's hash starts with 0123456789 in the local store");
    expect(notAHash).toMatchObject({ code: 2, stdout: '' });
    expect(notAHash.stderr).toContain('key revoke: name the key by its hash, or the first 6 or more hex digits of it');
    expect(notJson).toMatchObject({ code: 2, stdout: '' });
    expect(notJson.stderr).toContain(`key:${broken}'s record is not a JSON object, so it cannot be written back changed (the edge refuses its key already); --delete removes it`);

    // --delete removes it; a restored record the edge still refuses for another field is said, exit 1.
    const deleted = await sssd(['key', 'revoke', broken.slice(0, 12), '--local', '--delete'], env);
    expect(deleted.code).toBe(0);
    expect(deleted.stdout).toContain(`deleted key:${broken} in the local store`);
    const stillRefused = await sssd(['key', 'restore', 'abcdef01', '--local'], env);
    expect(stillRefused.code).toBe(1);
    expect(stillRefused.stdout).toContain(`restored key:${twin1}`);
    expect(stillRefused.stderr).toMatch(/^sssd: key restore: the edge still refuses the key: its record is invalid \(rpm: /);
    const left = await withLocalKv(persistTo, async (kv) => ({ names: await namesIn(kv), twin1: await kv.get(`key:${twin1}`, 'text') }));
    expect(left.names).not.toContain(`key:${broken}`);
    expect(left.names).toHaveLength(8);
    expect(JSON.parse(left.twin1 ?? 'null')).toEqual({ tenant: 'twin', rpm: '60' });
  }, 240_000);
});
