/**
 * Writes values into wrangler's local KV (the state `wrangler dev` reads), e.g.
 * to provision an API key: `key:<sha256 of the key>` → {"tenant","rpm","concurrency"};
 * and reads and writes such a store directly, as workerd does (withLocalKv).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { repoRoot } from '../../launcher/stack';

export async function putLocalKv(key: string, value: string, persistTo?: string): Promise<void> {
  await wranglerKv(['key', 'put', key, value], `wrangler kv key put ${key}`, persistTo);
}

/** Writes several values with one wrangler start (`kv bulk put`): each start is ~2.5 s of CPU. */
export async function putLocalKvEntries(entries: Readonly<Record<string, string>>, persistTo?: string): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sssd-kv-bulk-'));
  try {
    const file = path.join(dir, 'entries.json');
    writeFileSync(file, JSON.stringify(Object.entries(entries).map(([key, value]) => ({ key, value }))));
    await wranglerKv(['bulk', 'put', file], `wrangler kv bulk put ${Object.keys(entries).join(', ')}`, persistTo);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function wranglerKv(command: string[], what: string, persistTo: string | undefined): Promise<void> {
  const args = [
    path.join(repoRoot, 'node_modules/wrangler/bin/wrangler.js'),
    'kv', ...command,
    '--binding', 'SSSD_KV', '--local',
    '--config', path.join(repoRoot, 'wrangler.toml'),
  ];
  if (persistTo) args.push('--persist-to', persistTo);
  const child = spawn(process.execPath, args, { cwd: repoRoot, env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (code !== 0) throw new Error(`${what} failed (${code}):\n${output}`);
}

/** The namespace id wrangler.toml binds SSSD_KV to: wrangler's local store keeps it under that id. */
const namespaceId = /\[\[kv_namespaces\]\][^[]*?\bid\s*=\s*"([^"]+)"/.exec(readFileSync(path.join(repoRoot, 'wrangler.toml'), 'utf8'))![1];

/** Works on wrangler's local store in `persistTo` as `wrangler dev --persist-to` does (workerd's KV, persisted under v3/kv). */
export async function withLocalKv<T>(persistTo: string, work: (kv: KVNamespace) => Promise<T>): Promise<T> {
  // Imported here, not at the top: ~1 s of CPU to load, which the e2e files that only write keys (stack-fixture.ts) never use.
  const { Miniflare } = await import('miniflare');
  const miniflare = new Miniflare({
    modules: true,
    script: 'export default { fetch() { return new Response(null); } }',
    kvNamespaces: { SSSD_KV: namespaceId },
    kvPersist: path.join(persistTo, 'v3', 'kv'),
    compatibilityDate: '2025-01-01',
  });
  try {
    return await work((await miniflare.getKVNamespace('SSSD_KV')) as unknown as KVNamespace);
  } finally {
    await miniflare.dispose();
  }
}

/** Every name in `kv`, sorted (its list followed to the end). */
export async function namesIn(kv: KVNamespace): Promise<string[]> {
  const all: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await kv.list({ ...(cursor ? { cursor } : {}) });
    all.push(...page.keys.map((key) => key.name));
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor !== undefined);
  return all.sort();
}
