// `sssd key create` as an operator runs it: the lines it prints are run by a
// real shell, the record lands in workerd's KV, and the edge's own lookup
// (edge/api-keys.ts) serves the printed key at the printed limits.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { authenticate, type KeyRecord } from '../../edge/api-keys';
import { poolTenant } from '../../edge/completion-handler';
import { edgeConfig } from '../../edge/edge-config';
import type { EdgeEnv } from '../../edge/env';
import { sssdNodeArgs } from '../support/compiled-cli';
import { repoRoot } from '../support/shared-data';
import { workerdKv } from '../support/workerd-kv';

/** bin/sssd.mjs itself, for the file's first start; its other seven run it as compiled once (compiled-cli.ts). */
const SOURCE_SSSD = [path.join(repoRoot, 'bin/sssd.mjs')];

interface Run { code: number; stdout: string; stderr: string }
function sssd(args: string[], env: NodeJS.ProcessEnv = process.env, entry: string[] = sssdNodeArgs()): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...entry, ...args], { cwd: repoRoot, env }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** The words a POSIX shell passes to wrangler for a printed command line (its quoting undone by sh itself). */
function wranglerArgs(line: string): Promise<string[]> {
  expect(line.startsWith('npx wrangler kv key ')).toBe(true);
  const script = `printf '%s\\0' ${line.slice('npx wrangler kv key '.length)}`;
  return new Promise((resolve, reject) => {
    execFile('sh', ['-c', script], (err, stdout) => (err ? reject(err) : resolve(stdout.split('\0').slice(0, -1))));
  });
}

/** Does to `kv` what `wrangler kv key put|delete` does with these words. */
async function apply(kv: KVNamespace, words: string[]): Promise<void> {
  const [verb, ...rest] = words;
  const positional = rest.filter((w, i) => !w.startsWith('--') && rest[i - 1] !== '--binding' && rest[i - 1] !== '--metadata');
  expect(rest).toContain('--remote');
  const metadata = rest.includes('--metadata') ? (JSON.parse(rest[rest.indexOf('--metadata') + 1]) as unknown) : undefined;
  if (verb === 'put') await kv.put(positional[0], positional[1], metadata === undefined ? {} : { metadata });
  else if (verb === 'delete') await kv.delete(positional[0]);
  else throw new Error(`unexpected wrangler verb ${verb}`);
}

const kv = workerdKv();
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('sssd key create', () => {
  it('prints a key once and the wrangler lines whose record the edge serves at its limits, and revokes', async () => {
    const r = await sssd(['key', 'create', '--tenant', "o'brien & co", '--rpm', '60', '--concurrency', '4', '--storage-mb-per-day', '5'], process.env, SOURCE_SSSD);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n').filter((l) => !l.startsWith('#'));
    const [key, put, revoke, remove] = lines;
    expect(key).toMatch(/^sk-[0-9a-f]{48}$/);
    expect(r.stdout.split(key).length - 1).toBe(1); // shown once, and no line holds it but its own

    const env: EdgeEnv = { SSSD_KV: kv(), SSSD_POOL_URLS: 'http://127.0.0.1:8788', SSSD_POOL_TOKEN: 't' };
    const config = edgeConfig(env);
    const auth = () => authenticate(`Bearer ${key}`, env, config).catch((err: unknown) => err);

    const putWords = await wranglerArgs(put);
    const hash = /key:([0-9a-f]{64})/.exec(put)![1];
    // The metadata names the tenant and the data scope, so `sssd kv erase --tenant` finds the key in one list (review h143),
    // and when the key was made, for `sssd key list`.
    const metadata = putWords[6];
    const { created } = JSON.parse(metadata) as { created: string };
    expect(metadata).toBe(JSON.stringify({ tenant: "o'brien & co", scope: hash.slice(0, 24), created }));
    expect(created).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(Math.abs(Date.parse(created) - Date.now())).toBeLessThan(60_000);
    expect(putWords).toEqual(['put', '--remote', '--binding', 'SSSD_KV', `key:${hash}`, '--metadata', metadata, '{"tenant":"o\'brien & co","rpm":60,"concurrency":4,"storageMbPerDay":5}']);
    // The one revoking line names `sssd key revoke` with the hash's first digits.
    expect(r.stdout).toContain(`# Revoke it (either; or \`sssd key revoke ${hash.slice(0, 12)}\`):\n`);
    expect((await wranglerArgs(revoke)).slice(0, 7)).toEqual(putWords.slice(0, 7));
    await apply(kv(), putWords);
    expect((await kv().getWithMetadata(`key:${hash}`)).metadata).toEqual(JSON.parse(metadata));
    const served = await auth();
    expect(served).toMatchObject({ tenant: "o'brien & co", rpm: 60, concurrency: 4, storageBytesPerDay: 5 * 1024 * 1024, contributeToDatastore: false });
    // Printed beside the key: the tenant as the pool gets it, as the request log cuts it.
    expect(r.stdout).toContain(`\n# Its tenant in the edge's request log and the pools' logs: ${(await poolTenant((served as KeyRecord).tenant)).slice(0, 12)}\n`);

    // Past the edge's lookup cache (30 s per isolate), the revoked record refuses the key, as does the deleted entry.
    vi.useFakeTimers({ toFake: ['Date'] });
    await apply(kv(), await wranglerArgs(revoke));
    vi.setSystemTime(Date.now() + 31_000);
    expect(await auth()).toMatchObject({ status: 401, code: 'invalid_api_key' });
    await apply(kv(), putWords);
    vi.setSystemTime(Date.now() + 31_000);
    expect(await auth()).toMatchObject({ tenant: "o'brien & co" });
    await apply(kv(), await wranglerArgs(remove));
    vi.setSystemTime(Date.now() + 31_000);
    expect(await auth()).toMatchObject({ status: 401, code: 'invalid_api_key' });
  });

  it("says in its help that --tenant is one customer: what its keys share (review h203)", async () => {
    const help = await sssd(['key', 'create', '--help']);
    expect(help.code).toBe(0);
    const said = help.stdout.replace(/\s+/g, ' ');
    expect(said).toMatch(/--tenant <name> +the key's tenant .*Not a label: keys of one tenant share the pools' prompt cache/);
    expect(said).toMatch(/one fair share of batch rows, and `sssd kv erase --tenant`\. One tenant is one customer/);
  });

  it('makes a new key each time, with only the fields given, and refuses a limit the edge would refuse', async () => {
    const [a, b] = await Promise.all([sssd(['key', 'create', '--json']), sssd(['key', 'create', '--json', '--local'])]);
    const [ja, jb] = [JSON.parse(a.stdout) as { key: string; record: object; put: string; tenantInLogs: string }, JSON.parse(b.stdout) as { key: string; put: string }];
    expect(ja.key).not.toBe(jb.key);
    expect(ja.record).toEqual({});
    // No --tenant: the tenant the edge gives the key (its own) is the one hashed.
    const store = kv();
    const env: EdgeEnv = { SSSD_KV: store, SSSD_POOL_URLS: 'http://127.0.0.1:8788', SSSD_POOL_TOKEN: 't' };
    await apply(store, await wranglerArgs(ja.put));
    const served = (await authenticate(`Bearer ${ja.key}`, env, edgeConfig(env))) as KeyRecord;
    expect(ja.tenantInLogs).toBe((await poolTenant(served.tenant)).slice(0, 12));
    expect(jb.put).toContain(' --local ');
    // Where `sssd up` keeps its edge's store elsewhere (SSSD_EDGE_STATE), the local lines name it (review h133).
    const elsewhere = await sssd(['key', 'create', '--json', '--local'], { ...process.env, SSSD_EDGE_STATE: 'state dir' });
    const lines = JSON.parse(elsewhere.stdout) as { put: string; revoke: string; delete: string };
    for (const line of [lines.put, lines.revoke, lines.delete]) expect(await wranglerArgs(line)).toEqual(expect.arrayContaining(['--local', '--persist-to', path.join(repoRoot, 'state dir')]));
    const bad = await sssd(['key', 'create', '--rpm', '60.5']);
    expect(bad).toMatchObject({ code: 2, stdout: '' });
    expect(bad.stderr).toBe('sssd: --rpm must be an integer >= 1, not "60.5"\n');
    const noStorage = await sssd(['key', 'create', '--storage-mb-per-day', '0']);
    expect(noStorage).toMatchObject({ code: 2, stdout: '' });
    expect(noStorage.stderr).toContain('--storage-mb-per-day must be an integer >= 1');
  });

  it("makes a key that replaces another (--data-of): it shares that key's stored data, and keeps limits of its own (review h143)", async () => {
    const old = JSON.parse((await sssd(['key', 'create', '--json', '--tenant', 'acme', '--rpm', '60'])).stdout) as { key: string; hash: string; put: string };
    const made = await sssd(['key', 'create', '--json', '--tenant', 'acme', '--data-of', `key:${old.hash.toUpperCase()}`]);
    const rotated = JSON.parse(made.stdout) as { key: string; record: object; put: string };
    expect(rotated.record).toEqual({ tenant: 'acme', dataOf: old.hash });
    // Its metadata names the scope it shares, not its own hash's.
    expect(made.stdout).toMatch(new RegExp(`"metadata": \\{\\n    "tenant": "acme",\\n    "scope": "${old.hash.slice(0, 24)}",\\n    "created": "[0-9T:-]+Z"\\n  \\}`));
    const store = kv();
    const env: EdgeEnv = { SSSD_KV: store, SSSD_POOL_URLS: 'http://127.0.0.1:8788', SSSD_POOL_TOKEN: 't' };
    for (const line of [old.put, rotated.put]) await apply(store, await wranglerArgs(line));
    const [before, after] = await Promise.all([old.key, rotated.key].map((key) => authenticate(`Bearer ${key}`, env, edgeConfig(env)) as Promise<KeyRecord>));
    expect(after.dataScope).toBe(before.dataScope);
    expect(after.keyId).not.toBe(before.keyId);
    expect([before.rpm, after.rpm]).toEqual([60, 600]);
    const bad = await sssd(['key', 'create', '--data-of', 'abc']);
    expect(bad).toMatchObject({ code: 2, stdout: '' });
    expect(bad.stderr).toMatch(/--data-of must be the SHA-256 of the key this one replaces/);
  });
});
