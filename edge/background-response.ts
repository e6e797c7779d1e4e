/**
 * Background responses (the Responses API's `background: true`): once its
 * generation is open at a pool, the response is stored `queued` and
 * answered at once; the generation runs on in the request's waitUntil, and
 * the finished response (completed, incomplete, failed or cancelled) then
 * takes the queued one's place in the store, where GET /v1/responses/{id}
 * polls it. A cancel or a delete, from whatever isolate takes it, reaches
 * the run through KV (ResponseStore.requestStop), which the run reads every
 * `stopPollMs`. A run is bounded by `deadlineMs` (Workers give waitUntil 30 s
 * after the response): past it, it is stopped and stored failed, and a poll
 * that finds a response still queued long after that says it failed.
 * Created with `stream: true`, the run writes its events into a log that
 * the request streams and KV keeps (background-stream.ts), and tells its
 * end there once it is stored.
 */
import { ApiError, badRequest, toApiError } from './api-error';
import type { PreparedReply } from './completion-handler';
import { failedResponse, responsesUsage, type OutputItem, type ResponseObject } from './responses-format';
import { DEFAULT_BACKGROUND_DEADLINE_S } from './edge-config';
import { sleep } from './settled-within';
import { keepEvents, liveEventStream, type EventLog } from './background-stream';
import type { ResponsesStreamFormat } from './responses-stream';
import { KEY_WRITE_INTERVAL_MS, type BackgroundStop, type PutOutcome, type ResponseStore, type StoredResponse } from './response-store';

export interface BackgroundOptions {
  waitUntil: (promise: Promise<unknown>) => void;
  /** The most a run may take, from its request (SSSD_BACKGROUND_DEADLINE_SECONDS). */
  deadlineMs: number;
  /** How often a run reads whether it was asked to stop. */
  stopPollMs: number;
}

/** A background response created with `stream: true`: the log its run writes its events into (driveFormat), in `format`'s frames. */
export interface BackgroundEvents {
  log: EventLog;
  format: ResponsesStreamFormat;
  /** The stream the request reads gets a comment after this long without an event. */
  quietCommentMs: number;
}

/** Stores a response of the request (`runsUntil`: on the queued one, when its run ends at the latest). */
export type SaveResponse = (response: ResponseObject, runsUntil?: number) => Promise<PutOutcome>;

/** A run reads its stop requests this often (each a KV read). */
export const BACKGROUND_STOP_POLL_MS = 1_000;
/** Tries of the finished response's write (a 429 from a write of the key elsewhere, a store that failed once). */
const FINAL_WRITE_TRIES = 3;
/** Past its deadline, this long for the run's own write before a poll takes a queued response for a run that died. */
const DIED_AFTER_DEADLINE_MS = 60_000;

/** Why a run stops early: a delete is more than a cancel, a cancel more than the deadline. */
type Stop = BackgroundStop | 'deadline';
const STOP_RANK: Record<Stop, number> = { deadline: 1, cancel: 2, delete: 3 };
const stronger = (a: Stop | null, b: Stop | null): Stop | null => (a === null ? b : b === null ? a : STOP_RANK[b] > STOP_RANK[a] ? b : a);

/**
 * The queued answer of a background request, its run carried on in
 * `options.waitUntil`. `finish` runs the generations to their end and makes
 * the response; `save` stores one.
 */
export async function answerInBackground(
  started: ResponseObject,
  reply: PreparedReply,
  finish: () => Promise<ResponseObject>,
  save: SaveResponse,
  store: ResponseStore,
  options: BackgroundOptions,
  events: BackgroundEvents | null = null,
): Promise<Response> {
  const begun = Date.now();
  // Opened first: a pool that refuses it (busy, a bad request) is the request's own error, as without background.
  await reply.opening;
  const queued: ResponseObject = { ...started, status: 'queued' };
  // A poll that comes before the end finds it queued; a response that cannot be stored could never be polled.
  const outcome = await save(queued, begun + options.deadlineMs);
  if (outcome !== 'stored') {
    for (const run of reply.runs) run.cancel();
    if (outcome === 'too_large') {
      throw badRequest('This response is over the store\'s bound on a record (SSSD_RESPONSE_MAX_BYTES) as it is queued, and a background response is polled from the store; send less input or metadata, or run it without background.', 'background', 'invalid_value');
    }
    throw new ApiError(503, 'The response store is unavailable, and a background response is polled from it; retry shortly.', 'service_unavailable', 'response_store_unavailable', null, 2);
  }
  const job: BackgroundJob = { started, reply, finish, save, store, options, begun, storedAt: Date.now() };
  if (events === null) {
    options.waitUntil(runToEnd(job, () => undefined));
    return new Response(JSON.stringify(queued), { headers: { ...Object.fromEntries(new Headers(reply.headers)), 'content-type': 'application/json' } });
  }
  const { log, format } = events;
  // The stream's end is told once stored (a client told `completed` finds it so); deleted, its stream says so, and
  // its kept events are removed (keepEvents).
  const told = (response: ResponseObject | null): void => {
    if (log.ended) return;
    if (response !== null) format.announce(response, log.append);
    else {
      format.gone(log.append);
      log.deleted = true;
    }
    log.end();
  };
  // Followed live in this isolate until a minute past its deadline at the latest, when a poll takes a run not ended as dead.
  options.waitUntil(keepEvents(log, store, started.id, begun + options.deadlineMs + DIED_AFTER_DEADLINE_MS));
  options.waitUntil(runToEnd(job, told).finally(() => log.end()));
  return liveEventStream(log, reply.headers, events.quietCommentMs);
}

/** A background run as answerInBackground hands it on: what it was given, when it began, when its queued record was stored. */
interface BackgroundJob {
  started: ResponseObject;
  reply: PreparedReply;
  finish: () => Promise<ResponseObject>;
  save: SaveResponse;
  store: ResponseStore;
  options: BackgroundOptions;
  begun: number;
  storedAt: number;
}

async function runToEnd({ started, reply, finish, save, store, options, begun, storedAt }: BackgroundJob, told: (response: ResponseObject | null) => void): Promise<void> {
  const asked: { stop: Stop | null } = { stop: null };
  // At its deadline, was it waiting for a pool to take it up again (its pool failed)? Then that is why it stopped.
  let poolLost = false;
  const halt = (why: Stop): void => {
    if (why === 'deadline' && asked.stop === null) poolLost = reply.runs.some((run) => run.waitingForPool);
    asked.stop = stronger(asked.stop, why);
    for (const run of reply.runs) run.cancel(why);
  };
  const poll = setInterval(() => {
    void store.stopRequested(started.id).then((why) => {
      if (why !== null) halt(why);
    });
  }, options.stopPollMs);
  const deadline = setTimeout(() => halt('deadline'), options.deadlineMs - (Date.now() - begun));
  let ended: ResponseObject;
  try {
    ended = await finish();
  } catch (err) {
    const error = toApiError(err, started.id);
    ended = failedResponse(started, [], { code: error.code, message: error.message });
  } finally {
    clearInterval(poll);
    clearTimeout(deadline);
  }
  // With the usage of what it generated, which the request log bills (review h143: a stopped or failed one's was null).
  const usage = ended.usage ?? (reply.runs.length === 1 ? responsesUsage(reply.runs[0].usageSoFar()) : null);
  // Stopped early, it keeps the output it had, cut (as a foreground stream its client left is kept; review h121).
  const final = (why: Stop | null): ResponseObject => {
    if (why === 'cancel') return { ...started, status: 'cancelled', output: cutShort(ended.output), usage };
    if (why === 'deadline') {
      const limit = `this server's ${Math.round(options.deadlineMs / 1000)} s for one (SSSD_BACKGROUND_DEADLINE_SECONDS)`;
      // Its pool failed and none took it up in time: said so (review h144: it read as a response too long to run).
      const error = poolLost
        ? { code: 'pool_unavailable', message: `The background response's pool failed, and no other pool could go on with it within ${limit}; create it again.` }
        : { code: 'server_error', message: `The background response ran past ${limit} and was stopped.` };
      return { ...failedResponse(started, cutShort(ended.output), error), usage };
    }
    return { ...ended, usage };
  };
  // KV takes one write a second per key: the end waits for the queued record's second.
  await sleep(storedAt + KEY_WRITE_INTERVAL_MS - Date.now());
  for (let attempt = 1; attempt <= FINAL_WRITE_TRIES; attempt++) {
    // Read again right before each write: a stop asked while it ended or waited wins (a client told `cancelled` must
    // not find it completed, nor a deleted one find it back).
    const why = stronger(asked.stop, await store.stopRequested(started.id));
    if (why === 'delete') {
      told(null);
      return;
    }
    let response = final(why);
    let outcome = await save(response);
    if (outcome === 'too_large') {
      // Its end is over the bound the queued record was not: said so, in a record that fits, rather than left queued.
      response = failedResponse(started, [], { code: 'server_error', message: 'The background response ended, and was over the store\'s bound on a record (SSSD_RESPONSE_MAX_BYTES) to keep; run it without background, or ask for less output.' });
      outcome = await save(response);
    }
    if (outcome === 'stored') {
      // Told once a stop that raced the write is honoured too: a stream told `completed` must not find it cancelled.
      told(await honourLateStop(started, response, save, store));
      return;
    }
    if (attempt < FINAL_WRITE_TRIES) await sleep(KEY_WRITE_INTERVAL_MS);
  }
  console.error(`edge: background response ${started.id} ended and could not be stored; a poll will find it failed after its deadline`);
  // Its stream is told so, not that it completed (a poll finds it failed later): its text is in the events before.
  told(failedResponse(started, final(asked.stop).output, { code: 'response_store_unavailable', message: 'The background response ended, and the response store failed as its end was written: a retrieve will find it failed. Its output is in the events before this one.' }));
}

/** Output items of a run stopped early: as far as they got, `incomplete`. */
function cutShort(output: readonly OutputItem[]): OutputItem[] {
  return output.map((item) => ({ ...item, status: 'incomplete' }));
}

/**
 * A stop asked as the end was written (another isolate's cancel read the
 * record queued, then wrote its stop request after this run's last read):
 * read after KV's second, longer than that route takes from its read to its
 * write. A delete removes what was written; a cancel writes `cancelled` over
 * it, and a delete that comes meanwhile removes that in turn.
 */
async function honourLateStop(started: ResponseObject, written: ResponseObject, save: SaveResponse, store: ResponseStore): Promise<ResponseObject | null> {
  await sleep(KEY_WRITE_INTERVAL_MS);
  const late = await store.stopRequested(started.id);
  if (late === 'delete') {
    await store.forget(started.id);
    return null;
  }
  if (late !== 'cancel' || written.status === 'cancelled') return written;
  const cancelled: ResponseObject = { ...started, status: 'cancelled', output: cutShort(written.output), usage: written.usage };
  await save(cancelled);
  if ((await store.stopRequested(started.id)) === 'delete') {
    await store.forget(started.id);
    return null;
  }
  return cancelled;
}

/**
 * A stored response as a poll shows it: one still queued past its run's
 * deadline and a minute more is one whose run died (its isolate gone)
 * before it could store its end: said failed, or cancelled where that was
 * asked. Everything that reads a stored response's status goes through this
 * (retrieve, cancel, a chain from it).
 */
export async function polledResponse(stored: StoredResponse, store: ResponseStore, now = Date.now()): Promise<ResponseObject> {
  const response = stored.response;
  if (response.status !== 'queued' && response.status !== 'in_progress') return response;
  // A record from before runsUntil was kept: its creation and the default deadline.
  const runsUntil = stored.runsUntil ?? response.created_at * 1000 + DEFAULT_BACKGROUND_DEADLINE_S * 1000;
  if (now < runsUntil + DIED_AFTER_DEADLINE_MS) return response;
  if ((await store.stopRequested(response.id)) === 'cancel') return { ...response, status: 'cancelled' };
  return failedResponse(response, [], { code: 'server_error', message: 'The background response stopped without a result (the edge that ran it went away); create it again.' });
}
