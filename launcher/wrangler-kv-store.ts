/**
 * The deployed namespace (SSSD_KV) as a KvStore: each operation a `wrangler kv ... --remote` run from the repository
 * (its wrangler.toml binds SSSD_KV; its credentials are wrangler's own). The local store is opened in this process
 * instead (local-kv-store.ts).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { CliError } from '../gpu-pool/cli/cli-error';
import type { KvStore, ListedKey } from './edge-kv';
import { repoRoot } from './stack';

/** Names a bulk delete is given at once (Workers KV's bulk delete takes 10,000 a request). */
const DELETE_BATCH = 10_000;
/** Names a bulk get is given at once: the API's bulk get takes 100 a request, and wrangler sends the file's list in one. */
const GET_BATCH = 100;

/** Runs wrangler on the deployed namespace; its stdout, or a CliError with what it said. */
async function wrangler(args: string[], command: string): Promise<string> {
  const { code, stdout, stderr } = await wranglerOnce([...args, '--binding', 'SSSD_KV', '--remote']);
  if (code === 0) return stdout;
  const said = (stderr || stdout).trim();
  // wrangler colours its errors whatever its output is (NO_COLOR and FORCE_COLOR=0 do not stop it): kept for a terminal, not for a log.
  throw new CliError(`${command}: wrangler ${args.slice(0, 3).join(' ')} failed (exit ${code}):\n${process.stderr.isTTY ? said : stripVTControlCharacters(said)}`);
}

/** One wrangler run: its exit code and what it printed. */
async function wranglerOnce(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'node_modules/wrangler/bin/wrangler.js'), ...args, '--config', path.join(repoRoot, 'wrangler.toml')], {
    cwd: repoRoot,
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => stdout.push(d));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  return { code, stdout: Buffer.concat(stdout).toString(), stderr };
}

/** The JSON wrangler printed from `open` on (past any banner before it, and its "Success!" after it). */
function printedJson(out: string, open: '[' | '{', what: string, command: string): unknown {
  const start = out.indexOf(open);
  const end = out.lastIndexOf(open === '[' ? ']' : '}');
  try {
    return JSON.parse(start >= 0 && end > start ? out.slice(start, end + 1) : out);
  } catch {
    throw new CliError(`${command}: wrangler ${what} printed no JSON ${open === '[' ? 'list' : 'object'}:\n${out.slice(0, 500)}`);
  }
}

/** Runs `work` on a file of its own in a temporary folder, removed after. */
async function withTempFile<T>(prefix: string, work: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  try {
    return await work(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The deployed namespace, each operation a wrangler run (`command` names the sssd command in its errors). */
export function wranglerKvStore(command: string): KvStore {
  return {
    // wrangler follows the API's list cursor itself.
    async list(prefix) {
      const listed = printedJson(await wrangler(['kv', 'key', 'list', ...(prefix !== undefined ? ['--prefix', prefix] : [])], command), '[', 'kv key list', command);
      if (!Array.isArray(listed)) throw new CliError(`${command}: wrangler kv key list printed no JSON list`);
      return listed.filter((key): key is ListedKey => key !== null && typeof key === 'object' && typeof (key as { name?: unknown }).name === 'string');
    },

    async get(names) {
      const values = new Map<string, string | null>();
      await withTempFile('sssd-kv-get-', async (dir) => {
        for (let at = 0; at < names.length; at += GET_BATCH) {
          const file = path.join(dir, `batch-${at / GET_BATCH}.json`);
          const batch = names.slice(at, at + GET_BATCH);
          writeFileSync(file, JSON.stringify(batch));
          const got = printedJson(await wrangler(['kv', 'bulk', 'get', file], command), '{', 'kv bulk get', command);
          if (got === null || typeof got !== 'object') throw new CliError(`${command}: wrangler kv bulk get printed no JSON object`);
          for (const name of batch) {
            // The API answers `{name: value}`; `{name: {value}}` read too, as wrangler's local store printed it.
            const entry: unknown = (got as Record<string, unknown>)[name];
            const value = entry !== null && typeof entry === 'object' && 'value' in entry ? entry.value : entry;
            values.set(name, typeof value === 'string' ? value : null);
          }
        }
      });
      return values;
    },

    async put(name, value, metadata) {
      const withMetadata = metadata === undefined ? [] : ['--metadata', JSON.stringify(metadata)];
      await wrangler(['kv', 'key', 'put', name, value, ...withMetadata], command);
    },

    async delete(names) {
      await withTempFile('sssd-kv-delete-', async (dir) => {
        for (let at = 0; at < names.length; at += DELETE_BATCH) {
          const file = path.join(dir, `batch-${at / DELETE_BATCH}.json`);
          writeFileSync(file, JSON.stringify(names.slice(at, at + DELETE_BATCH)));
          await wrangler(['kv', 'bulk', 'delete', file, '--force'], command);
        }
      });
    },
  };
}
