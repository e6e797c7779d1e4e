// `sssd kv erase` as an operator runs it against wrangler's local KV (the store `wrangler dev --persist-to` keeps):
// records of two data scopes written by the real stores into that store, one scope's erased (the store opened in the
// command's own process, launcher/local-kv-store.ts; a key record put by a printed wrangler line found), the other's and
// the key records left (review h150).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, it } from 'vitest';
import { sha256Hex } from '../../edge/api-keys';
import { parseScope } from '../../launcher/kv-command';
import { sssdNodeArgs } from '../support/compiled-cli';
import { namesIn, withLocalKv } from '../support/local-kv';
import { RECORD_KINDS, writeScopedRecords } from '../support/scoped-records';
import { repoRoot } from '../support/shared-data';

/** bin/sssd.mjs itself, for the first erasure (the dry run); the file's other twelve starts run it as compiled once (compiled-cli.ts). */
const SOURCE_SSSD = [path.join(repoRoot, 'bin/sssd.mjs')];

interface Run { code: number; stdout: string; stderr: string }
function sssd(args: string[], env: NodeJS.ProcessEnv = process.env, entry: string[] = sssdNodeArgs()): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...entry, ...args], { cwd: repoRoot, env: { ...env, WRANGLER_SEND_METRICS: 'false' } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** Every name in the local store in `persistTo`, read by a workerd of its own (after a command changed it). */
function names(persistTo: string): Promise<string[]> {
  return withLocalKv(persistTo, namesIn);
}

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('sssd kv erase', () => {
  // All three run at once, each on a store of its own: their time is spent waiting on command and workerd starts, one
  // after another within each (the expect of each test's own context, so that each counts its own assertions).
  it.concurrent("erases every record of one key's data scope from the local store, leaves another's and the key records; --dry-run deletes nothing", async ({ expect }) => {
    const persistTo = mkdtempSync(path.join(tmpdir(), 'sssd-kv-erase-'));
    dirs.push(persistTo);
    const [hashA, hashB] = [await sha256Hex('sk-tenant-a'), await sha256Hex('sk-tenant-b')];
    const [a, b] = [hashA.slice(0, 24), hashB.slice(0, 24)];
    const recordsOf: Record<string, string[]> = {};
    // Written and listed by one workerd (each start of one costs a second or more of CPU).
    const all = await withLocalKv(persistTo, async (kv) => {
      await kv.put(`key:${hashA}`, JSON.stringify({ tenant: 'a' }));
      await kv.put(`key:${hashB}`, JSON.stringify({ tenant: 'b' }));
      const before = new Set((await kv.list()).keys.map((key) => key.name));
      await writeScopedRecords(kv, a);
      recordsOf[a] = (await kv.list()).keys.map((key) => key.name).filter((name) => !before.has(name));
      await writeScopedRecords(kv, b);
      return namesIn(kv);
    });
    expect(recordsOf[a].length).toBe(RECORD_KINDS.length + 4);
    expect(all.length).toBe(2 + 2 * recordsOf[a].length);

    // The dry run (its folder from SSSD_EDGE_STATE, as `sssd up` keeps it) names A's records, and only them.
    const dry = await sssd(['kv', 'erase', '--scope', `key:${hashA.toUpperCase()}`, '--local', '--dry-run'], { ...process.env, SSSD_EDGE_STATE: persistTo }, SOURCE_SSSD);
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(`found ${recordsOf[a].length} records of data scope ${a} in the local store (${persistTo})`);
    expect(dry.stdout.split('\n').filter((line) => /^[a-z]+:/.test(line)).sort()).toEqual([...recordsOf[a]].sort());
    expect(dry.stdout).toContain('dry run: nothing deleted');
    expect(await names(persistTo)).toEqual(all);

    const erased = await sssd(['kv', 'erase', '--scope', hashA, '--local', '--persist-to', persistTo]);
    expect(erased.code).toBe(0);
    expect(erased.stdout).toContain(`found ${recordsOf[a].length} records of data scope ${a}`);
    expect(erased.stdout).toContain(`deleted ${recordsOf[a].length} records`);
    const left = await names(persistTo);
    expect(left).toEqual(all.filter((name) => !recordsOf[a].includes(name)));
    expect(left).toEqual(expect.arrayContaining([`key:${hashA}`, `key:${hashB}`]));
  }, 120_000);

  it.concurrent("erases a tenant's data (--tenant): every scope its keys' records name, as `sssd key create`'s lines labelled them", async ({ expect }) => {
    const persistTo = mkdtempSync(path.join(tmpdir(), 'sssd-kv-erase-tenant-'));
    dirs.push(persistTo);
    const env = { ...process.env, SSSD_EDGE_STATE: persistTo };
    const create = async (...flags: string[]) => JSON.parse((await sssd(['key', 'create', '--json', '--local', ...flags], env)).stdout) as { hash: string; put: string; metadata: { scope: string } };
    // Acme: two keys of their own scopes, and a third that replaced the first (its scope); Other: one key.
    const [acme1, acme2, other] = await Promise.all([create('--tenant', 'acme'), create('--tenant', 'acme'), create('--tenant', 'other')]);
    const acme3 = await create('--tenant', 'acme', '--data-of', acme1.hash);
    // The first printed line run by a shell with the project's wrangler, as an operator runs it; the others' words
    // (as the shell splits them) put into the same store directly, which spares a wrangler start each.
    const ran = await new Promise<{ err: Error | null; stderr: string }>((resolve) => execFile('sh', ['-c', acme1.put], { cwd: repoRoot, env: { ...env, WRANGLER_SEND_METRICS: 'false' } }, (err, _out, stderr) => resolve({ err, stderr })));
    expect(ran.err, ran.stderr).toBeNull();
    expect(acme3.metadata.scope).toBe(acme1.metadata.scope);
    const scopes = [acme1.metadata.scope, acme2.metadata.scope, other.metadata.scope];
    const recordsOf: Record<string, string[]> = {};
    // The other keys, the scopes' records and the listing by one workerd (each start of one costs a second or more of CPU).
    const all = await withLocalKv(persistTo, async (kv) => {
      for (const { put } of [acme2, acme3, other]) {
        const words = await new Promise<string[]>((resolve, reject) => execFile('sh', ['-c', `printf '%s\\0' ${put.slice('npx wrangler kv key put '.length)}`], (err, out) => (err ? reject(err) : resolve(out.split('\0').slice(0, -1)))));
        const at = (flag: string): string => words[words.indexOf(flag) + 1];
        expect(words).toEqual(expect.arrayContaining(['--local', '--persist-to', persistTo]));
        // `--binding SSSD_KV 'key:<hash>' --metadata '{…}' '{record}'`
        expect(words.slice(-5, -2)).toEqual(['SSSD_KV', expect.stringMatching(/^key:[0-9a-f]{64}$/), '--metadata']);
        await kv.put(words.at(-4)!, words.at(-1)!, { metadata: JSON.parse(at('--metadata')) as unknown });
      }
      // One key record by hand, without metadata: read for its tenant (its scope holds nothing here).
      await kv.put(`key:${'0'.repeat(64)}`, JSON.stringify({ tenant: 'acme' }));
      for (const scope of scopes) {
        const before = new Set((await kv.list()).keys.map((key) => key.name));
        await writeScopedRecords(kv, scope);
        recordsOf[scope] = (await kv.list()).keys.map((key) => key.name).filter((name) => !before.has(name));
      }
      return namesIn(kv);
    });
    const acme = [...recordsOf[scopes[0]], ...recordsOf[scopes[1]]];

    const erased = await sssd(['kv', 'erase', '--tenant', 'acme', '--local'], env);
    expect(erased.stderr).toBe('');
    expect(erased.code).toBe(0);
    // The scopes in the order their key records list (by the keys' random hashes), the one read from a value after them.
    const scopesSaid = /^found 4 keys of tenant "acme", data scopes (.+)$/m.exec(erased.stdout)?.[1].split(', ');
    expect(scopesSaid?.slice(0, 2).sort()).toEqual([acme1.metadata.scope, acme2.metadata.scope].sort());
    expect(scopesSaid?.slice(2)).toEqual(['0'.repeat(24)]);
    expect(erased.stdout).toContain('(1 key record carries no metadata (written by hand, or by `sssd key create` before it wrote metadata): read for its tenant, 1 of them "acme"\'s)');
    expect(erased.stdout).toContain(`found ${acme.length} records of 3 data scopes in the local store (${persistTo})`);
    expect(erased.stdout).not.toContain('without scope metadata');
    expect(erased.stdout).toContain(`deleted ${acme.length} records`);
    const left = await names(persistTo);
    expect(left).toEqual(all.filter((name) => !acme.includes(name)));
    expect(left).toEqual(expect.arrayContaining([...recordsOf[scopes[2]], `key:${acme1.hash}`, `key:${acme2.hash}`, `key:${acme3.hash}`, `key:${other.hash}`]));

    const [none, both] = await Promise.all([sssd(['kv', 'erase', '--tenant', 'nobody', '--local'], env), sssd(['kv', 'erase', '--tenant', 'acme', '--scope', acme1.hash, '--local'], env)]);
    expect(none.code).toBe(0);
    expect(none.stdout).toContain('found 0 keys of tenant "nobody"');
    expect(none.stdout).toContain('found 0 records of 0 data scopes');
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('give --scope <hash> or --tenant <name> (one of them)');
  }, 180_000);

  it.concurrent("takes a key's SHA-256, its first 24 hex digits or its `key:` entry as the scope, and refuses anything else", async ({ expect }) => {
    const hash = 'AB'.repeat(32);
    for (const given of [hash, `key:${hash}`, hash.slice(0, 24), ` ${hash.toLowerCase()} `]) expect(parseScope(given)).toBe('ab'.repeat(12));
    const refused = await sssd(['kv', 'erase', '--scope', 'ab'.repeat(10), '--local']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("--scope must be a key's SHA-256");

    // A mistyped local store, named or from SSSD_EDGE_STATE, is refused before the store is opened: opening it made an empty
    // store there, and the erasure said "found 0 records", exit 0, the data where it was (review h166).
    const empty = mkdtempSync(path.join(tmpdir(), 'sssd-kv-erase-empty-'));
    dirs.push(empty);
    const missing = path.join(empty, 'typo');
    // The deployed namespace without credentials: wrangler's error, without the colours it writes to a pipe too.
    const config = mkdtempSync(path.join(tmpdir(), 'sssd-kv-erase-config-'));
    dirs.push(config);
    const { CLOUDFLARE_API_TOKEN: _token, CLOUDFLARE_ACCOUNT_ID: _account, CF_API_TOKEN: _cfToken, ...uncredentialled } = process.env;
    const [typo, notAStore, remote] = await Promise.all([
      sssd(['kv', 'erase', '--scope', hash, '--local', '--persist-to', missing]),
      sssd(['kv', 'erase', '--tenant', 'acme', '--local', '--dry-run'], { ...process.env, SSSD_EDGE_STATE: empty }),
      sssd(['kv', 'erase', '--scope', hash], { ...uncredentialled, XDG_CONFIG_HOME: config }),
    ]);
    expect(typo).toMatchObject({ code: 2, stdout: '' });
    expect(typo.stderr).toBe(`sssd: kv erase: --persist-to ${missing} does not exist, so holds no local store; nothing erased\n`);
    expect(existsSync(missing)).toBe(false);
    expect(notAStore).toMatchObject({ code: 2, stdout: '' });
    expect(notAStore.stderr).toBe(`sssd: kv erase: SSSD_EDGE_STATE ${empty} is not a wrangler dev store (no v3/kv in it); nothing erased\n`);
    expect(readdirSync(empty)).toEqual([]);
    expect(remote.code).toBe(2);
    expect(remote.stderr).toMatch(/^sssd: kv erase: wrangler kv key list failed \(exit 1\):\n.*CLOUDFLARE_API_TOKEN/);
    expect(remote.stderr).not.toContain('\u001b[');
  }, 60_000);
});
