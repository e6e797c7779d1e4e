/**
 * `sssd kv erase --scope <hash> | --tenant <name>`: erases a key's or a tenant's stored data (review h150). The edge names each record (stored
 * responses and their events and stop marks, conversations, stored chat completions and their index, users'
 * caches) by a hash of the key's data scope and the record's id, so no name ties a record to its key, and only chat
 * completions can be listed through the API; each record carries its data scope in its KV metadata instead
 * (edge/kv-record.ts). This lists the namespace (edge-kv.ts: through wrangler, or the local store opened in this
 * process), keeps the records whose metadata names the scope, and deletes them. A tenant's scopes are found by its key
 * records' metadata, which `sssd key create` writes. Key records (`key:<hash>`) are left: revoking is `sssd key`'s
 * business. Records written before their metadata named a scope are not found; they go with their TTL.
 */
import type { Command } from 'commander';
import { CliError } from '../gpu-pool/cli/cli-error';
import { describeTarget, kvTargetOf, withKvStore, withKvTargetOptions, type KvStore, type ListedKey } from './edge-kv';

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

/** The data scope a record's KV metadata names, or null (a key record, a record from before scopes were written). */
function scopeOf(metadata: unknown): string | null {
  if (metadata === null || typeof metadata !== 'object' || !('scope' in metadata)) return null;
  return typeof metadata.scope === 'string' ? metadata.scope.toLowerCase() : null;
}

/** What `sssd key create` writes as a key record's metadata (launcher/key-command.ts): its tenant and data scope. */
function keyMetadataOf(metadata: unknown): { tenant: string; scope: string } | null {
  if (metadata === null || typeof metadata !== 'object' || !('tenant' in metadata) || !('scope' in metadata)) return null;
  const { tenant, scope } = metadata;
  return typeof tenant === 'string' && typeof scope === 'string' && /^[0-9a-fA-F]{24}$/.test(scope) ? { tenant, scope: scope.toLowerCase() } : null;
}

/**
 * The data scopes of tenant `tenant`'s keys among `keys`, by their key records' metadata, and how many key records
 * carry none (written by hand, or by `sssd key create` before it wrote metadata): their tenants are not known here.
 */
export function scopesOfTenant(keys: readonly ListedKey[], tenant: string): { keys: string[]; scopes: string[]; unlabelled: number } {
  const found: string[] = [];
  const scopes = new Set<string>();
  let unlabelled = 0;
  for (const key of keys) {
    if (!key.name.startsWith('key:')) continue;
    const metadata = keyMetadataOf(key.metadata);
    if (metadata === null) unlabelled++;
    else if (metadata.tenant === tenant) {
      found.push(key.name);
      scopes.add(metadata.scope);
    }
  }
  return { keys: found, scopes: [...scopes], unlabelled };
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
}

/** The data scopes to erase: `--scope`'s, or those of `--tenant`'s keys, said as they are found. */
function scopesToErase(flags: KvEraseFlags, listed: readonly ListedKey[]): string[] {
  if (flags.scope !== undefined) return [parseScope(flags.scope)];
  const tenant = flags.tenant as string;
  const { keys, scopes, unlabelled } = scopesOfTenant(listed, tenant);
  process.stdout.write(`found ${keys.length} key${keys.length === 1 ? '' : 's'} of tenant ${JSON.stringify(tenant)}${scopes.length > 0 ? `, data scope${scopes.length === 1 ? '' : 's'} ${scopes.join(', ')}` : ''}\n`);
  if (unlabelled > 0) {
    // A key record without metadata may be this tenant's too: only reading it says (one read a key).
    process.stdout.write(`(${unlabelled} key record${unlabelled === 1 ? '' : 's'} carr${unlabelled === 1 ? 'ies' : 'y'} no metadata: written by hand, or by \`sssd key create\` before it wrote metadata; read ${unlabelled === 1 ? 'it' : 'them'} with \`wrangler kv key get\`, and erase ${unlabelled === 1 ? 'its' : 'their'} data with --scope)\n`);
  }
  return scopes;
}

/** Erases what the flags name from `store` (`where` in words), saying what it found and did. */
async function eraseIn(store: KvStore, where: string, flags: KvEraseFlags): Promise<void> {
  const listed = await store.list();
  const scopes = scopesToErase(flags, listed);
  const names = scopes.flatMap((scope) => recordsOf(listed, scope));
  const of = scopes.length === 1 ? `data scope ${scopes[0]}` : `${scopes.length} data scopes`;
  process.stdout.write(`found ${names.length} record${names.length === 1 ? '' : 's'} of ${of} in ${where}${names.length > 0 ? `: ${byKind(names)}` : ''}\n`);
  if (names.length === 0) {
    // The likeliest mistake: the hash of a key made with --data-of, whose records are under the scope it names.
    if (flags.scope !== undefined) process.stdout.write('(a key made with --data-of stores under the scope of the key it names: pass that hash; records written before scopes were recorded are not found, and go with their TTL)\n');
    return;
  }
  if (flags.dryRun) {
    for (const name of names) process.stdout.write(`${name}\n`);
    process.stdout.write('dry run: nothing deleted\n');
    return;
  }
  await store.delete(names);
  process.stdout.write(`deleted ${names.length} record${names.length === 1 ? '' : 's'}\n`);
}

export function register(program: Command): void {
  const kv = program.command('kv').description("the edge's KV namespace (SSSD_KV): the deployed one through wrangler, or wrangler dev's local store (--local)");
  const erase = kv
    .command('erase')
    .description("erase every stored record of a key's data scope, or of a tenant's keys (responses, conversations, stored chat completions, users' caches); key records stay (`sssd key` revokes)")
    .option('--scope <hash>', "the data scope: the key's SHA-256 (or its first 24 hex digits, or `key:<hash>`); for a key made with --data-of, the hash it names, whose data it shares")
    .option('--tenant <name>', 'every data scope of the tenant\'s keys, as `sssd key create` labelled their records (a key with no --tenant is its own tenant, the first 12 hex digits of its hash)');
  withKvTargetOptions(erase)
    .option('--dry-run', 'print the records found, delete nothing')
    .action(async (flags: KvEraseFlags) => {
      if ((flags.scope === undefined) === (flags.tenant === undefined)) throw new CliError('kv erase: give --scope <hash> or --tenant <name> (one of them)');
      if (flags.tenant !== undefined && (flags.tenant.length === 0 || flags.tenant.length > 256)) throw new CliError('kv erase: --tenant must be 1 to 256 characters, as a key record names it');
      // Checked before the store is opened: a mistyped hash is said at once.
      if (flags.scope !== undefined) parseScope(flags.scope);
      const target = kvTargetOf(flags, ERASE);
      await withKvStore(target, ERASE.command, (store) => eraseIn(store, describeTarget(target), flags));
    });
}
