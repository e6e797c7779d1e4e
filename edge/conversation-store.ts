/**
 * OpenAI's Conversations API (`/v1/conversations`) in KV: a conversation is
 * its metadata and its items, in one value per conversation, scoped to the
 * API key as stored responses are (kv-record.ts), under their TTL
 * (SSSD_RESPONSE_TTL_DAYS, counted from its last write) and bound
 * (SSSD_RESPONSE_MAX_BYTES: a change that would pass it is a 400).
 *
 * Every change (items added or deleted, metadata, a response's turn) reads
 * the value, changes it and writes it whole. KV takes one write a second per
 * key: a change within KEY_WRITE_INTERVAL_MS of the last write waits it
 * out. Changes to one conversation from one isolate run one after the
 * other; KV has no compare-and-swap, so two isolates that change it at the
 * same moment each write what they read plus their own change, and the
 * later write wins: the earlier's change is lost (docs/edge.md says so).
 */
import { ApiError, badRequest } from './api-error';
import { bytesToHex } from './hex';
import { KEY_WRITE_INTERVAL_MS, onceMore, readKvText, recordPutOptions, scopedKey, storeUnavailable, withinBytes } from './kv-record';
import { clipped } from './request-schema';
import type { StoredInputItem } from './response-store';
import { sleep } from './settled-within';

export interface StoredConversation {
  id: string;
  /** Seconds since the epoch. */
  created_at: number;
  metadata: Record<string, string>;
  /** Its items, oldest first, each with its id. */
  items: StoredInputItem[];
  /** When it was last written (ms since the epoch): the next write waits for KV's second after it. */
  writtenAt: number;
  /** Items deleted in the last hour: where each was (the item before it), so a page `after` one goes on from there. */
  gone?: GoneItem[];
}

/** A deleted item's place: the id of the item before it (oldest first) when it was deleted, null where it was first. */
export interface GoneItem {
  id: string;
  before: string | null;
  /** When it was deleted (ms since the epoch). */
  at: number;
}

/** How long, and how many, deleted items' places are kept (the SDK's list-and-delete loop asks for the page after one it deleted). */
const GONE_KEPT_MS = 3_600_000;
const GONE_KEPT_MAX = 1_000;

/** The conversation without item `itemId` (null where it has none), its place kept among the `gone`. */
export function withoutItem(record: StoredConversation, itemId: string, now = Date.now()): StoredConversation | null {
  const at = record.items.findIndex((item) => item.id === itemId);
  if (at < 0) return null;
  const gone = (record.gone ?? []).filter((g) => now - g.at < GONE_KEPT_MS).slice(-(GONE_KEPT_MAX - 1));
  gone.push({ id: itemId, before: at > 0 ? record.items[at - 1].id : null, at: now });
  return { ...record, items: record.items.filter((item) => item.id !== itemId), gone };
}

/**
 * The items a page `after` an item deleted lately starts from, oldest first: for `asc`, those after its place; for
 * `desc`, those up to it. Null where `after` is no item deleted lately either.
 */
export function itemsAfterGone(record: StoredConversation, after: string, order: 'asc' | 'desc'): StoredInputItem[] | null {
  const gone = new Map((record.gone ?? []).map((g) => [g.id, g.before]));
  if (!gone.has(after)) return null;
  // Its place: the nearest item before it still there (those before it may have gone too).
  let before = gone.get(after) ?? null;
  for (let hops = 0; before !== null && gone.has(before) && hops <= gone.size; hops++) before = gone.get(before) ?? null;
  const at = before === null ? -1 : record.items.findIndex((item) => item.id === before);
  return order === 'asc' ? record.items.slice(at + 1) : record.items.slice(0, at + 1);
}

/** The conversation as retrieved, created and updated. */
export interface ConversationObject {
  id: string;
  object: 'conversation';
  created_at: number;
  metadata: Record<string, string>;
}

export const CONVERSATION_UNAVAILABLE_CODE = 'conversation_store_unavailable';

function unavailable(what = ''): ApiError {
  return storeUnavailable(`The conversation store is unavailable; retry shortly${what}.`, CONVERSATION_UNAVAILABLE_CODE);
}

/** OpenAI's 404 for a conversation not this key's (never made, another key's, expired, deleted). */
export function conversationNotFound(id: string, param: string | null = null): ApiError {
  return new ApiError(404, `Conversation with id '${clipped(id, 200)}' not found.`, 'invalid_request_error', 'not_found', param);
}

/** OpenAI's 404 for an item not in the conversation. */
export function conversationItemNotFound(id: string): ApiError {
  return new ApiError(404, `Item with id '${clipped(id, 200)}' not found.`, 'invalid_request_error', 'not_found', null);
}

export function conversationObject(record: StoredConversation): ConversationObject {
  return { id: record.id, object: 'conversation', created_at: record.created_at, metadata: record.metadata };
}

function randomHex(bytes: number): string {
  return bytesToHex(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** A new conversation's id: `conv_` and 48 hex digits, as OpenAI's. */
export function conversationId(): string {
  return `conv_${randomHex(24)}`;
}

/**
 * The changes of this isolate to each conversation (by KV key), chained: one
 * reads what the one before wrote, rather than both reading the same value
 * and the later write dropping the earlier's change.
 */
const inFlight = new Map<string, Promise<unknown>>();

/** What a change makes of a conversation (it may throw: an item not there, a duplicate). */
export type ConversationEdit = (record: StoredConversation) => StoredConversation;

export class ConversationStore {
  constructor(
    private readonly kv: KVNamespace,
    private readonly keyId: string,
    /** Seconds a conversation stays after its last write (0: for good). */
    private readonly ttlSeconds: number,
    /** A conversation over this many bytes (its JSON's UTF-8) is refused. */
    private readonly maxBytes: number,
  ) {}

  keyFor(id: string): Promise<string> {
    return scopedKey('conv', this.keyId, id);
  }

  /** Its place in this isolate's queue of work on one conversation: named at once, so work runs in the order asked (the KV key's hash came back in any order). */
  private turnOf(id: string): string {
    return JSON.stringify([this.keyId, id]);
  }

  /** The conversation, or null (not this key's, expired, deleted). Throws a 503 where KV fails. */
  async get(id: string): Promise<StoredConversation | null> {
    return this.read(await this.keyFor(id), id);
  }

  private async read(key: string, id: string): Promise<StoredConversation | null> {
    const text = await readKvText(this.kv, key, 'conversation', () => unavailable());
    if (text === null) return null;
    try {
      return JSON.parse(text) as StoredConversation;
    } catch {
      console.error(`edge: conversation ${id} is not JSON; taken as missing`);
      return null;
    }
  }

  /** The 400 (naming `param`) for a change that would take the conversation past the bound. */
  private overBound(param: string): ApiError {
    return badRequest(`The conversation would be over this server's bound on one (SSSD_RESPONSE_MAX_BYTES, ${this.maxBytes} bytes); delete items from it, or start a new one.`, param, 'invalid_value');
  }

  /** The JSON of a conversation to write, or the 400 (naming `param`) where it is over the bound. */
  private valueOf(record: object, param: string): string {
    const value = JSON.stringify(record);
    if (!withinBytes(value, this.maxBytes)) throw this.overBound(param);
    return value;
  }

  /**
   * The 400 where a response's `input` would take the conversation past the bound, before it runs: naming `input`
   * where the input is over it alone (in a conversation of nothing else), so no conversation could take it; naming
   * `conversation` only where its items make the difference (it blamed the conversation for an input too large).
   */
  refuseTurnOver(record: StoredConversation, input: readonly object[]): void {
    if (withinBytes(JSON.stringify({ ...record, items: [...record.items, ...input] }), this.maxBytes)) return;
    const alone: StoredConversation = { id: record.id, created_at: record.created_at, metadata: {}, items: [], writtenAt: record.writtenAt };
    if (!withinBytes(JSON.stringify({ ...alone, items: input }), this.maxBytes)) {
      throw badRequest(`input is too large for a conversation: its items alone are over this server's bound on one (SSSD_RESPONSE_MAX_BYTES, ${this.maxBytes} bytes); send less input.`, 'input', 'invalid_value');
    }
    throw this.overBound('conversation');
  }

  /** Writes it, once more after KV's second where the first write is refused (a write of the key elsewhere); a 503 else. */
  private async put(key: string, value: string, what: string): Promise<void> {
    await onceMore(
      () => this.kv.put(key, value, recordPutOptions(this.keyId, this.ttlSeconds)),
      (err) => {
        console.error(`edge: conversation write failed`, err);
        return unavailable(what);
      },
    );
  }

  /** A new conversation of these items and metadata; a 400 naming `items` where it is over the bound, a 503 where KV fails. */
  async create(items: StoredInputItem[], metadata: Record<string, string>, now = Date.now()): Promise<StoredConversation> {
    const record: StoredConversation = { id: conversationId(), created_at: Math.floor(now / 1000), metadata, items, writtenAt: now };
    await this.put(await this.keyFor(record.id), this.valueOf(record, 'items'), ' (the conversation is not created)');
    return record;
  }

  /**
   * Reads the conversation, changes it (`edit`) and writes it, after the
   * change before it from this isolate and KV's second after its last write.
   * The conversation as written, or null where there is none. Throws `edit`'s errors, a 400 naming `param` where
   * the change would pass the bound, a 503 where KV fails.
   */
  async change(id: string, edit: ConversationEdit, param: string): Promise<StoredConversation | null> {
    return inTurn(this.turnOf(id), async () => {
      const key = await this.keyFor(id);
      const record = await this.read(key, id);
      if (record === null) return null;
      const changed = edit(record);
      await sleep(record.writtenAt + KEY_WRITE_INTERVAL_MS - Date.now());
      const written: StoredConversation = { ...changed, writtenAt: Date.now() };
      // Stringified once (a conversation may be megabytes): checked against the bound after the wait, as written.
      await this.put(key, this.valueOf(written, param), ' (the conversation is not changed)');
      return written;
    });
  }

  /**
   * Deletes it, in its turn after the changes before it from this isolate (one that read it before the delete
   * cannot write it back after: review h130), once more after KV's second where KV refuses; whether it was there.
   * Throws a 503 where KV fails twice.
   */
  async delete(id: string): Promise<boolean> {
    return inTurn(this.turnOf(id), async () => {
      const key = await this.keyFor(id);
      return onceMore(
        async () => {
          // Whether it is there, without parsing it.
          const found = await this.kv.get(key, 'stream');
          if (found === null) return false;
          await found.cancel();
          await this.kv.delete(key);
          return true;
        },
        (err) => {
          console.error('edge: conversation delete failed', err);
          return unavailable(' (the conversation may not be deleted yet)');
        },
      );
    });
  }
}

/** Runs `work` on a conversation's key after the work queued before it in this isolate (changes and deletes). */
async function inTurn<T>(key: string, work: () => Promise<T>): Promise<T> {
  const before = inFlight.get(key) ?? Promise.resolve();
  const run = before.catch(() => undefined).then(work);
  inFlight.set(key, run);
  try {
    return await run;
  } finally {
    // The last of the key clears its entry: the map holds only conversations being worked on.
    if (inFlight.get(key) === run) inFlight.delete(key);
  }
}
