/**
 * Writes a value into wrangler's local KV (the state `wrangler dev` reads), e.g.
 * to provision an API key: `key:<sha256 of the key>` → {"tenant","rpm","concurrency"}.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { repoRoot } from '../../launcher/stack';

export async function putLocalKv(key: string, value: string, persistTo?: string): Promise<void> {
  const args = [
    path.join(repoRoot, 'node_modules/wrangler/bin/wrangler.js'),
    'kv', 'key', 'put', key, value,
    '--binding', 'SSSD_KV', '--local',
    '--config', path.join(repoRoot, 'wrangler.toml'),
  ];
  if (persistTo) args.push('--persist-to', persistTo);
  const child = spawn(process.execPath, args, { cwd: repoRoot, env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (code !== 0) throw new Error(`wrangler kv key put ${key} failed (${code}):\n${output}`);
}
