/**
 * Background responses (the Responses API's `background: true`): once its
 * generation is open at a pool, or a pool holds it past a short grace, the
 * response is stored `queued` and answered; the generation runs on in the request's waitUntil, and
 * the finished response (completed, incomplete, failed or cancelled) then
 * takes the queued one's place in the store, where GET /v1/responses/{id}
 * polls it. A cancel or a delete taken in the isolate that runs it stops
 * the run at once (haltRunHere); from whatever isolate takes it, it also
 * reaches the run through KV (ResponseStore.requestStop), which the run reads
 * every `stopPollMs`. A run is bounded by `deadlineMs` (Workers give waitUntil
 * 30 s after the response): past it, it is stopped and stored failed. What
 * must be done before a poll can find it ended (a conversation's turn
 * appended) is done before its end is written (`beforeEnd`).
 * Created with `stream: true`, the run writes its events into a log that
 * the request streams and KV keeps (background-stream.ts), and tells its
 * end there once it is stored.
 *
 * A run whose isolate dies (an edge restarted, a runtime that cut its
 * waitUntil) never writes its end. So that a reader can tell, the run keeps a
 * heartbeat in KV: its kept events carry the time they were written, and
 * where nothing was written for `aliveEveryMs` (a run without a stream; a
 * stream quiet behind a busy pool or a long prefill) it writes one alone
 * (ResponseStore.writeHeartbeat). A reader that finds it older than
 * lostAfterMs shows the response failed, and marks it lost for the run
 * (polledResponse).
 */
import { ApiError, badRequest, toApiError } from './api-error';
import type { PreparedReply } from './completion-handler';
import { failedResponse, responsesUsage, type OutputItem, type ResponseObject, type ResponsesUsage } from './responses-format';
import { BACKGROUND_ALIVE_EVERY_MS, DEFAULT_BACKGROUND_DEADLINE_S, WHOLE_REPLY_HEARTBEAT_MS } from './edge-config';
import { openedOrLate } from './reply-start';
import { keepEvents, liveEventStream, type EventLog } from './background-stream';
import { streamedOutput, type ResponsesStreamFormat } from './responses-stream';
import { sleep, TIMED_OUT, within } from './settled-within';
import { countBackgroundRun } from './background-runs';
import { KEY_WRITE_INTERVAL_MS, type BackgroundStop, type PutOutcome, type ResponseStore, type RunningRecord, type StoredResponse } from './response-store';

export interface BackgroundOptions {
  waitUntil: (promise: Promise<unknown>) => void;
  /** The most a run may take, from its queued answer (SSSD_BACKGROUND_DEADLINE_SECONDS). */
  deadlineMs: number;
  /** How often a run reads whether it was asked to stop. */
  stopPollMs: number;
  /** The most a run goes without writing its heartbeat (SSSD_BACKGROUND_HEARTBEAT_MS; BACKGROUND_ALIVE_EVERY_MS where not given). */
  aliveEveryMs?: number;
}

/** A background response created with `stream: true`: the log its run writes its events into (driveFormat), in `format`'s frames. */
export interface BackgroundEvents {
  log: EventLog;
  format: ResponsesStreamFormat;
  /** The stream the request reads gets a comment after this long without an event. */
  quietCommentMs: number;
}

/** Stores a response of the request (`running`: on the queued one, what its record says of its run). */
export type SaveResponse = (response: ResponseObject, running?: RunningRecord) => Promise<PutOutcome>;

/** Done once, before a run's end is first written, with the end a run not stopped stores (its turn appended to its conversation). Never throws. */
export type BeforeEnd = (ended: ResponseObject) => Promise<void>;

/** A run reads its stop requests this often (each a KV read). */
export const BACKGROUND_STOP_POLL_MS = 1_000;
/** Tries of the finished response's write (a 429 from a write of the key elsewhere, a store that failed once). */
const FINAL_WRITE_TRIES = 3;
/**
 * The most a run takes from its generations' end to its end stored, where
 * KV answers: KV's second after its queued record (a conversation's turn
 * appended meanwhile), its end's tries a second apart, the late stop read a
 * second after the write, and a second for its kept events' last write. A
 * local stack waits this long at most for its edge's runs before it stops
 * the edge (launcher/stack.ts).
 */
export const END_STORED_WITHIN_MS = KEY_WRITE_INTERVAL_MS * (1 + FINAL_WRITE_TRIES + 1 + 1);
/**
 * How long a KV write may take to be seen at another location than the one
 * that made it: KV caches what a location read for 60 s (its cacheTtl's
 * default), and says changes "may take up to 60 seconds or more" to be seen
 * elsewhere. At the location that wrote it, a change is "usually" seen at once.
 */
const KV_ELSEWHERE_MS = 60_000;
/** Past its deadline, this long for the run's own write before a poll takes a queued response for a run that died. */
const DIED_AFTER_DEADLINE_MS = KV_ELSEWHERE_MS;
/**
 * A reader takes a run for lost once its heartbeat is this many intervals
 * old: one for the interval itself, and two more for a write that KV took
 * slowly or refused (it is tried again after KV's second) and for the
 * clocks of the run's machine and the reader's.
 */
const LOST_AFTER_BEATS = 3;

/** What a reader shows of a run that was lost, and what a run told so stores: the code a run that died showed before heartbeats. */
const LOST_ERROR = { code: 'server_error', message: 'The background response stopped without a result (the edge that ran it went away); create it again.' } as const;

/** Why a run stops early: a delete is more than a cancel, a cancel (the client's) more than a verdict of lost, which is more than the deadline. */
type Stop = BackgroundStop | 'deadline';
const STOP_RANK: Record<Stop, number> = { deadline: 1, lost: 2, cancel: 3, delete: 4 };
const stronger = <S extends Stop>(a: S | null, b: S | null): S | null => (a === null ? b : b === null ? a : STOP_RANK[b] > STOP_RANK[a] ? b : a);

/**
 * The halts of the background runs this isolate runs, by key and response
 * id, until their end is stored (no later than their deadline and the minute
 * after: a run whose waitUntil the runtime cut never removes its own): a
 * cancel or a delete taken here stops the run at once, where the stop mark in
 * KV reaches it only at its next read, a second later (review h170: a
 * 480-token reply ran to its end, billed and holding the key's slot).
 */
const runningHalts = new Map<string, { stop: RunStop; until: number; view: CancelledView }>();
const haltKey = (store: ResponseStore, id: string): string => `${store.keyId}\n${id}`;

/** This isolate's run of response `id`, while its end is not stored. */
function runningHere(store: ResponseStore, id: string): { stop: RunStop; view: CancelledView } | null {
  const running = runningHalts.get(haltKey(store, id));
  return running === undefined || running.until < Date.now() ? null : running;
}

/** Stops response `id`'s background run where this isolate runs it (the caller writes the stop mark for any other); whether it ran here. */
export function haltRunHere(store: ResponseStore, id: string, why: 'cancel' | 'delete'): boolean {
  const running = runningHere(store, id);
  if (running === null) return false;
  running.stop.haltFromElsewhere(why);
  return true;
}

/** How long a cancel's answer waits for the run it halted here to stop (its generations end within milliseconds of their cancel). */
const CANCEL_WAITS_FOR_END_MS = 500;

/**
 * A cancel's answer for `queued`, a running response (its stored record) the
 * cancel has just asked to stop: where this isolate runs it, as its run will
 * store it, waited for a moment (CancelledView); elsewhere cancelled with
 * its usage not known yet (null, as the queued record has it, until its run
 * reads the stop mark and stores its end with its usage, a second or two later).
 */
export async function cancelledAnswer(store: ResponseStore, queued: ResponseObject): Promise<ResponseObject> {
  const running = runningHere(store, queued.id);
  if (running === null) return { ...queued, status: 'cancelled' };
  await within(running.view.known(), CANCEL_WAITS_FOR_END_MS);
  return running.view.show();
}

/** A response whose cancel was asked, as polls show it before its run stores its end (see cancelledAnswer). */
function cancelledPoll(store: ResponseStore, queued: ResponseObject): ResponseObject {
  return runningHere(store, queued.id)?.view.show() ?? { ...queued, status: 'cancelled' };
}

/** The usage of what a reply's generation produced so far (null for a reply of several, which a response never is). */
function usageSoFar(reply: PreparedReply): ResponsesUsage | null {
  return reply.runs.length === 1 ? responsesUsage(reply.runs[0].usageSoFar()) : null;
}

/**
 * A running response as this isolate shows it cancelled in the second or two
 * before its run stores that (review: polls then showed `usage: null`, the
 * stored end the usage its log line bills): once its generations have ended,
 * the end its run stores for a cancel (its output cut, its usage), and until
 * then its usage so far.
 */
class CancelledView {
  private end: ((why: 'cancel') => ResponseObject) | null = null;
  private readonly waiting: Array<() => void> = [];

  constructor(
    private readonly started: ResponseObject,
    private readonly reply: PreparedReply,
  ) {}

  /** Its generations ended: `final` makes the end its run stores. */
  ended(final: (why: 'cancel') => ResponseObject): void {
    this.end = final;
    for (const wake of this.waiting.splice(0)) wake();
  }

  show(): ResponseObject {
    return this.end?.('cancel') ?? { ...this.started, status: 'cancelled', usage: usageSoFar(this.reply) };
  }

  /** Settles once its generations have ended (made in the caller's request, settled in the run's, as RunStop's halt). */
  known(): Promise<void> {
    return this.end !== null ? Promise.resolve() : new Promise((resolve) => this.waiting.push(resolve));
  }
}

/**
 * The queued answer of a background request, its run carried on in
 * `options.waitUntil`. `finish` runs the generations to their end and makes
 * the response (waiting for their opening where the answer did not); `save`
 * stores one.
 *
 * Answered as a foreground reply starts: once the generations opened, or
 * once a pool holds them all past the reply's grace (queued there, or slow
 * to its first token), so what opening throws before that (busy, a pool's
 * refusal) is the request's own error, with its status, and what it throws
 * after is the run's, stored failed. Until answered, a client that leaves
 * cancels the run, and nothing is stored (review h177: the answer waited for
 * the first token, detached from its client, and a client that timed out and
 * retried left a second run, stored, billed and holding the key's slot). The
 * deadline counts from the answer.
 */
export async function answerInBackground(
  started: ResponseObject,
  reply: PreparedReply,
  finish: () => Promise<ResponseObject>,
  save: SaveResponse,
  store: ResponseStore,
  options: BackgroundOptions,
  events: BackgroundEvents | null = null,
  beforeEnd: BeforeEnd = () => Promise.resolve(),
): Promise<Response> {
  // SSSD_WHOLE_REPLY_HEARTBEAT_MS=0 asks replies whole, with their status: a queued answer is that whatever comes after.
  await openedOrLate(reply.runs, reply.opening, reply.heartbeatMs > 0 ? reply.heartbeatMs : WHOLE_REPLY_HEARTBEAT_MS);
  throwIfClientLeft(reply);
  const begun = Date.now();
  const queued: ResponseObject = { ...started, status: 'queued' };
  const aliveEveryMs = options.aliveEveryMs ?? BACKGROUND_ALIVE_EVERY_MS;
  const running: RunningRecord = { runsUntil: begun + options.deadlineMs, aliveEveryMs, aliveAt: Date.now(), ...(store.location !== null ? { ranAt: store.location } : {}) };
  // A poll that comes before the end finds it queued; a response that cannot be stored could never be polled.
  const outcome = await save(queued, running);
  if (outcome !== 'stored') {
    for (const run of reply.runs) run.cancel('request-failed');
    if (outcome === 'too_large') {
      throw badRequest('This response is over the store\'s bound on a record (SSSD_RESPONSE_MAX_BYTES) as it is queued, and a background response is polled from the store; send less input or metadata, or run it without background.', 'background', 'invalid_value');
    }
    throw new ApiError(503, 'The response store is unavailable, and a background response is polled from it; retry shortly.', 'service_unavailable', 'response_store_unavailable', null, 2);
  }
  // Left as the record was written (its runs are cancelled already): the record goes too, and the run never starts.
  if (reply.clientSignal?.aborted) {
    await store.forget(started.id);
    throwIfClientLeft(reply);
  }
  // Answered from here on: the run outlives its client.
  reply.detachFromClient();
  const storedAt = Date.now();
  // Its heartbeat is needed until a reader takes the queued record for a run that died in any case (its cutoff).
  const beatsUntil = running.runsUntil + DIED_AFTER_DEADLINE_MS;
  const job: BackgroundJob = { started, reply, finish, save, beforeEnd, store, options, begun, storedAt, beatsUntil };
  // Its log line waits for its end to be stored, and says how (runToEnd).
  reply.log?.awaitsStoredEnd();
  if (events === null) {
    // Nothing else is written as it runs: its heartbeat alone, every aliveEveryMs.
    const beats = keepBeating(store, started.id, aliveEveryMs, storedAt, beatsUntil);
    const run = runToEnd(job, () => undefined, beats);
    options.waitUntil(run);
    reply.goesOn?.(run);
    countBackgroundRun(run, beatsUntil);
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
  // Followed live in this isolate until a minute past its deadline at the latest, when a poll takes a run not ended as
  // dead; its kept events carry its heartbeat, written alone where no event came for aliveEveryMs.
  const kept = keepEvents(log, store, started.id, beatsUntil, aliveEveryMs);
  const run = runToEnd(job, told, null).finally(() => log.end());
  options.waitUntil(kept);
  options.waitUntil(run);
  reply.goesOn?.(kept);
  reply.goesOn?.(run);
  countBackgroundRun(Promise.allSettled([kept, run]), beatsUntil);
  return liveEventStream(log, reply.headers, events.quietCommentMs);
}

/** The client left before its answer: the request's handler cancelled its runs, and this ends the request (no one reads it). */
function throwIfClientLeft(reply: PreparedReply): void {
  if (reply.clientSignal?.aborted) throw new ApiError(400, 'The client left before the background response was answered; it was not run.', 'invalid_request_error', 'cancelled');
}

/** A background run as answerInBackground hands it on: what it was given, when it began, when its queued record was stored. */
interface BackgroundJob {
  started: ResponseObject;
  reply: PreparedReply;
  finish: () => Promise<ResponseObject>;
  save: SaveResponse;
  beforeEnd: BeforeEnd;
  store: ResponseStore;
  options: BackgroundOptions;
  begun: number;
  storedAt: number;
  /** Its halt is found here (runningHalts) no later than this. */
  beatsUntil: number;
}

async function runToEnd(job: BackgroundJob, tell: (response: ResponseObject | null) => void, beats: Heartbeat | null): Promise<void> {
  let deleted = false;
  // What the line logs of its end: the error code of the end it stored failed, or told failed where none could be stored.
  let loggedError: string | null = 'internal_error';
  const told = (response: ResponseObject | null): void => {
    loggedError = response?.status === 'failed' ? (response.error?.code ?? 'server_error') : null;
    tell(response);
  };
  const stop = new RunStop(job.reply);
  const key = haltKey(job.store, job.started.id);
  const now = Date.now();
  for (const [other, running] of runningHalts) if (running.until < now) runningHalts.delete(other);
  const entry = { stop, until: job.beatsUntil, view: new CancelledView(job.started, job.reply) };
  runningHalts.set(key, entry);
  try {
    deleted = await runAndStore(job, told, stop, entry.view);
  } finally {
    // Its end is stored (a cancel reads it ended, and answers it as it is) or could not be: nothing to halt here.
    if (runningHalts.get(key) === entry) runningHalts.delete(key);
    // Its record is no longer queued (or it could not be stored, and a reader takes it for lost): no more beats.
    const written = (await beats?.stop()) ?? 0;
    // Deleted as it ran: a beat written after the delete goes too (the delete removed those before it).
    if (deleted && written > 0) await job.store.forgetEvents(job.started.id);
    // Written once its end is stored: at its generations' end, the line said 200 and its tokens for runs whose edge
    // stopped before their end was (review h223).
    job.reply.log?.endStored(loggedError);
  }
}

/**
 * Why a run was asked to stop, the strongest of what it was asked: `halt`
 * asks it in the run's own request, `haltFromElsewhere` in another request of
 * its isolate. Made in the run's request.
 */
class RunStop {
  asked: Stop | null = null;
  /** At its deadline, was it waiting for a pool to take it up again (its pool failed)? Then that is why it stopped. */
  poolLost = false;
  /** Asked from another request, and not yet acted on in the run's own. */
  private pending: BackgroundStop | null = null;
  private wake: () => void = () => undefined;

  constructor(private readonly reply: PreparedReply) {
    this.listen();
  }

  halt(why: Stop): void {
    if (why === 'deadline' && this.asked === null) this.poolLost = this.reply.runs.some((run) => run.waitingForPool);
    this.asked = stronger(this.asked, why);
    for (const run of this.reply.runs) run.cancel(why);
  }

  /**
   * Asked from another request (a cancel, a delete): its end says so whatever
   * comes, and its generations are cancelled in its own request, to which their
   * I/O belongs (Workers refuse it from another request's handler, a 500): a
   * promise made there, settled here, goes on there.
   */
  haltFromElsewhere(why: BackgroundStop): void {
    this.asked = stronger(this.asked, why);
    this.pending = stronger(this.pending, why);
    this.wake();
  }

  private listen(): void {
    void new Promise<void>((resolve) => {
      this.wake = resolve;
    }).then(() => {
      const why = this.pending;
      this.pending = null;
      this.listen();
      if (why !== null) this.halt(why);
    });
  }
}

/** Runs it to its end and stores that; whether it was deleted instead. */
async function runAndStore({ started, reply, finish, save, beforeEnd, store, options, begun, storedAt }: BackgroundJob, told: (response: ResponseObject | null) => void, stop: RunStop, view: CancelledView): Promise<boolean> {
  const poll = setInterval(() => {
    void store.stopRequested(started.id).then((why) => {
      if (why !== null) stop.halt(why);
    });
  }, options.stopPollMs);
  const deadline = setTimeout(() => stop.halt('deadline'), options.deadlineMs - (Date.now() - begun));
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
  const usage = ended.usage ?? usageSoFar(reply);
  // Stopped early, it keeps the output it had, cut (as a foreground stream its client left is kept; review h121).
  const final = (why: Stop | null): ResponseObject => {
    if (why === 'cancel') return { ...started, status: 'cancelled', output: cutShort(ended.output), usage };
    // A reader took it for lost (its heartbeat was late) and showed it failed: so it ends, with the output it had.
    if (why === 'lost') return { ...failedResponse(started, cutShort(ended.output), LOST_ERROR), usage };
    if (why === 'deadline') {
      const limit = `this server's ${Math.round(options.deadlineMs / 1000)} s for one (SSSD_BACKGROUND_DEADLINE_SECONDS)`;
      // Its pool failed and none took it up in time: said so (review h144: it read as a response too long to run).
      const error = stop.poolLost
        ? { code: 'pool_unavailable', message: `The background response's pool failed, and no other pool could go on with it within ${limit}; create it again.` }
        : { code: 'server_error', message: `The background response ran past ${limit} and was stopped.` };
      return { ...failedResponse(started, cutShort(ended.output), error), usage };
    }
    return { ...ended, usage };
  };
  // A cancel's answer and polls in this isolate show it as it will be stored from now on.
  view.ended(final);
  // Not stopped, what a poll that finds it ended relies on is done first (its turn appended to its conversation: the
  // client's next request reads it; review h170), as KV's one write a second per key holds its end back for the queued
  // record's second anyway. A stop asked meanwhile is read after it, and wins as it would have.
  const ending = stronger(stop.asked, await store.stopRequested(started.id)) === null ? beforeEnd(final(null)).catch((err: unknown) => console.error(`edge: background response ${started.id}'s work before its end failed`, err)) : null;
  await Promise.all([sleep(storedAt + KEY_WRITE_INTERVAL_MS - Date.now()), ending]);
  for (let attempt = 1; attempt <= FINAL_WRITE_TRIES; attempt++) {
    // Read again right before each write: a stop asked while it ended or waited wins (a client told `cancelled` must
    // not find it completed, nor a deleted one find it back).
    const why = stronger(stop.asked, await store.stopRequested(started.id));
    if (why === 'delete') {
      told(null);
      return true;
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
      const end = await honourLateStop(started, response, save, store);
      told(end);
      return end === null;
    }
    if (attempt < FINAL_WRITE_TRIES) await sleep(KEY_WRITE_INTERVAL_MS);
  }
  console.error(`edge: background response ${started.id} ended and could not be stored; a poll will find it failed once its heartbeat stops`);
  // Its stream is told so, not that it completed (a poll finds it failed later): its text is in the events before.
  told(failedResponse(started, final(stop.asked).output, { code: 'response_store_unavailable', message: 'The background response ended, and the response store failed as its end was written: a retrieve will find it failed. Its output is in the events before this one.' }));
  return false;
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
 * it, and a delete that comes meanwhile removes that in turn. A reader's
 * verdict of lost that raced the end is honoured as a cancel is (that reader
 * showed `failed`, which a later poll must not find `completed`), over an end
 * not already failed or cancelled.
 */
async function honourLateStop(started: ResponseObject, written: ResponseObject, save: SaveResponse, store: ResponseStore): Promise<ResponseObject | null> {
  await sleep(KEY_WRITE_INTERVAL_MS);
  const late = await store.stopRequested(started.id);
  if (late === 'delete') {
    await store.forget(started.id);
    return null;
  }
  if (late === null || written.status === 'cancelled' || (late === 'lost' && written.status === 'failed')) return written;
  const stopped: ResponseObject =
    late === 'cancel' ? { ...started, status: 'cancelled', output: cutShort(written.output), usage: written.usage } : { ...failedResponse(started, cutShort(written.output), LOST_ERROR), usage: written.usage };
  await save(stopped);
  if ((await store.stopRequested(started.id)) === 'delete') {
    await store.forget(started.id);
    return null;
  }
  return stopped;
}

/**
 * How old a run's heartbeat may be, as a reader at `location` sees it, before
 * the reader takes the run for lost; null for a record from before
 * heartbeats. At the run's own location KV shows its writes at once, and
 * LOST_AFTER_BEATS intervals are enough; elsewhere a read may be KV's cached
 * copy, up to KV_ELSEWHERE_MS old, and that is added (a location unknown on
 * either side counts as elsewhere): a live run is never taken for lost from
 * a stale copy.
 */
export function lostAfterMs(stored: StoredResponse, location: string | null): number | null {
  if (stored.aliveEveryMs === undefined) return null;
  const here = location !== null && stored.ranAt === location;
  return LOST_AFTER_BEATS * stored.aliveEveryMs + (here ? 0 : KV_ELSEWHERE_MS);
}

/**
 * A stored response as a poll shows it. One still queued whose cancel was
 * asked is shown cancelled (its run stores that, with its output and usage,
 * a second or two later). One still queued whose run was lost (its isolate
 * gone before it could store its end) is shown failed, or cancelled where
 * that was asked: a run that keeps a heartbeat, once the heartbeat is older
 * than lostAfterMs; one from before heartbeats, a minute past its run's
 * deadline. Everything that reads a stored response's status
 * goes through this (retrieve, cancel, a stream read again, a chain from it).
 * `seenBeat`: a heartbeat the caller read already (a stream read again reads
 * its kept events every second); `keptFrames`: its kept events, where the
 * caller read them already. A run shown lost has the output its kept events
 * had sent (one made with `stream`; review h177: it was shown with none).
 *
 * A verdict of lost from the heartbeat is stored as a stop mark (one write per
 * lost run): every later poll shows it failed whatever comes after, and a run
 * that was only late (a location whose KV lagged, writes refused for
 * intervals on end) reads it within a second and stores itself failed rather
 * than go on to an end a client told `failed` would find. The queued record
 * itself is left to its run: KV has no compare-and-set, and a reader's write
 * of it could land over the run's own end, or bring back a response deleted
 * meanwhile.
 */
export async function polledResponse(stored: StoredResponse, store: ResponseStore, now = Date.now(), seenBeat: number | null = null, keptFrames: readonly string[] | null = null): Promise<ResponseObject> {
  const response = stored.response;
  if (response.status !== 'queued' && response.status !== 'in_progress') return response;
  // A record from before runsUntil was kept: its creation and the default deadline.
  const runsUntil = stored.runsUntil ?? response.created_at * 1000 + DEFAULT_BACKGROUND_DEADLINE_S * 1000;
  const pastCutoff = now >= runsUntil + DIED_AFTER_DEADLINE_MS;
  const bound = lostAfterMs(stored, store.location);
  const asked = await store.stopRequested(response.id);
  if (asked === 'lost') return lostResponse(stored, store, keptFrames);
  // Cancelled from the cancel's answer on, as OpenAI's are, before its run has stored that (review h170: polls went
  // from the cancel's `cancelled` back to `queued` until it had).
  if (asked === 'cancel') return cancelledPoll(store, response);
  const lost = pastCutoff || (bound !== null && (await heartbeatStopped(stored, store, bound, now, seenBeat)));
  if (!lost) return response;
  if (!pastCutoff && asked === null) {
    try {
      await store.requestStop(response.id, 'lost');
    } catch {
      // Not kept (KV failed): the next poll comes to the same verdict from the same heartbeat.
    }
  }
  return lostResponse(stored, store, keptFrames);
}

/** Whether the run's heartbeat, the last kept (read only where the record's own and `seenBeat` are too old), is older than `bound`. */
async function heartbeatStopped(stored: StoredResponse, store: ResponseStore, bound: number, now: number, seenBeat: number | null): Promise<boolean> {
  let beat = Math.max(stored.aliveAt ?? 0, seenBeat ?? 0);
  if (now - beat <= bound) return false;
  const kept = await store.lastHeartbeat(stored.response.id);
  // KV failed: it cannot be told, and a run is never taken for lost on a guess.
  if (kept === undefined) return false;
  beat = Math.max(beat, kept ?? 0);
  return now - beat > bound;
}

/**
 * A lost run's response as a reader shows it: failed, with the output its kept events had sent, cut, as its run
 * stores one told it was lost (`frames`, where the reader read them; else read here: a KV read, for lost runs only).
 */
async function lostResponse(stored: StoredResponse, store: ResponseStore, frames: readonly string[] | null): Promise<ResponseObject> {
  let sent = frames;
  if (sent === null && stored.eventLog) {
    try {
      sent = (await store.readEvents(stored.response.id))?.frames ?? null;
    } catch {
      // KV failed: shown without its output this time; the next poll reads it again.
    }
  }
  return failedResponse(stored.response, cutShort(streamedOutput(sent ?? [])), LOST_ERROR);
}

/** A run's heartbeat while nothing else is written for it: `stop` ends it, and says how many beats were written. */
interface Heartbeat {
  stop(): Promise<number>;
}

/**
 * Writes a run's heartbeat every `everyMs` from `since` (its queued record's
 * write, its first), until stopped; one that KV refused is tried again after
 * KV's second. `expiresAt`: the heartbeat's value expires then.
 */
function keepBeating(store: ResponseStore, id: string, everyMs: number, since: number, expiresAt: number): Heartbeat {
  let stopNow: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => {
    stopNow = resolve;
  });
  let written = 0;
  const beating = (async () => {
    let next = since + everyMs;
    for (;;) {
      if ((await within(stopped, Math.max(0, next - Date.now()))) !== TIMED_OUT) return;
      const outcome = await store.writeHeartbeat(id, Date.now(), expiresAt);
      if (outcome === 'stored') written++;
      next = Date.now() + (outcome === 'stored' ? everyMs : KEY_WRITE_INTERVAL_MS);
    }
  })();
  return {
    async stop() {
      stopNow();
      await beating;
      return written;
    },
  };
}
