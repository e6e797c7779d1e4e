/**
 * A data scope's records that carry no scope in their KV metadata, for `sssd kv erase`: edges from before 2026-12-07
 * 04:40 wrote every record without it, and so does such an edge rolled back to when it writes a record again; today's
 * edge adds it only when it writes a record again (review h238). No
 * name ties a record to its key, but every name is `prefix:sha256(scope:id)` (edge/kv-record.ts scopedKey), so a
 * record is the scope's where the name its id hashes to under the scope is its own: the chat index's names start with
 * a prefix of the scope and end with the chat's id, stored responses, conversations and chats hold their id in their
 * value (one read each), and a response's id names its kept events and stop mark, its user (or safety identifier)
 * that user's cache, as does a user the operator names. What no name or id read ties to a scope is left, and said.
 */
import { scopedKey } from '../edge/kv-record';
import { cacheScope, UserCacheStore } from '../edge/user-cache-store';
import type { KvStore, ListedKey } from './edge-kv';

/** The kinds whose value is read for the id it holds: a stored response's `response.id`, a conversation's and a chat's `id`. */
const READ_KINDS = ['resp', 'conv', 'chatcmpl'] as const;
type ReadKind = (typeof READ_KINDS)[number];

/** The most values one erase reads (a stored response is up to SSSD_RESPONSE_MAX_BYTES): past it, the rest are said unread. */
export const MAX_UNSCOPED_READS = 10_000;
/** Values read at once (a bulk get of KV's API takes 100). */
const READ_BATCH = 100;

/** What was found of the scopes among the records without scope metadata. */
export interface UnscopedFinding {
  /** Names of the scopes' records, found by name or by the id read. */
  found: string[];
  /** Values read for their ids. */
  reads: number;
  /** Records without scope metadata left: no scope's here, or not known to be (`unread` of them were not read, past MAX_UNSCOPED_READS). */
  left: string[];
  unread: number;
}

/** The record's kind: its name before the first ':'. */
function kindOf(name: string): string {
  return name.slice(0, name.indexOf(':'));
}

/** The data scope a record's KV metadata names, or null (a key record, a record from before scopes were written). */
export function scopeOf(metadata: unknown): string | null {
  if (metadata === null || typeof metadata !== 'object' || !('scope' in metadata)) return null;
  return typeof metadata.scope === 'string' ? metadata.scope.toLowerCase() : null;
}

/** A field of a parsed value, where it is a string. */
function stringAt(value: unknown, ...path: string[]): string | null {
  let at = value;
  for (const field of path) {
    if (at === null || typeof at !== 'object' || !(field in at)) return null;
    at = (at as Record<string, unknown>)[field];
  }
  return typeof at === 'string' ? at : null;
}

/** The id a record's value holds, by its kind; null where it is no JSON or holds none. */
function idIn(kind: ReadKind, text: string): { id: string; users: (string | null)[] } | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const id = kind === 'resp' ? stringAt(value, 'response', 'id') : stringAt(value, 'id');
  // The user whose cache a response's request drafted from: `user`, else `safety_identifier` (responses-request.ts).
  const users = kind === 'resp' ? [stringAt(value, 'response', 'user') ?? stringAt(value, 'response', 'safety_identifier')] : [];
  return id === null ? null : { id, users };
}

/**
 * The records of `scopes` among the non-key records of `listed` whose metadata names no scope: by the chat index's
 * names, then by the ids in the values of stored responses, conversations and chats (read from `store`), then by the
 * names those ids and responses' users (and `namedUsers`, each scope's) give the records beside them.
 */
export async function unscopedRecordsOf(store: KvStore, listed: readonly ListedKey[], scopes: readonly string[], namedUsers: readonly string[] = []): Promise<UnscopedFinding> {
  const unscoped = listed.filter((key) => !key.name.startsWith('key:') && scopeOf(key.metadata) === null).map((key) => key.name);
  const left = new Set(unscoped);
  const found = new Set<string>();
  const take = (name: string): void => {
    if (left.delete(name)) found.add(name);
  };
  // Per scope, the ids of its chats and responses and its users, as found.
  const chats = new Map<string, Set<string>>(scopes.map((scope) => [scope, new Set<string>()]));
  const responses = new Map<string, Set<string>>(scopes.map((scope) => [scope, new Set<string>()]));
  // Requests without a user draft from the cache of user '' (cacheScope): every scope may have it; and the users named.
  const users = new Map<string, Set<string | null>>(scopes.map((scope) => [scope, new Set<string | null>([null, ...namedUsers])]));

  // The chat index: `chatcmplidx:sha256(scope:index):a:<created>:<stored>:<id>` (and `:d:` with the id mirrored).
  for (const scope of scopes) {
    const prefix = `${await scopedKey('chatcmplidx', scope, 'index')}:`;
    for (const key of listed) {
      if (!key.name.startsWith(prefix)) continue;
      if (key.name.startsWith(`${prefix}a:`)) chats.get(scope)!.add(key.name.split(':').slice(5).join(':'));
      take(key.name);
    }
    for (const id of chats.get(scope)!) for (const kind of ['chatcmpl', 'chatcmplgone']) take(await scopedKey(kind, scope, id));
  }

  // Those found by name are not read again; with no scope to match, nothing is read.
  const toRead = scopes.length === 0 ? [] : [...left].filter((name) => (READ_KINDS as readonly string[]).includes(kindOf(name)));
  const reading = toRead.slice(0, MAX_UNSCOPED_READS);
  // A value read is the scope's where the id it holds hashes, under the scope, to its own name.
  const matchRead = async (name: string, text: string | null | undefined): Promise<void> => {
    const held = text === null || text === undefined ? null : idIn(kindOf(name) as ReadKind, text);
    if (held === null) return;
    for (const scope of scopes) {
      if ((await scopedKey(kindOf(name), scope, held.id)) !== name) continue;
      take(name);
      if (kindOf(name) === 'resp') {
        responses.get(scope)!.add(held.id);
        for (const user of held.users) users.get(scope)!.add(user);
      }
      if (kindOf(name) === 'chatcmpl') chats.get(scope)!.add(held.id);
    }
  };
  for (let at = 0; at < reading.length; at += READ_BATCH) {
    // A batch at a time: a stored response is up to SSSD_RESPONSE_MAX_BYTES, and none is kept past its batch.
    const batch = reading.slice(at, at + READ_BATCH);
    const values = await store.get(batch);
    for (const name of batch) await matchRead(name, values.get(name));
  }

  for (const scope of scopes) {
    for (const id of chats.get(scope)!) for (const kind of ['chatcmpl', 'chatcmplgone']) take(await scopedKey(kind, scope, id));
    for (const id of responses.get(scope)!) for (const kind of ['respevents', 'respstop']) take(await scopedKey(kind, scope, id));
    for (const user of users.get(scope)!) take(UserCacheStore.keyFor(await cacheScope(scope, user)));
  }
  return { found: [...found], reads: reading.length, left: [...left], unread: toRead.length - reading.length };
}
