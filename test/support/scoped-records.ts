/**
 * One record of every kind the edge stores for a key, written through the real stores into `kv`: a stored response,
 * its kept events and a stop mark, a background run's heartbeat, a conversation (created, then changed), a stored chat
 * completion with its index entries, a deleted one's mark, and a user's cache. What `sssd kv erase` must find by the data scope (review h150).
 */
import { expect } from 'vitest';
import { ChatCompletionStore } from '../../edge/chat-completion-store';
import { ConversationStore } from '../../edge/conversation-store';
import { ResponseStore } from '../../edge/response-store';
import { cacheScope, UserCacheStore } from '../../edge/user-cache-store';
import { storedRecord } from './stored-response';

/** The name prefixes (up to the first ':') of the records writeScopedRecords writes. */
export const RECORD_KINDS = ['chatcmpl', 'chatcmplgone', 'chatcmplidx', 'conv', 'resp', 'respevents', 'respstop', 'uc'] as const;

/** Writes one record of each kind for data scope `scope`, as a key of that scope's requests would; the names are read back by a list. */
export async function writeScopedRecords(kv: KVNamespace, scope: string): Promise<void> {
  const ttl = 3_600;
  const responses = new ResponseStore(kv, scope, ttl, 1 << 20);
  expect(await responses.put(storedRecord(`resp_${scope}`, 'Private text.'))).toBe(true);
  expect(await responses.writeEvents(`resp_${scope}`, ['data: {"type":"response.created"}\n\n'], true)).toBe('stored');
  // A background run made without stream keeps its heartbeat alone, under the same kind of name as kept events.
  // Kept for the records' hour: KV's shortest life (60 s) ran out before a loaded machine's erase read the list.
  expect(await responses.writeHeartbeat(`resp_${scope}-beat`, Date.now(), Date.now() + ttl * 1000)).toBe('stored');
  await responses.requestStop(`resp_${scope}`, 'cancel');

  const conversations = new ConversationStore(kv, scope, ttl, 1 << 20);
  const conversation = await conversations.create([{ role: 'user', content: 'Private text.', id: `msg_${scope}` }], { topic: 'x' });
  expect(await conversations.change(conversation.id, (record) => ({ ...record, metadata: { topic: 'y' } }), 'metadata')).not.toBeNull();

  const chats = new ChatCompletionStore(kv, scope, ttl, 1 << 20);
  for (const id of [`chatcmpl-${scope}-kept`, `chatcmpl-${scope}-gone`]) {
    const stored = await chats.put({ id, created: 1_000, model: 'm', completion: { id, object: 'chat.completion' }, metadata: { run: '1' }, messages: [{ role: 'user', content: 'Private text.', id: `${id}-0` }], expiresAt: chats.expiresAt() });
    expect(stored).toBe(true);
  }
  expect(await chats.delete(`chatcmpl-${scope}-gone`)).toBe(true);

  const caches = new UserCacheStore(kv, 1 << 16, undefined, undefined, ttl);
  const loaded = await caches.load(await cacheScope(scope, 'alice'), scope);
  await caches.saveMerged(loaded, [5, 6, 7, 5, 6, 7, 5, 6, 7]);
}

/**
 * Writes `names` back as an edge from before scope metadata (2026-12-07 04:40) wrote them: the same values and expiry,
 * no metadata, and the chat index's entries with theirs but its `scope` (review h238).
 */
export async function asWrittenBeforeScopes(kv: KVNamespace, names: readonly string[]): Promise<void> {
  const listed = new Map((await kv.list()).keys.map((key) => [key.name, key]));
  for (const name of names) {
    const key = listed.get(name);
    const value = await kv.get(name, 'arrayBuffer');
    if (key === undefined || value === null) throw new Error(`${name} is not in the store`);
    const { scope: _scope, ...rest } = (key.metadata ?? {}) as Record<string, unknown>;
    const metadata = name.startsWith('chatcmplidx:') ? { metadata: rest } : {};
    await kv.put(name, value, { ...(key.expiration !== undefined ? { expiration: key.expiration } : {}), ...metadata });
  }
}
