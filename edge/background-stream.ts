/**
 * Background streams (the Responses API's `background: true` with `stream:
 * true`): the run writes its events (driveFormat) into an EventLog, which the request that
 * created it streams as they come (a client that leaves does not stop the
 * run), and which is kept in KV a second at a time (ResponseStore.writeEvents)
 * so that GET /v1/responses/{id}?stream=true&starting_after=N, from any
 * isolate, streams it again from event N + 1, following it to its end. In
 * the isolate that runs it, that stream follows the log itself, each event
 * as it comes, rather than KV's copy a second behind.
 */
import { ApiError, badRequest, toApiError } from './api-error';
import { lostAfterMs, polledResponse } from './background-response';
import type { CompletionRun } from './completion-run';
import { KEY_WRITE_INTERVAL_MS, type ResponseStore, type StoredEvents, type StoredResponse } from './response-store';
import { endEvents, eventFrame, type ResponsesStreamFormat } from './responses-stream';
import type { ResponseObject } from './responses-format';
import { sleep } from './settled-within';
import { sseHeaders, type SendFrame } from './sse-response';

/** A stream read again reads the kept events this often (a KV read each). */
export const RESUME_POLL_MS = 1_000;
/** A stream read again that finds the response ended, and its events not, waits this long for them before telling the end itself. */
const END_GRACE_MS = 3_000;
/** ... and reads the response's record, while nothing new comes, at most this often. */
const RECORD_CHECK_MS = 5_000;

const encoder = new TextEncoder();
const QUIET_COMMENT_TEXT = ': the response is running\n\n';
const QUIET_COMMENT = encoder.encode(QUIET_COMMENT_TEXT);

/**
 * The logs of the background streams this isolate runs, by key and response
 * id, from the first event until their end is kept (keepEvents): a stream
 * read again here follows the run as its creator does.
 */
const runningLogs = new Map<string, { log: EventLog; until: number }>();
const runningKey = (store: ResponseStore, id: string): string => `${store.keyId}\n${id}`;

/** A background run's events as it writes them: frame i is the event of sequence_number i. */
export class EventLog {
  readonly frames: string[] = [];
  ended = false;
  /** The response was deleted as it ran: its events are not to be kept. */
  deleted = false;
  private waiters: Array<() => void> = [];

  /** Appends one event's frame (a SendFrame). */
  readonly append = (frame: string): void => {
    this.frames.push(frame);
    this.wake();
  };

  /** The run wrote its last event. */
  end(): void {
    this.ended = true;
    this.wake();
  }

  /** Resolves once there are more than `count` frames, or the log ended, or `ms` passed. */
  async beyond(count: number, ms: number): Promise<void> {
    if (this.frames.length > count || this.ended) return;
    const timers: Array<ReturnType<typeof setTimeout>> = [];
    await new Promise<void>((resolve) => {
      this.waiters.push(resolve);
      timers.push(setTimeout(resolve, ms));
    });
    for (const timer of timers) clearTimeout(timer);
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/**
 * Runs the generation through `format`, its events to `send` (a log's
 * append; nothing for a background run without a stream): the format keeps
 * the response it ended with, completed or failed (`result`), whose end the
 * run tells once stored (announce). `opening`: the generation's opening,
 * which a run answered before its first token waits for here, its first
 * events sent meanwhile; what opening throws then fails the response.
 */
export async function driveFormat(run: CompletionRun, opening: Promise<void>, format: ResponsesStreamFormat, send: SendFrame, requestId: string): Promise<void> {
  const generator = run.run();
  try {
    format.begin(send);
    await opening;
    for (;;) {
      const next = await generator.next();
      if (next.done) {
        format.finished(0, next.value, send);
        await format.ended([next.value.usage], send);
        return;
      }
      format.piece(0, next.value, send);
    }
  } catch (err) {
    run.cancel();
    await format.failed(toApiError(err, requestId), send);
  } finally {
    await generator.return(undefined as never).catch(() => undefined);
  }
}

/**
 * Keeps `log` in KV as it grows, a write at most every KEY_WRITE_INTERVAL_MS
 * (KV's one a second per key), until it has kept the log's end. Each write
 * carries the time it was made, the run's heartbeat (background-response.ts):
 * where no event came for `aliveEveryMs`, what was kept is written again
 * for it. Never throws.
 */
export async function keepEvents(log: EventLog, store: ResponseStore, id: string, runsUntil = Infinity, aliveEveryMs = Infinity): Promise<void> {
  const running = runningKey(store, id);
  // Followed here no later than its run may last: a run whose waitUntil the runtime cut never comes to this
  // function's end, and its log would be followed, never ending, for the isolate's life (review h153).
  const entry = { log, until: runsUntil };
  const now = Date.now();
  for (const [key, other] of runningLogs) if (other.until < now) runningLogs.delete(key);
  runningLogs.set(running, entry);
  try {
    await keepEventsInKv(log, store, id, aliveEveryMs);
  } finally {
    if (runningLogs.get(running) === entry) runningLogs.delete(running);
  }
}

async function keepEventsInKv(log: EventLog, store: ResponseStore, id: string, aliveEveryMs: number): Promise<void> {
  let kept = -1;
  let keptEnd = false;
  let lastWrite = 0;
  let failures = 0;
  while (!keptEnd) {
    // Woken by an event, or when its heartbeat is due.
    await log.beyond(kept, Math.min(60_000, lastWrite + aliveEveryMs - Date.now()));
    if (log.deleted) break;
    await sleep(lastWrite + KEY_WRITE_INTERVAL_MS - Date.now());
    if (log.deleted) break;
    const count = log.frames.length;
    const ended = log.ended;
    if (count === kept && !ended && Date.now() - lastWrite < aliveEveryMs) continue;
    lastWrite = Date.now();
    const outcome = await store.writeEvents(id, log.frames.slice(0, count), ended, lastWrite);
    if (outcome === 'unavailable') {
      // Tried again at the next second; a store that stays down leaves the stream read again short (its end told from the record).
      if (++failures >= 5 && ended) return;
      continue;
    }
    kept = count;
    keptEnd = ended;
  }
  // Deleted as it ran (review h121): what was kept goes, after this loop's last write, which the delete may have come before.
  if (log.deleted) await store.forgetEvents(id);
}

/**
 * The stream the creating request reads: the log's frames as they come,
 * from the first (or from frame `from`: one read again in the isolate that
 * runs it); a comment when it is quiet. A client that leaves stops reading,
 * never the run.
 */
export function liveEventStream(log: EventLog, headers: HeadersInit, quietCommentMs: number, from = 0, until = Infinity): Response {
  let sent = from;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      await log.beyond(sent, quietCommentMs);
      // Past the most its run may take, a log still open is one whose run the runtime cut: the stream ends (a client
      // that reads it again from there gets the stored response's end told).
      if (!log.ended && Date.now() > until && sent >= log.frames.length) {
        controller.close();
        return;
      }
      if (sent < log.frames.length) {
        const count = log.frames.length;
        controller.enqueue(encoder.encode(log.frames.slice(sent, count).join('')));
        sent = count;
      } else if (log.ended) controller.close();
      else controller.enqueue(QUIET_COMMENT);
    },
  });
  return new Response(body, { headers: { ...Object.fromEntries(new Headers(headers)), ...sseHeaders } });
}

/**
 * `starting_after` of a stream read again: the sequence number of the last
 * event the client has (-1: none; from the first). Digits only, given once.
 */
export function startingAfter(query: URLSearchParams): number {
  const given = query.getAll('starting_after');
  if (given.length === 0) return -1;
  if (given.length > 1) throw badRequest(`starting_after is given ${given.length} times; give it once`, 'starting_after', 'invalid_value');
  const text = given[0];
  if (!/^[0-9]{1,9}$/.test(text)) throw badRequest('starting_after must be the sequence_number of an event: an integer from 0', 'starting_after', 'invalid_value');
  return Number(text);
}

/**
 * A background stream read again: in the isolate that runs it, its log's
 * events after `after` as they come (liveEventStream); in any other, its
 * kept events after `after`, then, while it runs, the new ones as they are
 * kept (read every RESUME_POLL_MS), to its end. Where the response ended and
 * its events were not all kept (the store failed, or its run died), the end
 * is told from the stored response; where the run's heartbeat, which its
 * kept events carry, is older than lostAfterMs, from the response as a poll
 * shows it then (failed: its run was lost), at once.
 */
export function resumedEventStream(stored: StoredResponse, after: number, store: ResponseStore, quietCommentMs: number): Response {
  const id = stored.response.id;
  if (!stored.eventLog) {
    throw badRequest(
      `Response ${id} was not created with background: true and stream: true, and only those can be streamed again; retrieve it without stream${stored.response.background ? ' (and poll it while it is queued)' : ''}.`,
      'stream',
      'invalid_request_error',
    );
  }
  const key = runningKey(store, id);
  const running = runningLogs.get(key);
  if (running !== undefined && Date.now() <= running.until) return liveEventStream(running.log, {}, quietCommentMs, after + 1, running.until);
  if (running !== undefined) runningLogs.delete(key);
  let next = after + 1;
  let lastSent = Date.now();
  let endSeenAt: number | null = null;
  let recordCheckedAt = 0;
  // The run's heartbeat as last read, and how old it may get (null: a record from before heartbeats).
  let beat = stored.aliveAt ?? null;
  const lostAfter = lostAfterMs(stored, store.location);
  let first = true;
  let closed = false;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const send = (text: string): void => {
        controller.enqueue(encoder.encode(text));
        lastSent = Date.now();
      };
      if (!first) await sleep(RESUME_POLL_MS);
      first = false;
      for (;;) {
        if (closed) return;
        let events: StoredEvents | null;
        try {
          events = await store.readEvents(id);
        } catch (err) {
          const error = toApiError(err, id);
          send(eventFrame('error', next, { code: error.code, message: error.message, param: null }));
          controller.close();
          return;
        }
        const frames = events?.frames ?? [];
        if (events?.aliveAt != null) beat = Math.max(beat ?? 0, events.aliveAt);
        const came = next < frames.length;
        if (came) {
          send(frames.slice(next).join(''));
          next = frames.length;
        }
        if (events?.ended) {
          if (events.cut) {
            const message = "The rest of this response's events were over the store's bound on a record (SSSD_RESPONSE_MAX_BYTES) and were not kept; retrieve the response without stream for its end.";
            send(eventFrame('error', next, { code: 'server_error', message, param: null }));
          }
          controller.close();
          return;
        }
        if (came) return;
        // Nothing new: has the response ended without its events' end kept (a store that failed, a run that died)?
        // Read every RECORD_CHECK_MS only (a record may hold megabytes of conversation), but at once where the run's
        // heartbeat is past its bound: a poll would show it lost now.
        const beatLate = lostAfter !== null && beat !== null && Date.now() - beat > lostAfter;
        if (Date.now() - recordCheckedAt >= (beatLate ? RESUME_POLL_MS : RECORD_CHECK_MS)) {
          recordCheckedAt = Date.now();
          const ended = await endedResponse(store, id, beat, frames);
          if (ended === 'gone') {
            send(eventFrame('error', next, { code: 'not_found', message: `Response ${id} was deleted.`, param: null }));
            controller.close();
            return;
          }
          if (ended !== null) {
            endSeenAt ??= Date.now();
            // A run taken for lost writes nothing more: no grace for its events.
            if (!ended.stored || Date.now() - endSeenAt >= END_GRACE_MS) {
              send(endEvents(ended.response, next).join(''));
              controller.close();
              return;
            }
          }
        }
        if (Date.now() - lastSent >= quietCommentMs) {
          send(QUIET_COMMENT_TEXT);
          return;
        }
        await sleep(RESUME_POLL_MS);
      }
    },
    cancel() {
      closed = true;
    },
  });
  return new Response(body, { headers: sseHeaders });
}

/**
 * The response where it has ended, as a poll shows it (`stored`: its run stored that end, or stores it: a cancel asked;
 * otherwise a poll's verdict of a run lost, with the output of its kept events), 'gone' where it is no more, null while
 * it runs. `beat`: the run's heartbeat as last read; `frames`: its kept events as last read.
 */
async function endedResponse(store: ResponseStore, id: string, beat: number | null, frames: readonly string[]): Promise<{ response: ResponseObject; stored: boolean } | 'gone' | null> {
  let stored: StoredResponse | null;
  try {
    stored = await store.get(id);
  } catch (err) {
    if (err instanceof ApiError) return null;
    throw err;
  }
  if (stored === null) return 'gone';
  const response = await polledResponse(stored, store, Date.now(), beat, frames);
  if (response.status === 'queued' || response.status === 'in_progress') return null;
  // polledResponse gives a stored end as it is, and a verdict as a response of its own. A cancel's is one a live run
  // goes on to store, its events' end with it: waited for as a stored end's events are (a run lost too is told after).
  return { response, stored: response === stored.response || response.status === 'cancelled' };
}
