/**
 * `sssd kv erase --scope <hash> | --tenant <name>`: erases a key's or a tenant's stored data (review h150). The edge names each record (stored
 * responses and their events and stop marks, conversations, stored chat completions and their index, users'
 * caches) by a hash of the key's data scope and the record's id, so no name ties a record to its key, and only chat
 * completions can be listed through the API; each record carries its data scope in its KV metadata instead
 * (edge/kv-record.ts). This lists the namespace (edge-kv.ts: through wrangler, or the local store opened in this
 * process), keeps the records whose metadata names the scope, and deletes them. A tenant's scopes are found by its key
 * records' metadata, which `sssd key create` writes. Key records (`key:<hash>`) are left: revoking is `sssd key`'s
 * business. Key records without metadata (made before `sssd key create` wrote it) are read for their tenant. Records an
 * older edge wrote without a scope in their metadata are found where their names or the ids in their values tie them to
 * the scope (unscoped-records.ts); those left are counted and said, never silently (review h238).
 */
import type { Command } from 'commander';
import { CliError } from '../gpu-pool/cli/cli-error';
import { describeTarget, kvTargetOf, withKvStore, withKvTargetOptions, type KvStore, type ListedKey } from './edge-kv';
import { keyEntry } from './key-records';
import { MAX_UNSCOPED_READS, scopeOf, unscopedRecordsOf } from './unscoped-records';

/** A data scope's length: KeyRecord.dataScope is the first 24 hex digits of a key's SHA-256 (edge/api-keys.ts). */
const SCOPE_DIGITS = 24;
/** What erase calls itself in its errors, and says when refused before the store is opened. */
const ERASE = { command: 'kv erase', nothingDone: 'nothing erased' } as const;

/** `--scope` as given: a key's SHA-256, its first 24 hex digits, or `key:<hash>`; its data scope, lower-case. */
export function parseScope(given: string): string {
  const hash = /^(?:key:)?([0-9a-fA-F]{64}|[0-9a-fA-F]{24})$/.exec(given.trim());
  if (!hash) throw new CliError("kv erase: --scope must be a key's SHA-256 (64 hex digits, or its first 24), as its `key:<hash>` entry names it");
  return hash[1].slice(0, SCOPE_DIGITS).toLowerCase();
}

/** What `sssd key create` writes as a key record's metadata (launcher/key-command.ts): its tenant and data scope. */
function keyMetadataOf(metadata: unknown): { tenant: string; scope: string } | null {
  if (metadata === null || typeof metadata !== 'object' || !('tenant' in metadata) || !('scope' in metadata)) return null;
  const { tenant, scope } = metadata;
  return typeof tenant === 'string' && typeof scope === 'string' && /^[0-9a-fA-F]{24}$/.test(scope) ? { tenant, scope: scope.toLowerCase() } : null;
}

/**
 * The data scopes of tenant `tenant`'s keys among `keys`, by their key records' metadata, and the key records that
 * carry none (written by hand, or by `sssd key create` before it wrote metadata): their tenants are in their values.
 */
export function scopesOfTenant(keys: readonly ListedKey[], tenant: string): { keys: string[]; scopes: string[]; unlabelled: ListedKey[] } {
  const found: string[] = [];
  const scopes = new Set<string>();
  const unlabelled: ListedKey[] = [];
  for (const key of keys) {
    if (!key.name.startsWith('key:')) continue;
    const metadata = keyMetadataOf(key.metadata);
    if (metadata === null) unlabelled.push(key);
    else if (metadata.tenant === tenant) {
      found.push(key.name);
      scopes.add(metadata.scope);
    }
  }
  return { keys: found, scopes: [...scopes], unlabelled };
}

/**
 * The key records among `unlabelled` (without metadata) whose values, read as `sssd key list` and the edge read them,
 * name tenant `tenant`, with their data scopes; and those whose tenant no value says (not a key record the edge
 * serves: no JSON, or a name that is no SHA-256; deleted since the list).
 */
export async function readTenantKeys(store: KvStore, unlabelled: readonly ListedKey[], tenant: string): Promise<{ keys: string[]; scopes: string[]; unreadable: string[] }> {
  const values = unlabelled.length > 0 ? await store.get(unlabelled.map((key) => key.name)) : new Map<string, string | null>();
  const keys: string[] = [];
  const scopes: string[] = [];
  const unreadable: string[] = [];
  for (const key of unlabelled) {
    const value = values.get(key.name);
    const entry = value === null || value === undefined ? null : keyEntry(key, value);
    if (entry === null || entry.tenant === null || entry.scope === null) unreadable.push(key.name);
    else if (entry.tenant === tenant) {
      keys.push(key.name);
      scopes.push(entry.scope);
    }
  }
  return { keys, scopes, unreadable };
}

/** The names of data scope `scope`'s records among `keys`: key records are never among them. */
export function recordsOf(keys: readonly ListedKey[], scope: string): string[] {
  return keys.filter((key) => !key.name.startsWith('key:') && scopeOf(key.metadata) === scope).map((key) => key.name);
}

/** How many of `names` are of each kind (the part before the first ':'): what the operator is shown. */
function byKind(names: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const name of names) {
    const kind = name.slice(0, name.indexOf(':') + 1) || name;
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return [...counts].map(([kind, n]) => `${kind} ${n}`).join(', ');
}

interface KvEraseFlags {
  scope?: string;
  tenant?: string;
  local?: boolean;
  persistTo?: string;
  dryRun?: boolean;
  user: string[];
}

/** The data scopes to erase: `--scope`'s, or those of `--tenant`'s keys, said as they are found. */
async function scopesToErase(store: KvStore, flags: KvEraseFlags, listed: readonly ListedKey[]): Promise<string[]> {
  if (flags.scope !== undefined) return [parseScope(flags.scope)];
  const tenant = flags.tenant as string;
  const labelled = scopesOfTenant(listed, tenant);
  // A key record without metadata may be this tenant's too: its value says (one read a key, as `sssd key list` reads it).
  const read = await readTenantKeys(store, labelled.unlabelled, tenant);
  const keys = [...labelled.keys, ...read.keys];
  const scopes = [...new Set([...labelled.scopes, ...read.scopes])];
  process.stdout.write(`found ${keys.length} key${plural(keys.length)} of tenant ${JSON.stringify(tenant)}${scopes.length > 0 ? `, data scope${plural(scopes.length)} ${scopes.join(', ')}` : ''}\n`);
  const unlabelled = labelled.unlabelled.length;
  if (unlabelled > 0) {
    process.stdout.write(`(${unlabelled} key record${plural(unlabelled)} carr${unlabelled === 1 ? 'ies' : 'y'} no metadata (written by hand, or by \`sssd key create\` before it wrote metadata): read for ${unlabelled === 1 ? 'its' : 'their'} tenant, ${read.keys.length} of them ${JSON.stringify(tenant)}'s)\n`);
  }
  if (read.unreadable.length > 0) {
    const which = `${read.unreadable.length} key record${plural(read.unreadable.length)} without metadata (${read.unreadable.join(', ')}) name${read.unreadable.length === 1 ? 's' : ''} no tenant the edge reads (no key record it serves; \`sssd key list\` says why)`;
    // Nothing found while some key's tenant is not known: the operator may be missing this tenant's data.
    if (keys.length === 0) throw new CliError(`kv erase: no key of tenant ${JSON.stringify(tenant)} found, and ${which}; erase a key's data with --scope; ${ERASE.nothingDone}`, 1);
    process.stdout.write(`(${which}: their data is not erased here; erase it with --scope)\n`);
  }
  return scopes;
}

function plural(n: number): string {
  return n === 1 ? '' : 's';
}

/** Erases what the flags name from `store` (`where` in words), saying what it found and did. */
async function eraseIn(store: KvStore, where: string, flags: KvEraseFlags): Promise<void> {
  const listed = await store.list();
  const scopes = await scopesToErase(store, flags, listed);
  const scoped = scopes.flatMap((scope) => recordsOf(listed, scope));
  const of = scopes.length === 1 ? `data scope ${scopes[0]}` : `${scopes.length} data scopes`;
  process.stdout.write(`found ${scoped.length} record${plural(scoped.length)} of ${of} in ${where}${scoped.length > 0 ? `: ${byKind(scoped)}` : ''}\n`);
  const unscoped = await unscopedRecordsOf(store, listed, scopes, flags.user);
  if (unscoped.found.length > 0 || unscoped.reads > 0) {
    process.stdout.write(
      `found ${unscoped.found.length} more record${plural(unscoped.found.length)} of ${of} without scope metadata (written by an edge from before 2026-12-07 04:40), by their names and the ids in ${unscoped.reads} value${plural(unscoped.reads)} read${unscoped.found.length > 0 ? `: ${byKind(unscoped.found)}` : ''}\n`,
    );
  }
  if (unscoped.left.length > 0) {
    // Said every time: such records may be this scope's (a user's cache is named by its user, which only a stored response may name).
    process.stdout.write(
      `(${unscoped.left.length} other record${plural(unscoped.left.length)} in the store carr${unscoped.left.length === 1 ? 'ies' : 'y'} no scope metadata and ${unscoped.left.length === 1 ? 'is' : 'are'} NOT erased: ${byKind(unscoped.left)}; ` +
        `${unscoped.unread > 0 ? `${unscoped.unread} of them not read (past ${MAX_UNSCOPED_READS} reads an erase); ` : ''}` +
        "no name or id read ties them to the scopes erased here: another key's, or this scope's users' caches whose user no stored response names (--user NAME erases those of the users named), or kept events and stop marks whose response is gone. " +
        'Today\'s edge labels a record when it writes it again; the rest go with their TTL (docs/deploy.md, "Rolling back")\n',
    );
  }
  const names = [...scoped, ...unscoped.found];
  if (names.length === 0) {
    // The likeliest mistake: the hash of a key made with --data-of, whose records are under the scope it names.
    if (flags.scope !== undefined) process.stdout.write('(a key made with --data-of stores under the scope of the key it names: pass that hash)\n');
    return;
  }
  if (flags.dryRun) {
    for (const name of names) process.stdout.write(`${name}\n`);
    process.stdout.write('dry run: nothing deleted\n');
    return;
  }
  await store.delete(names);
  process.stdout.write(`deleted ${names.length} record${plural(names.length)}\n`);
}

export function register(program: Command): void {
  const kv = program.command('kv').description("the edge's KV namespace (SSSD_KV): the deployed one through wrangler, or wrangler dev's local store (--local)");
  const erase = kv
    .command('erase')
    .description("erase every stored record of a key's data scope, or of a tenant's keys (responses, conversations, stored chat completions, users' caches); key records stay (`sssd key` revokes)")
    .option('--scope <hash>', "the data scope: the key's SHA-256 (or its first 24 hex digits, or `key:<hash>`); for a key made with --data-of, the hash it names, whose data it shares")
    .option('--tenant <name>', 'every data scope of the tenant\'s keys, by their records\' metadata (`sssd key create` writes it), else their values (one read a key record without it; a key with no tenant is its own tenant, the first 12 hex digits of its hash)');
  withKvTargetOptions(erase)
    .option('--dry-run', 'print the records found, delete nothing')
    .option('--user <name>', "a user (the requests' `user`) whose cache an edge from before 2026-12-07 04:40 stored without scope metadata: erased too, where no stored response names the user (repeatable)", (name: string, names: string[]) => [...names, name], [] as string[])
    .action(async (flags: KvEraseFlags) => {
      if ((flags.scope === undefined) === (flags.tenant === undefined)) throw new CliError('kv erase: give --scope <hash> or --tenant <name> (one of them)');
      if (flags.tenant !== undefined && (flags.tenant.length === 0 || flags.tenant.length > 256)) throw new CliError('kv erase: --tenant must be 1 to 256 characters, as a key record names it');
      // Checked before the store is opened: a mistyped hash is said at once.
      if (flags.scope !== undefined) parseScope(flags.scope);
      const target = kvTargetOf(flags, ERASE);
      await withKvStore(target, ERASE.command, (store) => eraseIn(store, describeTarget(target), flags));
    });
}
