// `sssd kv erase` after an upgrade, on wrangler's local KV: records written by the real stores, then written back as an
// edge from before scope metadata (2026-12-07 04:40) wrote them, without it; key records as an older `sssd key create`
// printed them, without metadata (review h238). The erase found none of the records and said "deleted N", and found
// no key of the tenant, exit 0.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, it } from 'vitest';
import { sha256Hex } from '../../edge/api-keys';
import { scopedKey } from '../../edge/kv-record';
import { ResponseStore } from '../../edge/response-store';
import { cacheScope, UserCacheStore } from '../../edge/user-cache-store';
import { sssdNodeArgs } from '../support/compiled-cli';
import { namesIn, withLocalKv } from '../support/local-kv';
import { asWrittenBeforeScopes, writeScopedRecords } from '../support/scoped-records';
import { storedRecord } from '../support/stored-response';
import { repoRoot } from '../support/shared-data';

interface Run { code: number; stdout: string; stderr: string }
function sssd(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...sssdNodeArgs(), ...args], { cwd: repoRoot, env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** Every record of each scope (one of every kind, and a response of user carol with her cache), written as an edge from before scopes did. */
async function oldEdgeStore(scopes: readonly string[]): Promise<{ persistTo: string; recordsOf: Record<string, string[]>; all: string[] }> {
  const persistTo = mkdtempSync(path.join(tmpdir(), 'sssd-kv-erase-old-'));
  dirs.push(persistTo);
  const recordsOf: Record<string, string[]> = {};
  const all = await withLocalKv(persistTo, async (kv) => {
    for (const scope of scopes) {
      const before = new Set((await kv.list()).keys.map((key) => key.name));
      await writeScopedRecords(kv, scope);
      const record = storedRecord(`resp_${scope}-carol`, 'Private text.');
      record.response.user = 'carol';
      await new ResponseStore(kv, scope, 3_600, 1 << 20).put(record);
      const caches = new UserCacheStore(kv, 1 << 16, undefined, undefined, 3_600);
      await caches.saveMerged(await caches.load(await cacheScope(scope, 'carol'), scope), [1, 2, 3, 1, 2, 3]);
      recordsOf[scope] = (await kv.list()).keys.map((key) => key.name).filter((name) => !before.has(name));
      await asWrittenBeforeScopes(kv, recordsOf[scope]);
    }
    const listed = (await kv.list()).keys;
    // Written back without a scope: the erase of today found none of them.
    const labelled = listed.filter((key) => key.metadata !== undefined && key.metadata !== null && typeof key.metadata === 'object' && 'scope' in key.metadata);
    if (labelled.length > 0) throw new Error(`records still name a scope: ${labelled.map((key) => key.name).join(', ')}`);
    return namesIn(kv);
  });
  return { persistTo, recordsOf, all };
}

describe('sssd kv erase, records and keys without metadata', () => {
  it.concurrent("erases a scope's records an older edge wrote, found by their names and the ids in their values; says what it leaves", async ({ expect }) => {
    const [a, b] = [(await sha256Hex('sk-old-a')).slice(0, 24), (await sha256Hex('sk-old-b')).slice(0, 24)];
    const { persistTo, recordsOf, all } = await oldEdgeStore([a, b]);
    // Left where nothing names them: a heartbeat whose response was never stored, and alice's cache (no response names her).
    const beat = await scopedKey('respevents', a, `resp_${a}-beat`);
    const alice = UserCacheStore.keyFor(await cacheScope(a, 'alice'));
    expect(recordsOf[a]).toEqual(expect.arrayContaining([beat, alice]));
    const found = recordsOf[a].filter((name) => name !== beat && name !== alice);

    const dry = await sssd(['kv', 'erase', '--scope', a, '--local', '--persist-to', persistTo, '--dry-run']);
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(`found 0 records of data scope ${a} in the local store (${persistTo})`);
    // Read: A's stored responses (2) and conversation, and B's two responses, conversation and chat (A's chat is named by its index).
    expect(dry.stdout).toContain(`found ${found.length} more records of data scope ${a} without scope metadata (written by an edge from before 2026-12-07 04:40), by their names and the ids in 7 values read: `);
    expect(dry.stdout.split('\n').filter((line) => /^[a-z]+:/.test(line)).sort()).toEqual([...found].sort());
    const leftCount = all.length - found.length;
    expect(dry.stdout).toContain(`(${leftCount} other records in the store carry no scope metadata and are NOT erased: `);
    expect(dry.stdout).toContain('--user NAME erases those of the users named');
    expect(await withLocalKv(persistTo, namesIn)).toEqual(all);

    // Alice named: her cache goes too; the heartbeat without its response, and B's records, stay.
    const erased = await sssd(['kv', 'erase', '--scope', a, '--user', 'alice', '--local', '--persist-to', persistTo]);
    expect(erased.stderr).toBe('');
    expect(erased.code).toBe(0);
    expect(erased.stdout).toContain(`deleted ${found.length + 1} records`);
    expect(erased.stdout).toContain(`(${leftCount - 1} other records in the store carry no scope metadata and are NOT erased: `);
    expect(await withLocalKv(persistTo, namesIn)).toEqual([...recordsOf[b], beat].sort());
  }, 180_000);

  it.concurrent("finds a tenant's keys whose records carry no metadata by their values (dataOf's scope too), and refuses where none is found while a key's tenant is unreadable", async ({ expect }) => {
    const [hashA, hashA2, hashB] = await Promise.all(['sk-old-acme', 'sk-old-acme-2', 'sk-old-other'].map((key) => sha256Hex(key)));
    const [a, b] = [hashA.slice(0, 24), hashB.slice(0, 24)];
    const { persistTo, recordsOf } = await oldEdgeStore([a, b]);
    await withLocalKv(persistTo, async (kv) => {
      // As `sssd key create` printed them before it wrote metadata: the second replaced the first (its data scope).
      await kv.put(`key:${hashA}`, JSON.stringify({ tenant: 'acme', rpm: 30, concurrency: 2 }));
      await kv.put(`key:${hashA2}`, JSON.stringify({ tenant: 'acme', dataOf: hashA }));
      await kv.put(`key:${hashB}`, JSON.stringify({ tenant: 'other' }));
    });

    const erased = await sssd(['kv', 'erase', '--tenant', 'acme', '--local', '--persist-to', persistTo]);
    expect(erased.stderr).toBe('');
    expect(erased.code).toBe(0);
    expect(erased.stdout).toContain(`found 2 keys of tenant "acme", data scope ${a}\n`);
    expect(erased.stdout).toContain('(3 key records carry no metadata (written by hand, or by `sssd key create` before it wrote metadata): read for their tenant, 2 of them "acme"\'s)');
    // All of A's but the heartbeat without its response and alice's cache (the other test names her).
    expect(erased.stdout).toContain(`deleted ${recordsOf[a].length - 2} records`);
    const left = [...recordsOf[b], await scopedKey('respevents', a, `resp_${a}-beat`), UserCacheStore.keyFor(await cacheScope(a, 'alice')), `key:${hashA}`, `key:${hashA2}`, `key:${hashB}`];
    expect(await withLocalKv(persistTo, namesIn)).toEqual(left.sort());

    // A key record whose tenant no value says, and no key found: refused (exit 1), nothing erased.
    await withLocalKv(persistTo, (kv) => kv.put(`key:${'c'.repeat(64)}`, 'not json'));
    const none = await sssd(['kv', 'erase', '--tenant', 'initech', '--local', '--persist-to', persistTo]);
    expect(none.code).toBe(1);
    expect(none.stdout).toContain('found 0 keys of tenant "initech"');
    expect(none.stderr).toContain(`kv erase: no key of tenant "initech" found, and 1 key record without metadata (key:${'c'.repeat(64)}) names no tenant the edge reads`);
    expect(none.stderr).toContain('nothing erased');
    expect(await withLocalKv(persistTo, namesIn)).toEqual([...left, `key:${'c'.repeat(64)}`].sort());
  }, 180_000);
});
