/**
 * `sssd key create`: a new API key for the edge, shown once, with the
 * `wrangler kv key put` line that provisions it (`list`, `revoke` and
 * `restore`, which read and change the records, are key-record-commands.ts'). The edge knows a key by its
 * SHA-256 only (edge/api-keys.ts); hashing here, in Node, spares the operator
 * `sha256sum`, which stock macOS lacks: there the shell's substitution came
 * out empty and the record was written under `key:`, serving no key.
 */
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { dataScopeOf, sha256Hex } from '../edge/api-keys';
import { loggedTenant } from '../edge/request-log';
import { CliError } from '../gpu-pool/cli/cli-error';
import { parseNumberFlag } from '../gpu-pool/cli/number-flags';
import { registerKeyRecordCommands } from './key-record-commands';

/** A record as edge/api-keys.ts reads it (its `storedKeySchema`); fields left out take the edge's defaults. */
export interface NewKeyRecord {
  tenant?: string;
  rpm?: number;
  concurrency?: number;
  storageMbPerDay?: number;
  contributeToDatastore?: true;
  /** The SHA-256 of the key this one replaces: it shares that key's stored data. */
  dataOf?: string;
}

/**
 * The key record's KV metadata: its tenant as the edge names it and the data scope its requests store under, so
 * that one list of the namespace finds a tenant's keys and their data (`sssd kv erase --tenant`; review h143).
 */
export interface KeyMetadata {
  tenant: string;
  scope: string;
  /** When the key was made (ISO 8601, UTC, to the second): `sssd key list` shows it. */
  created: string;
}

export interface NewKey {
  key: string;
  /** SHA-256 of the key, lower-case hex: the KV entry is `key:<hash>`. */
  hash: string;
  record: NewKeyRecord;
  metadata: KeyMetadata;
  /** The key's tenant as the edge's request log and the pools name it (a hash: docs/deploy.md, "Logs"). */
  tenantInLogs: string;
  /** The shell commands that provision and revoke it. */
  put: string;
  revoke: string;
  delete: string;
}

/** Quotes a word for a POSIX shell: single quotes, each one inside written as '\''. */
function shellWord(word: string): string {
  return `'${word.replaceAll("'", "'\\''")}'`;
}

/** A random key (`sk-` and 48 hex digits, as `openssl rand -hex 24` gives), its hash, and the wrangler lines for it. */
export async function newKey(record: NewKeyRecord, where: 'remote' | 'local', persistTo: string | null = null): Promise<NewKey> {
  const key = `sk-${randomBytes(24).toString('hex')}`;
  const hash = await sha256Hex(key);
  const kv = `npx wrangler kv key`;
  // The local store `sssd up` keeps its edge's KV in (SSSD_EDGE_STATE), where it is not wrangler's default (review h133).
  const state = where === 'local' && persistTo !== null ? ` --persist-to ${shellWord(persistTo)}` : '';
  const target = `--${where}${state} --binding SSSD_KV ${shellWord(`key:${hash}`)}`;
  // As edge/api-keys.ts reads the record: a tenant of its own where it names none, and the scope of the key it replaces.
  const created = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const metadata: KeyMetadata = { tenant: record.tenant ?? hash.slice(0, 12), scope: dataScopeOf(hash, record), created };
  const withMetadata = `${target} --metadata ${shellWord(JSON.stringify(metadata))}`;
  return {
    key,
    hash,
    record,
    metadata,
    // The edge's tenant where the record names none: the key's own, named by its hash's first 12 digits (api-keys.ts).
    tenantInLogs: await loggedTenant(record.tenant ?? hash.slice(0, 12)),
    put: `${kv} put ${withMetadata} ${shellWord(JSON.stringify(record))}`,
    revoke: `${kv} put ${withMetadata} ${shellWord(JSON.stringify({ ...record, disabled: true }))}`,
    delete: `${kv} delete ${target}`,
  };
}

interface KeyCreateFlags {
  tenant?: string;
  rpm?: string;
  concurrency?: string;
  storageMbPerDay?: string;
  contributeToDatastore?: boolean;
  dataOf?: string;
  local?: boolean;
  json?: boolean;
}

function recordFromFlags(flags: KeyCreateFlags): NewKeyRecord {
  const record: NewKeyRecord = {};
  if (flags.tenant !== undefined) {
    // The edge refuses a record whose tenant is empty or past 256 characters: every request with the key would be a 401.
    if (flags.tenant.length === 0 || flags.tenant.length > 256) throw new CliError('key create: --tenant must be 1 to 256 characters');
    record.tenant = flags.tenant;
  }
  const rpm = parseNumberFlag('--rpm', flags.rpm, { integer: true, min: 1 });
  if (rpm !== undefined) record.rpm = rpm;
  const concurrency = parseNumberFlag('--concurrency', flags.concurrency, { integer: true, min: 1 });
  if (concurrency !== undefined) record.concurrency = concurrency;
  const storage = parseNumberFlag('--storage-mb-per-day', flags.storageMbPerDay, { integer: true, min: 1, max: 1_000_000 });
  if (storage !== undefined) record.storageMbPerDay = storage;
  if (flags.contributeToDatastore) record.contributeToDatastore = true;
  if (flags.dataOf !== undefined) {
    // The edge refuses a record whose dataOf is not a SHA-256: every request with the key would be a 401.
    const hash = /^(?:key:)?([0-9a-fA-F]{64})$/.exec(flags.dataOf.trim());
    if (!hash) throw new CliError('key create: --data-of must be the SHA-256 of the key this one replaces (64 hex digits, as its `key:<hash>` entry names it)');
    record.dataOf = hash[1].toLowerCase();
  }
  return record;
}

export function register(program: Command): void {
  const key = program.command('key').description("the edge's API keys (stored in its KV namespace by SHA-256 only)");
  key
    .command('create')
    .description('make a random API key, print it once, and print the wrangler command that provisions it (and those that revoke it); nothing is written')
    .option(
      '--tenant <name>',
      "the key's tenant (default: a tenant of its own, named from its hash). Not a label: keys of one tenant share the pools' prompt cache (cached_tokens can reveal one key's prompts to another), one fair share of batch rows, and `sssd kv erase --tenant`. One tenant is one customer: give keys of different customers different tenants",
    )
    .option('--rpm <n>', "requests per minute (default: the edge's SSSD_DEFAULT_RPM)")
    .option('--concurrency <n>', "requests in flight at once (default: the edge's SSSD_DEFAULT_CONCURRENCY)")
    .option(
      '--storage-mb-per-day <n>',
      "MiB a day the key may store (stored responses and chat completions, conversations made, items and turns added, metadata replaced; a 429 past it), each kept SSSD_RESPONSE_TTL_DAYS (default: the edge's SSSD_DEFAULT_STORAGE_MB_PER_DAY)",
    )
    .option('--data-of <hash>', "rotation: the SHA-256 of the key this one replaces (its `key:<hash>` entry; for a key that itself replaced another, that one's dataOf), whose stored chat completions, responses, conversations and users' caches this key then reads and writes as its own; limits stay per key")
    .option('--contribute-to-datastore', "the key's requests' prompts and outputs join the pools' global datastore, which drafts for every tenant and which no delete reaches (docs/protocol.md)")
    .option('--local', "print commands for wrangler dev's local store (--local; SSSD_EDGE_STATE's folder where set, as `sssd up` uses it) instead of the deployed namespace (--remote)")
    .option('--json', 'print {key, hash, record, metadata, tenantInLogs, put, revoke, delete} as JSON')
    .action(async (flags: KeyCreateFlags) => {
      const state = process.env.SSSD_EDGE_STATE;
      const made = await newKey(recordFromFlags(flags), flags.local ? 'local' : 'remote', flags.local && state ? path.resolve(state) : null);
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(made, null, 2)}\n`);
        return;
      }
      process.stdout.write(
        [
          '# The key: give it to its user. It is shown only here; the edge keeps its SHA-256.',
          made.key,
          `# Its tenant in the edge's request log and the pools' logs: ${made.tenantInLogs}`,
          '# Provision it:',
          made.put,
          `# Revoke it (either; or \`sssd key revoke ${made.hash.slice(0, 12)}${flags.local ? ' --local' : ''}\`):`,
          made.revoke,
          made.delete,
          '',
        ].join('\n'),
      );
    });
  registerKeyRecordCommands(key);
}
