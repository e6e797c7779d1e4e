/**
 * Stored responses (the Responses API's `store`, default true) in KV: the
 * Response object, the input items it was given, and the conversation it
 * ended (previous conversation, its input, its output), which a request
 * naming it as `previous_response_id` continues. One value per response,
 * under a hash of the key's id and the response's id: a key finds its own
 * responses only. Values expire (SSSD_RESPONSE_TTL_DAYS); one over
 * SSSD_RESPONSE_MAX_BYTES keeps the response alone, without its input items
 * and conversation (a conversation stored cut would continue as another
 * one): a chain from it is refused by name. A write that fails is logged, never the
 * reply's failure.
 */
import { ApiError } from './api-error';
import { KEY_WRITE_INTERVAL_MS, MIN_KV_TTL_SECONDS, readKvText, recordPutOptions, scopedKey, scopeMetadata, storeUnavailable, utf8Length, withinBytes } from './kv-record';
import { sleep } from './settled-within';
import { clipped, type ChatMessage } from './request-schema';
import type { ResponseObject } from './responses-format';
import type { InputItem } from './responses-request';
import type { Reproduction } from './reproduction';
import type { StorageMeter } from './storage-meter';

/** An input item as stored and listed: with its id. */
export type StoredInputItem = InputItem & { id: string };

export interface StoredResponse {
  response: ResponseObject;
  /** This response's input items (not the previous ones'), in the order given. */
  inputItems: StoredInputItem[];
  /** The conversation it ended, as chat messages (no instructions: they are not carried over). */
  conversation: ChatMessage[];
  /** The call_ids of the function calls in that conversation: a function_call_output after it answers one of them. */
  callIds: string[];
  /** The ids of every item of that conversation, its chain's before it included: one sent again is a duplicate. Absent in records from before. */
  itemIds?: string[];
  /**
   * The record was over SSSD_RESPONSE_MAX_BYTES: the response alone was kept
   * (retrieved, its output items referenced), its input items and
   * conversation left out, so a chain from it is refused by name rather than
   * "not found".
   */
  conversationNotKept?: true;
  /** A background response stored queued: when its run ends at the latest (ms since the epoch; background-response.ts). */
  runsUntil?: number;
  /**
   * A background response stored queued: its run's heartbeat (background-response.ts) comes at least this often
   * (ms), and `aliveAt` is its first (this record's write). Absent in records from before heartbeats: those are
   * taken for lost at runsUntil's cutoff only.
   */
  aliveEveryMs?: number;
  aliveAt?: number;
  /** The Cloudflare location (colo) its run is in, where known: a reader there sees its heartbeat at once. */
  ranAt?: string;
  /** A background response created with `stream: true`: its events are kept (writeEvents), and it can be streamed again. */
  eventLog?: true;
  /** Its fingerprint and seed, as its client was told them (reproduction.ts): a read gets them too. Absent in records from before. */
  reproduction?: Reproduction;
}

/** What a background response's queued record says of its run (background-response.ts). */
export type RunningRecord = Required<Pick<StoredResponse, 'runsUntil' | 'aliveEveryMs' | 'aliveAt'>> & Pick<StoredResponse, 'ranAt'>;

/** A background stream's events as kept (background-stream.ts): frame i is the SSE frame of the event of sequence_number i. */
export interface StoredEvents {
  frames: string[];
  /** The run wrote its last event. */
  ended: boolean;
  /** The frames after these were over SSSD_RESPONSE_MAX_BYTES and are not kept. */
  cut: boolean;
  /** When the run wrote them (its heartbeat: background-response.ts); null in values from before. */
  aliveAt: number | null;
}

/** How a write went: stored, refused for SSSD_RESPONSE_MAX_BYTES, or KV failed. */
export type PutOutcome = 'stored' | 'too_large' | 'unavailable';

/** Characters of stored responses one request may still parse. */
export interface ReadBudget {
  chars: number;
}

/** A read past a request's ReadBudget. */
export class ReadBudgetSpent extends Error {}

/** A stop request outlives any background run (they are bounded well under this). */
const STOP_TTL_SECONDS = 3_600;

/** The most the line before a background stream's kept events takes ({"ended":false,"cut":false,"aliveAt":<13 digits>}). */
const EVENTS_HEADER_BYTES = 64;

// Where the background runs read it from, beside the store they write.
export { KEY_WRITE_INTERVAL_MS };

/**
 * Why a background run is asked to stop: a cancel (stored `cancelled`), a delete (stored no more), or a reader
 * that took it for lost, its heartbeat not seen for too long (stored `failed`, as readers showed it since).
 */
export type BackgroundStop = 'lost' | 'cancel' | 'delete';
/** A stop asked is not asked again as a weaker one: a delete is more than a cancel, a cancel (the client's) more than a lost run's verdict. */
const STOP_RANK: Record<BackgroundStop, number> = { lost: 1, cancel: 2, delete: 3 };

export class ResponseStore {
  constructor(
    private readonly kv: KVNamespace,
    /** The data scope whose responses these are (KeyRecord.dataScope): hashed into each name, and its records' KV metadata. */
    readonly keyId: string,
    /** Seconds a stored response stays (0: for good). */
    private readonly ttlSeconds: number,
    /** A value over this many bytes (its JSON's UTF-8) is not stored. */
    private readonly maxBytes: number,
    /** The Cloudflare location (colo) of the request using this store, where known: a background run started here runs here. */
    readonly location: string | null = null,
    /** Where the request that writes through this store (a generation's) is charged what it writes; null: nothing is. */
    private readonly meter: StorageMeter | null = null,
  ) {}

  /** The KV key of a response of this API key: no other key's id hashes to it. */
  async keyFor(id: string): Promise<string> {
    return scopedKey('resp', this.keyId, id);
  }

  /**
   * The stored response, or null (never stored, another key's, expired, deleted). Throws a 503 where KV fails.
   * `budget`: the characters a request may still parse, taken from as it reads; a value past it is not parsed
   * (ReadBudgetSpent), as parsing runs on the isolate's one thread.
   */
  async get(id: string, budget?: ReadBudget): Promise<StoredResponse | null> {
    const text = await this.readText(await this.keyFor(id), 'stored response');
    if (text === null) return null;
    if (budget) {
      if (text.length > budget.chars) throw new ReadBudgetSpent();
      budget.chars -= text.length;
    }
    try {
      return JSON.parse(text) as StoredResponse;
    } catch {
      console.error(`edge: stored response ${id} is not JSON; taken as missing`);
      return null;
    }
  }

  /** A value as text, or null; a 503 where KV fails (`what` for the log). */
  private readText(key: string, what: string): Promise<string | null> {
    return readKvText(this.kv, key, what, () => storeUnavailable('The response store is unavailable; retry shortly.', 'response_store_unavailable'));
  }

  /** Stores it (where it fits); whether it was. Never throws: the reply does not fail for it. */
  async put(record: StoredResponse): Promise<boolean> {
    return (await this.write(record)) === 'stored';
  }

  /** Stores it (where it fits), and says how that went. Never throws. */
  async write(record: StoredResponse): Promise<PutOutcome> {
    let value = JSON.stringify(record);
    if (!withinBytes(value, this.maxBytes)) {
      // The response alone, where it fits: retrieved and its output referenced still, a chain from it refused by name.
      const alone: StoredResponse = {
        response: record.response,
        inputItems: [],
        conversation: [],
        callIds: [],
        conversationNotKept: true,
        ...(record.runsUntil !== undefined ? { runsUntil: record.runsUntil } : {}),
        ...(record.aliveEveryMs !== undefined ? { aliveEveryMs: record.aliveEveryMs, aliveAt: record.aliveAt } : {}),
        ...(record.ranAt !== undefined ? { ranAt: record.ranAt } : {}),
        ...(record.eventLog ? { eventLog: true as const } : {}),
        ...(record.reproduction ? { reproduction: record.reproduction } : {}),
      };
      value = JSON.stringify(alone);
      if (!withinBytes(value, this.maxBytes)) {
        console.warn(`edge: response ${record.response.id} not stored: over SSSD_RESPONSE_MAX_BYTES (${this.maxBytes}) as UTF-8, even alone`);
        return 'too_large';
      }
      console.warn(`edge: response ${record.response.id} stored without its conversation: over SSSD_RESPONSE_MAX_BYTES (${this.maxBytes}) as UTF-8`);
    }
    try {
      await this.kv.put(await this.keyFor(record.response.id), value, recordPutOptions(this.keyId, this.ttlSeconds));
      this.meter?.wrote(`resp:${record.response.id}`, utf8Length(value));
      return 'stored';
    } catch (err) {
      console.error(`edge: response ${record.response.id} not stored`, err);
      return 'unavailable';
    }
  }

  /** The KV key of a background stream's events. */
  private async eventsKeyFor(id: string): Promise<string> {
    return scopedKey('respevents', this.keyId, id);
  }

  /**
   * Keeps a background stream's events so far: as many of `frames`, from the
   * first, as fit SSSD_RESPONSE_MAX_BYTES, in one value (a line saying
   * whether they ended and were cut, and when they were written: the run's
   * heartbeat, then the frames as sent). Never throws.
   */
  async writeEvents(id: string, frames: readonly string[], ended: boolean, aliveAt = Date.now()): Promise<PutOutcome> {
    let bytes = 0;
    let keptBytes = 0;
    let kept = 0;
    for (; kept < frames.length; kept++) {
      bytes += utf8Length(frames[kept]);
      if (bytes > this.maxBytes - EVENTS_HEADER_BYTES) break;
      keptBytes = bytes;
    }
    const cut = kept < frames.length;
    const value = `${JSON.stringify({ ended, cut, aliveAt })}\n${kept === frames.length ? frames.join('') : frames.slice(0, kept).join('')}`;
    try {
      await this.kv.put(await this.eventsKeyFor(id), value, recordPutOptions(this.keyId, this.ttlSeconds));
      // The frames' bytes, counted above, and the header line's at most.
      this.meter?.wrote(`respevents:${id}`, keptBytes + EVENTS_HEADER_BYTES);
      return cut ? 'too_large' : 'stored';
    } catch (err) {
      console.error(`edge: background stream ${id}'s events not stored`, err);
      return 'unavailable';
    }
  }

  /**
   * A background run's heartbeat where nothing else is written for it (one
   * made without `stream`): the line its kept events would start with, and
   * no events. It expires once no reader needs it (`expiresAt`, ms since the
   * epoch; KV's least is a minute). Never throws.
   */
  async writeHeartbeat(id: string, aliveAt: number, expiresAt: number): Promise<PutOutcome> {
    const expirationTtl = Math.max(MIN_KV_TTL_SECONDS, Math.ceil((expiresAt - Date.now()) / 1000));
    try {
      await this.kv.put(await this.eventsKeyFor(id), `${JSON.stringify({ ended: false, cut: false, aliveAt })}\n`, { expirationTtl, metadata: scopeMetadata(this.keyId) });
      return 'stored';
    } catch (err) {
      console.error(`edge: background response ${id}'s heartbeat not stored`, err);
      return 'unavailable';
    }
  }

  /** A background stream's events as kept, or null (none yet, or none ever). Throws a 503 where KV fails. */
  async readEvents(id: string): Promise<StoredEvents | null> {
    const text = await this.readText(await this.eventsKeyFor(id), 'background stream events');
    if (text === null) return null;
    const newline = text.indexOf('\n');
    const head = eventsHead(text.slice(0, newline));
    if (head === null) {
      console.error(`edge: background stream ${id}'s events are not readable; taken as none`);
      return null;
    }
    // A frame ends with a blank line, and its JSON has no raw newline in it.
    const frames = text.slice(newline + 1).split('\n\n');
    frames.pop();
    return { frames: frames.map((frame) => `${frame}\n\n`), ...head };
  }

  /**
   * A background run's last heartbeat as kept (writeEvents, writeHeartbeat): null where there is none, undefined
   * where KV failed (it cannot be told). Reads the value's first line only: kept events may be megabytes.
   */
  async lastHeartbeat(id: string): Promise<number | null | undefined> {
    let line = '';
    try {
      const stream = await this.kv.get(await this.eventsKeyFor(id), 'stream');
      if (stream === null) return null;
      const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (value !== undefined) line += value;
        const newline = line.indexOf('\n');
        if (newline >= 0 || done || line.length > EVENTS_HEADER_BYTES) {
          if (newline >= 0) line = line.slice(0, newline);
          break;
        }
      }
      await reader.cancel();
    } catch (err) {
      console.error(`edge: background response ${id}'s heartbeat read failed`, err);
      return undefined;
    }
    return eventsHead(line)?.aliveAt ?? null;
  }

  /** The KV key of a background response's cancel (or delete) request. */
  private async stopKeyFor(id: string): Promise<string> {
    return scopedKey('respstop', this.keyId, id);
  }

  /**
   * Asks the background run of response `id`, wherever it runs, to stop: it
   * reads this (background-response.ts), cancels its generation, and stores
   * the response `cancelled` (for `delete`, nothing; for `lost`, `failed`).
   * Throws a 503 where KV fails.
   */
  async requestStop(id: string, why: BackgroundStop): Promise<void> {
    const key = await this.stopKeyFor(id);
    // Asked as much already (a delete is more than a cancel): no second write, which KV refuses within the second.
    const asked = await this.stopRequested(id);
    if (asked !== null && STOP_RANK[asked] >= STOP_RANK[why]) return;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.kv.put(key, why, { expirationTtl: STOP_TTL_SECONDS, metadata: scopeMetadata(this.keyId) });
        return;
      } catch (err) {
        if (attempt >= 2) {
          console.error('edge: background response stop request failed', err);
          throw storeUnavailable(`The response store is unavailable; retry shortly (the response is not ${why === 'delete' ? 'deleted' : 'cancelled'} yet).`, 'response_store_unavailable');
        }
        // KV's one write a second per key (a cancel just before): once more after it.
        await sleep(KEY_WRITE_INTERVAL_MS);
      }
    }
  }

  /** Removes the record and its kept events (a background run's end written after its delete). Never throws. */
  async forget(id: string): Promise<void> {
    try {
      await this.kv.delete(await this.keyFor(id));
    } catch (err) {
      console.error(`edge: response ${id} could not be removed again after its delete`, err);
    }
    await this.forgetEvents(id);
  }

  /** Removes a background stream's kept events (its response deleted as it ran). Never throws. */
  async forgetEvents(id: string): Promise<void> {
    try {
      await this.kv.delete(await this.eventsKeyFor(id));
    } catch (err) {
      console.error(`edge: background stream ${id}'s events could not be removed after its delete`, err);
    }
  }

  /** What was asked of response `id`'s background run, if anything; null also where KV fails (the run goes on). */
  async stopRequested(id: string): Promise<BackgroundStop | null> {
    try {
      const why = await this.kv.get(await this.stopKeyFor(id), 'text');
      return why === 'lost' || why === 'cancel' || why === 'delete' ? why : null;
    } catch {
      return null;
    }
  }

  /** Deletes it; whether it was there. Throws a 503 where KV fails. */
  async delete(id: string): Promise<boolean> {
    const key = await this.keyFor(id);
    try {
      // Whether it is there, without reading it whole (a record may hold megabytes of conversation).
      const found = await this.kv.get(key, 'stream');
      if (found === null) return false;
      await found.cancel();
      // A background run of it, if one is still running (which this does not read), is told, or it would store its
      // end again after the delete.
      await this.requestStop(id, 'delete');
      await this.kv.delete(key);
      // Its events, where it streamed (a delete of a key that is not there is no error).
      await this.kv.delete(await this.eventsKeyFor(id));
    } catch (err) {
      console.error('edge: stored response delete failed', err);
      throw storeUnavailable('The response store is unavailable; retry shortly (the response may not be deleted yet).', 'response_store_unavailable');
    }
    return true;
  }
}

/** The line before a background stream's kept events, or null where it is not one. */
function eventsHead(line: string): Omit<StoredEvents, 'frames'> | null {
  let head: { ended?: unknown; cut?: unknown; aliveAt?: unknown };
  try {
    head = JSON.parse(line) as { ended?: unknown; cut?: unknown; aliveAt?: unknown };
  } catch {
    return null;
  }
  if (typeof head !== 'object' || head === null) return null;
  return { ended: head.ended === true, cut: head.cut === true, aliveAt: typeof head.aliveAt === 'number' && Number.isFinite(head.aliveAt) ? head.aliveAt : null };
}

/** OpenAI's 404 for a response not found (as `previous_response_id`, or by its path). */
export function responseNotFound(id: string, param: string | null): ApiError {
  const name = clipped(id, 200);
  return param === 'previous_response_id'
    ? new ApiError(404, `Previous response with id '${name}' not found.`, 'invalid_request_error', 'previous_response_not_found', param)
    : new ApiError(404, `Response with id '${name}' not found.`, 'invalid_request_error', 'not_found', param);
}
