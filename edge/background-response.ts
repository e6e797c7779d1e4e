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
 */
import { ApiError, toApiError } from './api-error';
import type { PreparedReply } from './completion-handler';
import { failedResponse, type ResponseObject } from './responses-format';
import type { BackgroundStop, ResponseStore } from './response-store';

export interface BackgroundOptions {
  waitUntil: (promise: Promise<unknown>) => void;
  /** The most a run may take, from its request (SSSD_BACKGROUND_DEADLINE_SECONDS). */
  deadlineMs: number;
  /** How often a run reads whether it was asked to stop. */
  stopPollMs: number;
}

/** A run reads its stop requests this often (each a KV read). */
export const BACKGROUND_STOP_POLL_MS = 1_000;
/** KV takes one write a second per key: the finished response is written this long after the queued one at the soonest. */
const KEY_WRITE_INTERVAL_MS = 1_100;
/** Tries of the finished response's write (a 429 from a write of the key elsewhere, a store that failed once). */
const FINAL_WRITE_TRIES = 3;
/** Past its deadline, this long for the run's own write before a poll takes a queued response for a run that died. */
const DIED_AFTER_DEADLINE_MS = 60_000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/**
 * The queued answer of a background request, its run carried on in
 * `options.waitUntil`. `finish` runs the generations to their end and makes
 * the response; `save` stores one (false where it could not).
 */
export async function answerInBackground(
  started: ResponseObject,
  reply: PreparedReply,
  finish: () => Promise<ResponseObject>,
  save: (response: ResponseObject) => Promise<boolean>,
  store: ResponseStore,
  options: BackgroundOptions,
): Promise<Response> {
  const begun = Date.now();
  // Opened first: a pool that refuses it (busy, a bad request) is the request's own error, as without background.
  await reply.opening;
  const queued: ResponseObject = { ...started, status: 'queued' };
  // A poll that comes before the end finds it queued; a response that cannot be stored could never be polled.
  if (!(await save(queued))) {
    for (const run of reply.runs) run.cancel();
    throw new ApiError(503, 'The response store is unavailable, and a background response is polled from it; retry shortly.', 'service_unavailable', 'response_store_unavailable', null, 2);
  }
  const storedAt = Date.now();
  options.waitUntil(runToEnd(started, reply, finish, save, store, options, begun, storedAt));
  return new Response(JSON.stringify(queued), { headers: { ...Object.fromEntries(new Headers(reply.headers)), 'content-type': 'application/json' } });
}

async function runToEnd(
  started: ResponseObject,
  reply: PreparedReply,
  finish: () => Promise<ResponseObject>,
  save: (response: ResponseObject) => Promise<boolean>,
  store: ResponseStore,
  options: BackgroundOptions,
  begun: number,
  storedAt: number,
): Promise<void> {
  const asked: { stop: BackgroundStop | 'deadline' | null } = { stop: null };
  const halt = (why: BackgroundStop | 'deadline'): void => {
    if (asked.stop !== null) return;
    asked.stop = why;
    for (const run of reply.runs) run.cancel();
  };
  const poll = setInterval(() => {
    void store.stopRequested(started.id).then((why) => {
      if (why !== null) halt(why);
    });
  }, options.stopPollMs);
  const deadline = setTimeout(() => halt('deadline'), options.deadlineMs - (Date.now() - begun));
  let response: ResponseObject;
  try {
    response = await finish();
  } catch (err) {
    const error = toApiError(err, started.id);
    response = failedResponse(started, [], { code: error.code, message: error.message });
  } finally {
    clearInterval(poll);
    clearTimeout(deadline);
  }
  // A stop asked as it ended wins: a client told `cancelled` must not find it completed.
  const why = asked.stop ?? (await store.stopRequested(started.id));
  if (why === 'delete') return; // Deleted: nothing of it is stored again.
  if (why === 'cancel') response = { ...started, status: 'cancelled' };
  if (why === 'deadline') {
    response = failedResponse(started, [], { code: 'server_error', message: `The background response ran past this server's ${Math.round(options.deadlineMs / 1000)} s for one (SSSD_BACKGROUND_DEADLINE_SECONDS) and was stopped.` });
  }
  await sleep(storedAt + KEY_WRITE_INTERVAL_MS - Date.now());
  for (let attempt = 1; attempt <= FINAL_WRITE_TRIES; attempt++) {
    if (await save(response)) return;
    if (attempt < FINAL_WRITE_TRIES) await sleep(KEY_WRITE_INTERVAL_MS);
  }
  console.error(`edge: background response ${started.id} ended ${response.status} and could not be stored; a poll will find it failed after its deadline`);
}

/**
 * A stored response as a poll shows it: one still queued long past the
 * deadline of its run is one whose run died (its isolate gone) before it
 * could store the end: said failed.
 */
export function polledResponse(response: ResponseObject, deadlineMs: number, now = Date.now()): ResponseObject {
  if (response.status !== 'queued' && response.status !== 'in_progress') return response;
  if (now - response.created_at * 1000 < deadlineMs + DIED_AFTER_DEADLINE_MS) return response;
  return failedResponse(response, [], { code: 'server_error', message: 'The background response stopped without a result (the edge that ran it went away); create it again.' });
}
