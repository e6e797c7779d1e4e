/**
 * The edge's KV namespace (SSSD_KV) as the launcher's commands reach it: the deployed namespace (--remote) through the
 * project's wrangler (wrangler-kv-store.ts), or wrangler dev's local store (--local, in a folder checked first) opened
 * in this process (local-kv-store.ts). `sssd kv erase` and `sssd key list|revoke|restore` share it: one way to pick
 * the store, one set of operations on it.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { CliError } from '../gpu-pool/cli/cli-error';
import { withLocalKvStore } from './local-kv-store';
import { repoRoot } from './stack';
import { wranglerKvStore } from './wrangler-kv-store';

/** Which namespace a command works on: the deployed one, or wrangler dev's local store in `persistTo`. */
export type KvTarget = { where: 'remote' } | { where: 'local'; persistTo: string };

/** A name in the namespace and its metadata, as a list gives them. */
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
 * checked before the store is opened (checkLocalStore).
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
  return target.where === 'remote' ? 'the deployed namespace' : `the local store (${target.persistTo})`;
}

/**
 * The local store's folder, checked before the store is opened: given a folder that does not exist or holds no KV store
 * (a typo in --persist-to or SSSD_EDGE_STATE), opening it made an empty store there, and erase said "found 0 records"
 * and exited 0 with the data where it was (review h166). `wrangler dev` keeps its KV under v3/kv.
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

/** The namespace's records as the launcher's commands use them, on the deployed namespace or the local store alike. */
export interface KvStore {
  /** Every name (or those starting with `prefix`) with its metadata, the list followed to its end. */
  list(prefix?: string): Promise<ListedKey[]>;
  /** The values of `names` as text (null where there is none). */
  get(names: readonly string[]): Promise<Map<string, string | null>>;
  /** Writes `value` under `name` with `metadata` (none where undefined: a put drops what the entry had). */
  put(name: string, value: string, metadata: unknown): Promise<void>;
  delete(names: readonly string[]): Promise<void>;
}

/**
 * Runs `work` on the namespace `target` names: the deployed one through wrangler (a run an operation), the local store
 * opened once in this process (Miniflare, as wrangler opens it) and closed after, also when `work` fails. `command`
 * names the sssd command in the store's errors.
 */
export async function withKvStore<T>(target: KvTarget, command: string, work: (store: KvStore) => Promise<T>): Promise<T> {
  if (target.where === 'remote') return work(wranglerKvStore(command));
  return withLocalKvStore(target.persistTo, command, work);
}
