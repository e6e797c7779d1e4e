/**
 * The edge's key records in KV (`key:<sha256>`), read and changed in a KvStore (edge-kv.ts) for `sssd key list`,
 * `revoke` and `restore`: the key itself is not stored, so a record is named by its hash (a prefix of it). Each record
 * is read as the edge reads it (edge/api-keys.ts's check), so the list says which keys the edge serves, and a
 * revocation writes the record back whole, its metadata kept, with `"disabled": true`.
 */
import { checkStoredKeyText, dataScopeOf } from '../edge/api-keys';
import { CliError } from '../gpu-pool/cli/cli-error';
import type { KvStore, ListedKey } from './edge-kv';

/** A key record as `sssd key list` shows it. */
export interface KeyEntry {
  /** Its name past `key:`: the key's SHA-256 (lower-case hex), or whatever a hand-written name holds. */
  hash: string;
  /** `active`: served; `disabled`: revoked; `refused`: the edge refuses its key (`refusedWhy`). */
  state: 'active' | 'disabled' | 'refused';
  refusedWhy: string | null;
  /** The tenant the edge gives it (the record's, else a tenant of its own), or its metadata's where the record is unreadable. */
  tenant: string | null;
  /** The data scope its requests store under (edge/api-keys.ts's dataScope): its own hash's, or that of the key it replaced. */
  scope: string | null;
  /** Null: the edge's default (SSSD_DEFAULT_RPM, SSSD_DEFAULT_CONCURRENCY). */
  rpm: number | null;
  concurrency: number | null;
  /** Null: the edge's default (SSSD_DEFAULT_STORAGE_MB_PER_DAY), MiB a day its data scope may store without a generation. */
  storageMbPerDay: number | null;
  contributeToDatastore: boolean;
  /** The hash of the key this one replaced (--data-of), whose data it shares. */
  dataOf: string | null;
  /** When `sssd key create` made it (its metadata's `created`), where recorded. */
  created: string | null;
  /** The KV metadata as stored (`sssd key create` writes {tenant, scope, created}); null where none: `kv erase --tenant` reads the value for its tenant. */
  metadata: unknown;
}

const SHA256 = /^[0-9a-f]{64}$/;

/** Its metadata's field `field` where it is a string. */
function metadataString(metadata: unknown, field: string): string | null {
  if (metadata === null || typeof metadata !== 'object' || !(field in metadata)) return null;
  const value = (metadata as Record<string, unknown>)[field];
  return typeof value === 'string' ? value : null;
}

/** A listed key record and its value as the edge reads them. */
export function keyEntry(listed: ListedKey, value: string): KeyEntry {
  const hash = listed.name.slice('key:'.length);
  const metadata = listed.metadata ?? null;
  const created = metadataString(metadata, 'created');
  const checked = checkStoredKeyText(value);
  // The edge lower-cases the hash of the key it is sent: a name in upper case, or no SHA-256 at all, matches no key.
  const badName = SHA256.test(hash) ? null : 'its name is not `key:` and a SHA-256 in lower-case hex, so no key is looked up under it';
  if (!checked.ok || badName !== null) {
    return {
      hash,
      state: 'refused',
      refusedWhy: badName ?? (checked.ok ? null : checked.why),
      tenant: metadataString(metadata, 'tenant'),
      scope: metadataString(metadata, 'scope'),
      rpm: null,
      concurrency: null,
      storageMbPerDay: null,
      contributeToDatastore: false,
      dataOf: null,
      created,
      metadata,
    };
  }
  const record = checked.stored;
  return {
    hash,
    state: record.disabled === true ? 'disabled' : 'active',
    refusedWhy: null,
    tenant: record.tenant ?? hash.slice(0, 12),
    scope: dataScopeOf(hash, record),
    rpm: record.rpm ?? null,
    concurrency: record.concurrency ?? null,
    storageMbPerDay: record.storageMbPerDay ?? null,
    contributeToDatastore: record.contributeToDatastore === true,
    dataOf: record.dataOf?.toLowerCase() ?? null,
    created,
    metadata,
  };
}

/** Every key record in the namespace, read (a list of the `key:` names, and their values). */
export async function readKeyEntries(store: KvStore): Promise<KeyEntry[]> {
  const listed = await store.list('key:');
  const values = await store.get(listed.map((key) => key.name));
  // A record deleted between the list and the get is gone: not listed.
  return listed.flatMap((key) => {
    const value = values.get(key.name);
    return value === null || value === undefined ? [] : [keyEntry(key, value)];
  });
}

/** A hash prefix as given (hex, 6 to 64 digits, `key:` before it allowed), lower-case. */
export function parseHashPrefix(given: string, command: string): string {
  const prefix = /^(?:key:)?([0-9a-fA-F]{6,64})$/.exec(given.trim());
  if (!prefix) throw new CliError(`${command}: name the key by its hash, or the first 6 or more hex digits of it, as \`sssd key list\` prints it (not the key itself, which is not stored)`);
  return prefix[1].toLowerCase();
}

/** The one key record whose hash starts with `prefix`, or a CliError (exit 2) naming the records it could be, or saying there is none. */
export async function findKeyRecord(store: KvStore, prefix: string, where: string, command: string): Promise<ListedKey> {
  const found = await store.list(`key:${prefix}`);
  if (found.length === 0) {
    throw new CliError(`${command}: no key record's hash starts with ${prefix} in ${where} (the dev key and SSSD_API_KEYS' keys are not in KV; \`sssd key list\` lists those that are)`);
  }
  if (found.length > 1) {
    const named = found.map((key) => `  ${key.name.slice('key:'.length, 'key:'.length + 16)}…  tenant ${JSON.stringify(metadataString(key.metadata, 'tenant') ?? '?')}`);
    throw new CliError(`${command}: ${found.length} key records' hashes start with ${prefix} in ${where}; give more of the hash:\n${named.join('\n')}`);
  }
  return found[0];
}

/** The record's value as a JSON object, to write back changed; a CliError where it is none (the edge refuses it already). */
async function recordObject(store: KvStore, key: ListedKey, command: string): Promise<Record<string, unknown>> {
  const value = (await store.get([key.name])).get(key.name);
  if (value === null || value === undefined) throw new CliError(`${command}: ${key.name} was deleted meanwhile`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    parsed = undefined;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new CliError(`${command}: ${key.name}'s record is not a JSON object, so it cannot be written back changed (the edge refuses its key already); --delete removes it`);
  }
  return parsed as Record<string, unknown>;
}

export type RecordChange = 'changed' | 'unchanged';

/** Sets `"disabled": true` on the record, every other field and its metadata kept. */
export async function disableKeyRecord(store: KvStore, key: ListedKey, command: string): Promise<RecordChange> {
  const record = await recordObject(store, key, command);
  if (record.disabled === true) return 'unchanged';
  await store.put(key.name, JSON.stringify({ ...record, disabled: true }), key.metadata);
  return 'changed';
}

/** Takes `disabled` off the record, every other field and its metadata kept; what the edge then makes of it (it may refuse it for another field). */
export async function enableKeyRecord(store: KvStore, key: ListedKey, command: string): Promise<{ change: RecordChange; refusedWhy: string | null }> {
  const record = await recordObject(store, key, command);
  const { disabled, ...rest } = record;
  const text = JSON.stringify(rest);
  const checked = checkStoredKeyText(text);
  const refusedWhy = checked.ok ? null : checked.why;
  if (disabled === undefined || disabled === false) return { change: 'unchanged', refusedWhy };
  await store.put(key.name, text, key.metadata);
  return { change: 'changed', refusedWhy };
}

/** Deletes the record (its metadata with it: `sssd kv erase --tenant` no longer finds the key's data). */
export async function deleteKeyRecord(store: KvStore, key: ListedKey): Promise<void> {
  await store.delete([key.name]);
}
