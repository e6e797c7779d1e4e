/**
 * `sssd key list`, `sssd key revoke <hash-prefix>` and `sssd key restore <hash-prefix>`: the key records in the edge's
 * KV namespace, for an operator who no longer has the lines `sssd key create` printed (review h203). They reach KV as
 * `sssd kv erase` does (edge-kv.ts: --local, --persist-to, SSSD_EDGE_STATE; the deployed namespace otherwise).
 */
import type { Command } from 'commander';
import { DEFAULT_KEY_LOOKUP_CACHE } from '../edge/key-lookup-cache';
import { CliError } from '../gpu-pool/cli/cli-error';
import { describeTarget, kvTargetOf, withKvStore, withKvTargetOptions, type KvTarget, type KvTargetFlags } from './edge-kv';
import { deleteKeyRecord, disableKeyRecord, enableKeyRecord, findKeyRecord, parseHashPrefix, readKeyEntries, type KeyEntry } from './key-records';

/** How long Cloudflare gives a KV change to reach its other locations ("up to 60 seconds or more"; docs/deploy.md). */
const KV_PROPAGATION_S = 60;

interface KeyListFlags extends KvTargetFlags {
  tenant?: string;
  json?: boolean;
}

interface KeyRevokeFlags extends KvTargetFlags {
  delete?: boolean;
}

/** A table cell: a word as it is, anything with spaces or control characters quoted (a tenant may hold them). */
function cell(text: string): string {
  return /[\s"\\\p{Cc}]/u.test(text) ? JSON.stringify(text) : text;
}

/** What the table says of one record beyond its columns. */
function notesOf(entry: KeyEntry): string {
  const notes: string[] = [];
  if (entry.refusedWhy !== null) notes.push(`refused: ${entry.refusedWhy}`);
  if (entry.dataOf !== null) notes.push(`data of ${entry.dataOf.slice(0, 12)}`);
  if (entry.storageMbPerDay !== null) notes.push(`stores ${entry.storageMbPerDay} MiB a day`);
  if (entry.contributeToDatastore) notes.push('contributes to the datastore');
  if (entry.metadata === null) notes.push('no metadata (kv erase --tenant reads its value)');
  return notes.join('; ');
}

/** The entries as a table, one line each, columns padded to their widest. */
export function keyTable(entries: readonly KeyEntry[]): string {
  const header = ['HASH', 'TENANT', 'SCOPE', 'RPM', 'CONCURRENCY', 'STATE', 'CREATED', 'NOTES'];
  const rows = entries.map((e) => [
    e.hash.slice(0, 12),
    e.tenant === null ? '?' : cell(e.tenant),
    e.scope ?? '?',
    e.rpm === null ? 'default' : String(e.rpm),
    e.concurrency === null ? 'default' : String(e.concurrency),
    e.state,
    e.created ?? '-',
    notesOf(e),
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i].length)));
  return [header, ...rows].map((row) => row.map((text, i) => (i === row.length - 1 ? text : text.padEnd(widths[i]))).join('  ').trimEnd()).join('\n');
}

/** The flags that named the namespace, for a command printed to run next. */
function sameTarget(flags: KvTargetFlags): string {
  if (!flags.local) return '';
  return flags.persistTo !== undefined ? ` --local --persist-to ${JSON.stringify(flags.persistTo)}` : ' --local';
}

/** How soon edges act on a change of a key record in `target`: the lookup cache's `ms` (`cache` says why), and KV's propagation where deployed. */
function noticeWithin(target: KvTarget, ms: number, cache: string): string {
  const seconds = ms / 1000;
  if (target.where === 'local') return `within ${seconds} s: ${cache}`;
  return `within about ${seconds + KV_PROPAGATION_S} s: ${cache}, and KV takes up to ${KV_PROPAGATION_S} s to carry the change to its other locations`;
}

async function list(flags: KeyListFlags): Promise<void> {
  const words = { command: 'key list', nothingDone: 'no keys listed' };
  if (flags.tenant !== undefined && (flags.tenant.length === 0 || flags.tenant.length > 256)) throw new CliError('key list: --tenant must be 1 to 256 characters, as a key record names it');
  const target = kvTargetOf(flags, words);
  const all = await withKvStore(target, words.command, readKeyEntries);
  const entries = flags.tenant === undefined ? all : all.filter((entry) => entry.tenant === flags.tenant);
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(entries, null, 2)}\n`);
    return;
  }
  const of = flags.tenant === undefined ? '' : ` of tenant ${JSON.stringify(flags.tenant)}`;
  const where = describeTarget(target);
  if (entries.length === 0) process.stdout.write(`no key records${of} in ${where}\n`);
  else process.stdout.write(`${keyTable(entries)}\n${entries.length} key record${entries.length === 1 ? '' : 's'}${of} in ${where}\n`);
  // Keys the edge knows from elsewhere: the operator would look for them here.
  process.stdout.write('(the key itself is not stored: a record is named by its SHA-256; the dev key and SSSD_API_KEYS\' keys are not in KV, so not listed)\n');
}

async function revoke(prefixGiven: string, flags: KeyRevokeFlags): Promise<void> {
  const command = flags.delete ? 'key revoke --delete' : 'key revoke';
  const prefix = parseHashPrefix(prefixGiven, 'key revoke');
  const target = kvTargetOf(flags, { command: 'key revoke', nothingDone: 'nothing revoked' });
  const where = describeTarget(target);
  const { key, change } = await withKvStore(target, command, async (store) => {
    const key = await findKeyRecord(store, prefix, where, 'key revoke');
    if (flags.delete) {
      await deleteKeyRecord(store, key);
      return { key, change: 'deleted' } as const;
    }
    return { key, change: await disableKeyRecord(store, key, command) };
  });
  if (change === 'deleted') process.stdout.write(`deleted ${key.name} in ${where}\n`);
  else if (change === 'unchanged') {
    process.stdout.write(`${key.name} in ${where} is revoked already ("disabled": true); nothing written\n`);
    return;
  } else {
    process.stdout.write(`revoked ${key.name} in ${where}: its record now says "disabled": true, its other fields and metadata kept (\`sssd key restore ${key.name.slice('key:'.length, 'key:'.length + 12)}${sameTarget(flags)}\` undoes it)\n`);
  }
  process.stdout.write(
    `edges refuse the key (401 invalid_api_key) ${noticeWithin(target, DEFAULT_KEY_LOOKUP_CACHE.hitMs, `each edge isolate keeps a key it looked up for ${DEFAULT_KEY_LOOKUP_CACHE.hitMs / 1000} s (hitMs in edge/key-lookup-cache.ts)`)}. Requests already running, background responses included, go on to their end; the key's stored data stays until \`sssd kv erase\` erases it\n`,
  );
}

async function restore(prefixGiven: string, flags: KvTargetFlags): Promise<void> {
  const command = 'key restore';
  const prefix = parseHashPrefix(prefixGiven, command);
  const target = kvTargetOf(flags, { command, nothingDone: 'nothing restored' });
  const where = describeTarget(target);
  const { key, change, refusedWhy } = await withKvStore(target, command, async (store) => {
    const found = await findKeyRecord(store, prefix, where, command);
    return { key: found, ...(await enableKeyRecord(store, found, command)) };
  });
  if (change === 'unchanged') process.stdout.write(`${key.name} in ${where} is not revoked; nothing written\n`);
  else process.stdout.write(`restored ${key.name} in ${where}: "disabled" taken off its record, its other fields and metadata kept\n`);
  if (refusedWhy !== null) {
    // Restoring cannot serve a record the edge refuses for another field: said, with exit 1.
    throw new CliError(`key restore: the edge still refuses the key: its record is invalid (${refusedWhy}); fix it with \`wrangler kv key put\``, 1);
  }
  if (change === 'changed') {
    process.stdout.write(`edges serve the key again ${noticeWithin(target, DEFAULT_KEY_LOOKUP_CACHE.missMs, `each edge isolate remembers a key it found refused for ${DEFAULT_KEY_LOOKUP_CACHE.missMs / 1000} s (missMs in edge/key-lookup-cache.ts)`)}\n`);
  }
}

/** Adds list, revoke and restore to `sssd key`. */
export function registerKeyRecordCommands(key: Command): void {
  withKvTargetOptions(
    key
      .command('list')
      .description("list the key records in the edge's KV namespace: each one's hash (the first 12 hex digits; the key itself is not stored), tenant, data scope, limits, state (active, disabled, or refused by the edge, and why) and creation time where `sssd key create` recorded it"),
  )
    .option('--tenant <name>', 'only the keys of this tenant (as the edge names it: a key without one is a tenant of its own, the first 12 hex digits of its hash)')
    .option('--json', 'print the records as a JSON list (each with its whole hash and its KV metadata)')
    .action(list);
  withKvTargetOptions(
    key
      .command('revoke')
      .argument('<hash-prefix>', 'the key\'s SHA-256, or its first 6 or more hex digits, as `sssd key list` prints it (`key:` before it is allowed)')
      .description(
        `revoke a key: its record is read and written back with "disabled": true, its other fields and its metadata kept (\`sssd key restore\` undoes it); edges refuse the key within ${DEFAULT_KEY_LOOKUP_CACHE.hitMs / 1000} s (their lookup cache), plus up to ${KV_PROPAGATION_S} s of KV propagation for the deployed namespace; requests already running, background responses included, go on to their end (cancel those that must stop first: the revoked key cannot). A prefix that names no record, or several, is refused (exit 2)`,
      ),
  )
    .option('--delete', "delete the record instead (its metadata with it, so `sssd kv erase --tenant` no longer finds the key's data: erase that first); for a record that is not JSON, which cannot be written back")
    .action(revoke);
  withKvTargetOptions(
    key
      .command('restore')
      .argument('<hash-prefix>', 'the key\'s SHA-256, or its first 6 or more hex digits')
      .description(`undo \`sssd key revoke\`: "disabled" is taken off the record, its other fields and metadata kept; edges serve the key again within ${DEFAULT_KEY_LOOKUP_CACHE.missMs / 1000} s, plus KV's propagation for the deployed namespace`),
  ).action(restore);
}
