/**
 * The edge's KV namespace (SSSD_KV) as the launcher's commands reach it: through the project's wrangler, on the
 * deployed namespace (--remote) or on wrangler dev's local store (--local, in a folder checked first). `sssd kv
 * erase` and `sssd key list|revoke|restore` share it: one way to pick the store, one wrangler invocation.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import type { Command } from 'commander';
import { CliError } from '../gpu-pool/cli/cli-error';
import { repoRoot } from './stack';

/** Names a bulk delete is given at once (Workers KV's bulk delete takes 10,000 a request). */
const DELETE_BATCH = 10_000;
/** Names a bulk get is given at once: the API's bulk get takes 100 a request, and wrangler sends the file's list in one. */
const GET_BATCH = 100;

/** Which namespace wrangler works on: the deployed one, or wrangler dev's local store (in `persistTo` where given). */
export type KvTarget = { where: 'remote' } | { where: 'local'; persistTo: string | null };

/** A name as `wrangler kv key list` prints it. */
export interface ListedKey {
  name: string;
  metadata?: unknown;
}

/** The flags every command on the namespace takes. */
export interface KvTargetFlags {
  local?: boolean;
  persistTo?: string;
}

/** What a command names itself in its errors, and what it says it left undone when refused ("nothing erased"). */
export interface KvCommandWords {
  command: string;
  nothingDone: string;
}

/** Where wrangler keeps its local state when given no --persist-to: .wrangler/state beside wrangler.toml. */
const WRANGLER_DEFAULT_STATE = path.join(repoRoot, '.wrangler', 'state');

/** Adds the options that pick the namespace, in each command's help alike. */
export function withKvTargetOptions(command: Command): Command {
  return command
    .option('--local', "wrangler dev's local store (SSSD_EDGE_STATE's folder where set, as `sssd up` uses it) instead of the deployed namespace (--remote)")
    .option('--persist-to <dir>', "with --local: the local store's folder (wrangler's --persist-to), one `wrangler dev` or `sssd up` has kept its KV in (v3/kv)");
}

/**
 * The namespace the flags name: --local's folder is --persist-to's, else SSSD_EDGE_STATE's, else wrangler's default,
 * checked before wrangler runs (checkLocalStore).
 */
export function kvTargetOf(flags: KvTargetFlags, words: KvCommandWords): KvTarget {
  if (flags.persistTo !== undefined && !flags.local) throw new CliError(`${words.command}: --persist-to is for --local (the deployed namespace has no folder)`);
  if (!flags.local) return { where: 'remote' };
  const state = flags.persistTo ?? (process.env.SSSD_EDGE_STATE || undefined);
  const persistTo = state !== undefined ? path.resolve(state) : WRANGLER_DEFAULT_STATE;
  checkLocalStore(persistTo, flags.persistTo !== undefined ? '--persist-to' : state !== undefined ? 'SSSD_EDGE_STATE' : "wrangler's default store", words);
  return { where: 'local', persistTo };
}

/** The namespace in words, for what a command prints. */
export function describeTarget(target: KvTarget): string {
  return target.where === 'remote' ? 'the deployed namespace' : `the local store${target.persistTo !== null ? ` (${target.persistTo})` : ''}`;
}

/**
 * The local store's folder, checked before wrangler runs: given a folder that does not exist or holds no KV store (a
 * typo in --persist-to or SSSD_EDGE_STATE), wrangler made an empty store there, and erase said "found 0 records" and
 * exited 0 with the data where it was (review h166). `wrangler dev` keeps its KV under v3/kv.
 */
export function checkLocalStore(dir: string, named: string, words: KvCommandWords): void {
  const kind = (at: string): 'folder' | 'file' | null => {
    try {
      return statSync(at).isDirectory() ? 'folder' : 'file';
    } catch {
      return null;
    }
  };
  const found = kind(dir);
  const { command, nothingDone } = words;
  if (found === null) throw new CliError(`${command}: ${named} ${dir} does not exist, so holds no local store; ${nothingDone}`);
  if (found === 'file') throw new CliError(`${command}: ${named} ${dir} is a file, not a local store's folder; ${nothingDone}`);
  if (kind(path.join(dir, 'v3', 'kv')) !== 'folder') throw new CliError(`${command}: ${named} ${dir} is not a wrangler dev store (no v3/kv in it); ${nothingDone}`);
}

function targetArgs(target: KvTarget): string[] {
  if (target.where === 'remote') return ['--remote'];
  return target.persistTo !== null ? ['--local', '--persist-to', target.persistTo] : ['--local'];
}

/**
 * Times a command on the local store is run again when wrangler's local KV answered it 500: each wrangler start opens
 * the store's SQLite files in a workerd of its own, and one beside another (a second `sssd key` command, or `wrangler
 * dev` serving the edge from the same folder) now and then finds them busy (measured: 2 of 24 lists, six at a time on
 * a loaded 2-core host). Every command here is one a repeat leaves as one run would (a list, a get, a put of the same
 * value, a delete), so running it again is safe.
 */
const LOCAL_BUSY_RETRIES = 4;
/** wrangler's words for a local store's 500 ("KV GET failed: 500 Internal Server Error"). */
const LOCAL_BUSY = /\bKV [A-Z]+ failed: 500\b/;

/** Runs wrangler from the repository (its wrangler.toml binds SSSD_KV); its stdout, or a CliError with what it said. */
async function wrangler(args: string[], command: string): Promise<string> {
  const local = args.includes('--local');
  for (let attempt = 0; ; attempt++) {
    const { code, stdout, stderr } = await wranglerOnce(args);
    if (code === 0) return stdout;
    const said = (stderr || stdout).trim();
    if (local && attempt < LOCAL_BUSY_RETRIES && LOCAL_BUSY.test(stripVTControlCharacters(said))) {
      await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt));
      continue;
    }
    // wrangler colours its errors whatever its output is (NO_COLOR and FORCE_COLOR=0 do not stop it): kept for a terminal, not for a log.
    const tried = attempt > 0 ? ` (try ${attempt + 1}; the local store answered the earlier ones 500)` : '';
    throw new CliError(`${command}: wrangler ${args.slice(0, 3).join(' ')} failed (exit ${code})${tried}:\n${process.stderr.isTTY ? said : stripVTControlCharacters(said)}`);
  }
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

/** Every name in the namespace (or those starting with `prefix`) with its metadata (wrangler follows the list's cursor itself). */
export async function listKeys(target: KvTarget, command: string, prefix?: string): Promise<ListedKey[]> {
  const listed = printedJson(
    await wrangler(['kv', 'key', 'list', '--binding', 'SSSD_KV', ...targetArgs(target), ...(prefix !== undefined ? ['--prefix', prefix] : [])], command),
    '[',
    'kv key list',
    command,
  );
  if (!Array.isArray(listed)) throw new CliError(`${command}: wrangler kv key list printed no JSON list`);
  return listed.filter((key): key is ListedKey => key !== null && typeof key === 'object' && typeof (key as { name?: unknown }).name === 'string');
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

/**
 * The values of `names` as text (null where there is none), with wrangler's bulk get, GET_BATCH at a time. The local
 * store answers `{name: {value}}`, the API `{name: value}`: both are read.
 */
export async function getValues(target: KvTarget, names: readonly string[], command: string): Promise<Map<string, string | null>> {
  const values = new Map<string, string | null>();
  await withTempFile('sssd-kv-get-', async (dir) => {
    for (let at = 0; at < names.length; at += GET_BATCH) {
      const file = path.join(dir, `batch-${at / GET_BATCH}.json`);
      const batch = names.slice(at, at + GET_BATCH);
      writeFileSync(file, JSON.stringify(batch));
      const got = printedJson(await wrangler(['kv', 'bulk', 'get', '--binding', 'SSSD_KV', ...targetArgs(target), file], command), '{', 'kv bulk get', command);
      if (got === null || typeof got !== 'object') throw new CliError(`${command}: wrangler kv bulk get printed no JSON object`);
      for (const name of batch) {
        const entry: unknown = (got as Record<string, unknown>)[name];
        const value = entry !== null && typeof entry === 'object' && 'value' in entry ? entry.value : entry;
        values.set(name, typeof value === 'string' ? value : null);
      }
    }
  });
  return values;
}

/** Writes `value` under `name` with `metadata` (none where undefined: wrangler's put drops what the entry had). */
export async function putValue(target: KvTarget, name: string, value: string, metadata: unknown, command: string): Promise<void> {
  const withMetadata = metadata === undefined ? [] : ['--metadata', JSON.stringify(metadata)];
  await wrangler(['kv', 'key', 'put', name, value, '--binding', 'SSSD_KV', ...targetArgs(target), ...withMetadata], command);
}

/** Deletes `names` with wrangler's bulk delete, DELETE_BATCH at a time. */
export async function deleteKeys(target: KvTarget, names: readonly string[], command: string): Promise<void> {
  await withTempFile('sssd-kv-delete-', async (dir) => {
    for (let at = 0; at < names.length; at += DELETE_BATCH) {
      const file = path.join(dir, `batch-${at / DELETE_BATCH}.json`);
      writeFileSync(file, JSON.stringify(names.slice(at, at + DELETE_BATCH)));
      await wrangler(['kv', 'bulk', 'delete', '--binding', 'SSSD_KV', ...targetArgs(target), file, '--force'], command);
    }
  });
}
