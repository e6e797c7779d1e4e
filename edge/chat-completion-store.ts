/**
 * Stored chat completions (chat's `store: true`) in KV, scoped to the API
 * key as stored responses are (kv-record.ts), under the same TTL
 * (SSSD_RESPONSE_TTL_DAYS) and bound (SSSD_RESPONSE_MAX_BYTES).
 *
 * One record per completion: the chat.completion as answered, its metadata
 * and the request's messages. Listing reads an index by KV list: two small
 * entries per completion under a prefix of the key's own (hashed), one
 * named in ascending order of `created`, one in descending, each carrying in
 * its KV metadata the completion's id and hashes of its model and metadata
 * pairs, so a filtered list skips the others without reading them. KV has
 * no "list from this name", so a page after `after` reads the index from
 * its start (one list call per 1,000 entries), then the page's records.
 * KV's list is eventually consistent: a completion just stored may be
 * missing from a list for up to a minute, one just deleted listed no more
 * (its record is read, and is gone). A deleted one's entries stay an hour,
 * marked gone, as the place a page `after` it goes on from.
 */
import { ApiError, badRequest } from './api-error';
import { sha256Hex } from './api-keys';
import { MIN_KV_TTL_SECONDS, onceMore, readKvText, scopedKey, scopeMetadata, storeUnavailable, utf8Length, withinBytes, type ScopeMetadata } from './kv-record';
import { keyOrderOf, withKeyOrder } from './ordered-json';
import type { ListPage, PageParams } from './page-params';
import { clipped, type ChatMessage } from './request-schema';
import type { StorageMeter } from './storage-meter';

/** A request message as stored and listed: with its id. */
export type StoredChatMessage = ChatMessage & { id: string };

export interface StoredChatCompletion {
  id: string;
  created: number;
  model: string;
  /** The chat.completion as its client was answered (a stream's: what its chunks added up to). */
  completion: object;
  metadata: Record<string, string>;
  /** The request's messages, in the order given. */
  messages: StoredChatMessage[];
  /** The record was over SSSD_RESPONSE_MAX_BYTES with its messages: the completion alone was kept. */
  messagesNotKept?: true;
  /** When it expires (seconds since the epoch; null: never): an update keeps it. */
  expiresAt: number | null;
  /** When it was first stored (ms since the epoch), which orders completions of one `created` second (put sets it). */
  storedAtMs?: number;
  /**
   * Each `prompt_logprobs` position's key order as answered (vLLM's: the prompt token first, then by rank), null where
   * JSON.parse gives it back as it is: token ids are integer-like keys, which it lists ascending (ordered-json.ts).
   * Absent where no position needs one. put sets it; a read gives the positions their order back.
   */
  promptLogprobsOrder?: Array<string[] | null>;
}

/** A list's filters and paging (chat-completion-query.ts checks them). */
export interface ListQuery extends PageParams {
  model: string | null;
  metadata: Record<string, string>;
}

/** An index entry's KV metadata (well under KV's 1,024 bytes: 16 pairs at most), its data scope with it (kv-record.ts). */
interface IndexEntry extends ScopeMetadata {
  id: string;
  /** Hash of the model's name. */
  m: string;
  /** Hashes of its metadata pairs. */
  h: string[];
  /** Deleted: kept a while as a place a page `after` it goes on from (a loop that deletes what it lists), never listed. */
  gone?: 1;
}

/**
 * How long a deleted completion's index entries and its deletion mark stay:
 * a list `after` it goes on from its place (the SDK's list-and-delete loop
 * asks for the page after the one it just deleted), and an update racing the
 * delete finds the mark and takes its write back.
 */
const GONE_TTL_SECONDS = 3_600;

/** KV list's most names a call. */
const LIST_BATCH = 1000;
/**
 * Characters of records a list page reads at most (past its first record):
 * a page of 100 records of megabytes each, read whole, grew the isolate by
 * hundreds of MB (review h151; Workers give one 128 MB). The page then ends
 * early, with has_more, and the client's next page (`after` its last id)
 * goes on from there.
 */
export const LIST_READ_CHARS = 8 * 1024 * 1024;
/** Bytes of records a list reads at once at most, by their bound (maxBytes): what is in flight, whatever they weigh (review h153). */
const LIST_IN_FLIGHT_BYTES = 32 * 1024 * 1024;
/** ... and records, where they are small. */
const LIST_READ_AT_ONCE = 16;
/** Digits of `created` in an index name (seconds; good past the year 30,000). */
const CREATED_DIGITS = 12;
const CREATED_MAX = 10 ** CREATED_DIGITS - 1;
/** Digits of the store time (ms) after it: completions of one second in the order they were stored, not by their random ids (review h126, h127). */
const STORED_DIGITS = 15;
const STORED_MAX = 10 ** STORED_DIGITS - 1;

const UNAVAILABLE_CODE = 'chat_completion_store_unavailable';

function unavailable(what = ''): ApiError {
  return storeUnavailable(`The chat completion store is unavailable; retry shortly${what}.`, UNAVAILABLE_CODE);
}

/** A short hash for the index (a match is confirmed on the record, so a collision costs a read, never a wrong answer). */
async function shortHash(text: string): Promise<string> {
  return (await sha256Hex(text)).slice(0, 12);
}

function pairHash(key: string, value: string): Promise<string> {
  return shortHash(JSON.stringify([key, value]));
}

/** The id with each printable ASCII character mirrored: names sort in the reverse of the ids' order. */
function mirrored(id: string): string {
  let out = '';
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    out += c >= 0x21 && c <= 0x7e ? String.fromCharCode(0x21 + 0x7e - c) : id[i];
  }
  return out;
}

/** The completion's `prompt_logprobs` positions, where it has them (null for the first token's and any other not scored). */
function promptPositions(completion: object): unknown[] | null {
  const positions = (completion as { prompt_logprobs?: unknown }).prompt_logprobs;
  return Array.isArray(positions) ? positions : null;
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** The orders its positions were answered in that JSON would lose (StoredChatCompletion.promptLogprobsOrder); undefined where none would be lost. */
function promptLogprobsOrder(completion: object): Array<string[] | null> | undefined {
  const positions = promptPositions(completion);
  if (positions === null) return undefined;
  const orders = positions.map((position) => {
    if (!isRecord(position)) return null;
    const order = keyOrderOf(position);
    const parsed = Object.keys(position);
    return order === undefined || order.every((key, i) => parsed[i] === key) ? null : [...order];
  });
  return orders.some((order) => order !== null) ? orders : undefined;
}

/** `record` with its completion's prompt_logprobs positions in the order stored beside them (a record from JSON.parse). */
function withPromptLogprobsOrder(record: StoredChatCompletion): StoredChatCompletion {
  const positions = promptPositions(record.completion);
  record.promptLogprobsOrder?.forEach((order, i) => {
    const position = positions?.[i];
    // A stored order names the position's keys, each once: one that does not (an edited record) is left as parsed.
    if (order === null || !isRecord(position) || order.length !== Object.keys(position).length || !order.every((key) => Object.hasOwn(position, key))) return;
    withKeyOrder(position, order);
  });
  return record;
}

/** The completion as retrieved and listed: the chat.completion with its metadata (written with jsonText: its prompt_logprobs keep their order). */
export function completionObject(record: StoredChatCompletion): object {
  return { ...record.completion, metadata: record.metadata };
}

/** OpenAI's 404 for a stored chat completion not found (never stored, another key's, expired, deleted). */
export function chatCompletionNotFound(id: string): ApiError {
  return new ApiError(404, `Chat completion with id '${clipped(id, 200)}' not found.`, 'invalid_request_error', 'not_found', null);
}

function matches(record: StoredChatCompletion, query: ListQuery): boolean {
  if (query.model !== null && record.model !== query.model) return false;
  return Object.entries(query.metadata).every(([key, value]) => Object.hasOwn(record.metadata, key) && record.metadata[key] === value);
}

/** A failure passed on as it came (the caller says what it was). */
const rethrown = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

export class ChatCompletionStore {
  constructor(
    private readonly kv: KVNamespace,
    /** The data scope whose completions these are (KeyRecord.dataScope): hashed into each name, and its records' KV metadata. */
    private readonly keyId: string,
    /** Seconds a stored completion stays (0: for good). */
    private readonly ttlSeconds: number,
    /** A value over this many bytes (its JSON's UTF-8) is not stored. */
    private readonly maxBytes: number,
    /** Characters of records a list page reads at most (past its first). */
    private readonly listReadChars = LIST_READ_CHARS,
  ) {}

  private recordKey(id: string): Promise<string> {
    return scopedKey('chatcmpl', this.keyId, id);
  }

  /** Where a delete marks the id deleted (for GONE_TTL_SECONDS). */
  private goneKey(id: string): Promise<string> {
    return scopedKey('chatcmplgone', this.keyId, id);
  }

  /** The key's index names start so: another key's prefix hashes otherwise. */
  private async indexPrefix(order: 'asc' | 'desc'): Promise<string> {
    return `${await scopedKey('chatcmplidx', this.keyId, 'index')}:${order === 'asc' ? 'a' : 'd'}:`;
  }

  private async indexNames(record: StoredChatCompletion): Promise<[string, string]> {
    const created = Math.min(Math.max(0, Math.floor(record.created)), CREATED_MAX);
    const stored = Math.min(Math.max(0, Math.floor(record.storedAtMs ?? 0)), STORED_MAX);
    const digits = (n: number, width: number): string => String(n).padStart(width, '0');
    return [
      `${await this.indexPrefix('asc')}${digits(created, CREATED_DIGITS)}:${digits(stored, STORED_DIGITS)}:${record.id}`,
      `${await this.indexPrefix('desc')}${digits(CREATED_MAX - created, CREATED_DIGITS)}:${digits(STORED_MAX - stored, STORED_DIGITS)}:${mirrored(record.id)}`,
    ];
  }

  /** When a completion stored now expires. */
  expiresAt(nowMs = Date.now()): number | null {
    return this.ttlSeconds > 0 ? Math.floor(nowMs / 1000) + Math.max(MIN_KV_TTL_SECONDS, this.ttlSeconds) : null;
  }

  /** The record's JSON within SSSD_RESPONSE_MAX_BYTES: whole, else without its messages, else null. */
  private fitted(record: StoredChatCompletion): string | null {
    const whole = JSON.stringify(record);
    if (withinBytes(whole, this.maxBytes)) return whole;
    const alone = JSON.stringify({ ...record, messages: [], messagesNotKept: true });
    return withinBytes(alone, this.maxBytes) ? alone : null;
  }

  /** The record and its two index entries, written; the bytes of those entries' metadata. Throws where KV fails. */
  private async writeAll(record: StoredChatCompletion, value: string): Promise<number> {
    // Absolute, so an update leaves the expiry where the store set it (KV's least is 60 s ahead).
    const options = record.expiresAt === null ? {} : { expiration: Math.max(record.expiresAt, Math.floor(Date.now() / 1000) + MIN_KV_TTL_SECONDS) };
    const entry: IndexEntry = {
      scope: this.keyId,
      id: record.id,
      m: await shortHash(record.model),
      h: await Promise.all(Object.entries(record.metadata).map(([key, value]) => pairHash(key, value))),
    };
    const [asc, desc] = await this.indexNames(record);
    // The record first: an index entry without its record is skipped by a list, a record without its entries is not listed.
    await this.kv.put(await this.recordKey(record.id), value, { ...options, metadata: scopeMetadata(this.keyId) });
    await Promise.all([this.kv.put(asc, '', { ...options, metadata: entry }), this.kv.put(desc, '', { ...options, metadata: entry })]);
    return 2 * utf8Length(JSON.stringify(entry));
  }

  /**
   * Stores it (where it fits); whether it was. Never throws: the reply does not fail for it. `meter`: where what it
   * writes (the record and its index entries) is charged.
   */
  async put(given: StoredChatCompletion, meter?: StorageMeter): Promise<boolean> {
    const order = promptLogprobsOrder(given.completion);
    const record: StoredChatCompletion = { ...given, storedAtMs: given.storedAtMs ?? Date.now(), ...(order ? { promptLogprobsOrder: order } : {}) };
    const value = this.fitted(record);
    if (value === null) {
      console.warn(`edge: chat completion ${record.id} not stored: over SSSD_RESPONSE_MAX_BYTES (${this.maxBytes}) as UTF-8, even without its messages`);
      return false;
    }
    try {
      const indexBytes = await this.writeAll(record, value);
      meter?.wrote(`chatcmpl:${record.id}`, utf8Length(value) + indexBytes);
      return true;
    } catch (err) {
      console.error(`edge: chat completion ${record.id} not stored`, err);
      return false;
    }
  }

  /** The stored completion, or null (never stored, another key's, expired, deleted). Throws a 503 where KV fails. */
  async get(id: string): Promise<StoredChatCompletion | null> {
    return (await this.read(id)).record;
  }

  /** A record and the characters of its stored text (0 where there is none). */
  private async read(id: string): Promise<{ record: StoredChatCompletion | null; chars: number }> {
    const text = await readKvText(this.kv, await this.recordKey(id), 'stored chat completion', () => unavailable());
    if (text === null) return { record: null, chars: 0 };
    try {
      return { record: withPromptLogprobsOrder(JSON.parse(text) as StoredChatCompletion), chars: text.length };
    } catch {
      console.error(`edge: stored chat completion ${id} is not JSON; taken as missing`);
      return { record: null, chars: text.length };
    }
  }

  /**
   * Its metadata replaced (the only field that changes, as OpenAI's), its
   * expiry kept; null where it is not found. Throws a 503 where KV fails
   * (tried again once after KV's one write a second per key: a create just before).
   */
  async updateMetadata(id: string, metadata: Record<string, string>, found: (value: string) => void = () => undefined): Promise<StoredChatCompletion | null> {
    const record = await this.get(id);
    if (record === null) return null;
    const updated: StoredChatCompletion = { ...record, metadata };
    const value = this.fitted(updated);
    if (value === null) throw badRequest(`metadata: the completion with it is over the store's bound on a record (SSSD_RESPONSE_MAX_BYTES, ${this.maxBytes} bytes)`, 'metadata', 'invalid_value');
    // The caller's word once it is there, with the record's JSON to write (the key's storage budget takes its size:
    // a 404 stores nothing); it may throw.
    found(value);
    // A pair gone: its hash leaves the index entries too, as they are written again whole.
    return onceMore(
      async () => {
        await this.writeAll(updated, value);
        // A delete that came between the read and the write marked it first: the write is taken back (review h126: the
        // completion came back after a 200 delete), and the update is a 404 as one after the delete.
        if ((await this.kv.get(await this.goneKey(id))) !== null) {
          await this.remove(updated);
          return null;
        }
        return updated;
      },
      (err) => {
        console.error('edge: stored chat completion update failed', err);
        return unavailable(' (the metadata may not be updated yet)');
      },
    );
  }

  /**
   * Deletes it, marked deleted first (see GONE_TTL_SECONDS); whether it was there. Each write is tried once more
   * after KV's second (the key written a moment ago: a create or an update); a 503 where the mark or the record's
   * delete fails twice. Once the record is gone, the index entries' marks are the list's: a failure there is logged,
   * not the delete's (review h130: a 503 for a delete that had worked, then the SDK's retry a 404).
   */
  async delete(id: string): Promise<boolean> {
    const record = await this.get(id);
    if (record === null) return false;
    try {
      await onceMore(async () => this.kv.put(await this.goneKey(id), '1', { expirationTtl: GONE_TTL_SECONDS, metadata: scopeMetadata(this.keyId) }), rethrown);
      await onceMore(async () => this.kv.delete(await this.recordKey(id)), rethrown);
    } catch (err) {
      console.error('edge: stored chat completion delete failed', err);
      throw unavailable(' (the completion may not be deleted yet)');
    }
    await this.markIndexGone(record).catch((err: unknown) => console.error(`edge: stored chat completion ${id} deleted, its index entries not marked (a list reads its record, and skips it)`, err));
    return true;
  }

  /** The record deleted (an update's write taken back), its index entries marked gone. */
  private async remove(record: StoredChatCompletion): Promise<void> {
    await this.kv.delete(await this.recordKey(record.id));
    await this.markIndexGone(record);
  }

  /** Its index entries left as places (`gone`) for GONE_TTL_SECONDS. */
  private async markIndexGone(record: StoredChatCompletion): Promise<void> {
    const entry: IndexEntry = { scope: this.keyId, id: record.id, m: '', h: [], gone: 1 };
    await Promise.all((await this.indexNames(record)).map((name) => onceMore(() => this.kv.put(name, '', { expirationTtl: GONE_TTL_SECONDS, metadata: entry }), rethrown)));
  }

  /** One call of the index's list; a 503 where KV fails. */
  private async listIndex(prefix: string, cursor: string | undefined): Promise<KVNamespaceListResult<IndexEntry, string>> {
    try {
      return await this.kv.list<IndexEntry>({ prefix, limit: LIST_BATCH, ...(cursor ? { cursor } : {}) });
    } catch (err) {
      console.error('edge: stored chat completion list failed', err);
      throw unavailable();
    }
  }

  /**
   * A page of this key's stored completions in `created` order, filtered by
   * model and metadata pairs, after the completion `after` (a 400 naming it
   * where the index has no such completion of this key).
   */
  async list(query: ListQuery): Promise<ListPage<object>> {
    const prefix = await this.indexPrefix(query.order);
    const model = query.model === null ? null : await shortHash(query.model);
    const pairs = await Promise.all(Object.entries(query.metadata).map(([key, value]) => pairHash(key, value)));
    const page: StoredChatCompletion[] = [];
    let hasMore = false;
    let passedAfter = query.after === null;
    // Ids the index matched, their records not read yet: read a page's worth (and one more, for has_more) at a time,
    // LIST_READ_AT_ONCE together, until LIST_READ_CHARS were read.
    let waiting: string[] = [];
    let charsRead = 0;
    const readWaiting = async (): Promise<void> => {
      const atOnce = Math.max(1, Math.min(LIST_READ_AT_ONCE, Math.floor(LIST_IN_FLIGHT_BYTES / this.maxBytes)));
      for (let i = 0; i < waiting.length && !hasMore; i += atOnce) {
        const reads = await Promise.all(waiting.slice(i, i + atOnce).map((id) => this.read(id)));
        for (const { record, chars } of reads) {
          if (hasMore) break;
          // Gone since (deleted, expired), or a hash that matched by chance: on no page.
          if (record === null || !matches(record, query)) continue;
          // The page has what the budget allows: the rest is the next page's (after its last id).
          if (page.length > 0 && charsRead + chars > this.listReadChars) {
            hasMore = true;
            break;
          }
          charsRead += chars;
          if (page.length < query.limit) page.push(record);
          else hasMore = true;
        }
      }
      waiting = [];
    };
    let cursor: string | undefined;
    scan: do {
      const listed = await this.listIndex(prefix, cursor);
      for (const key of listed.keys) {
        const entry = key.metadata;
        if (!entry) continue;
        if (!passedAfter) {
          passedAfter = entry.id === query.after;
          continue;
        }
        if (entry.gone === 1) continue;
        if (model !== null && entry.m !== model) continue;
        if (!pairs.every((hash) => entry.h.includes(hash))) continue;
        waiting.push(entry.id);
        if (page.length + waiting.length > query.limit) {
          await readWaiting();
          if (hasMore) break scan;
        }
      }
      cursor = listed.list_complete ? undefined : listed.cursor;
    } while (cursor !== undefined);
    if (waiting.length > 0) await readWaiting();
    if (!passedAfter) throw badRequest(`after: no stored chat completion of this key has the id '${clipped(query.after ?? '', 100)}'`, 'after', 'invalid_value');
    return { object: 'list', data: page.map(completionObject), first_id: page[0]?.id ?? null, last_id: page.at(-1)?.id ?? null, has_more: hasMore };
  }
}
