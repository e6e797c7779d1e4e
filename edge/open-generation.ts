/**
 * Opens a generation on the best pool and fails over to the next one while no
 * token has been produced yet (unreachable, busy, silent past the stall
 * window, or an error before the first tokens event). Once tokens flow, the
 * request stays on its pool until that pool fails (CompletionRun.resume).
 */
import { featuresNeeded, type PoolFeature } from '../shared/pool-features';
import type { PoolEvent } from '../shared/protocol';
import { ApiError, retryAfterSeconds } from './api-error';
import { PoolMisdirectedError, PoolRejectedError, PoolUnavailableError, PoolUnreachableError, type GenerateInput, type PoolClient } from './pool-client';
import { affinityKey, type PoolPicker } from './pool-picker';
import { checkModelSoon } from './served-model';
import { everyPoolRefusesError, misconfiguredPoolsError, type ConfigRefusals } from './no-pool-error';
import { StallWatch } from './stall-watch';
import { clipped } from './request-schema';

export interface OpenedGeneration {
  client: PoolClient;
  /** The id it runs under at that pool: the request's, or, tried again after a pool took it in and failed before its first token, `<id>.q<n>`. */
  id: string;
  /** The pool's events, starting with the first one (already read). */
  events: AsyncGenerator<PoolEvent>;
}

/** Pools asked for a request's generations, however their opening ended (the request's log line). */
export interface PoolTries {
  tries: number;
}

async function* prepend(head: PoolEvent[], rest: AsyncGenerator<PoolEvent>): AsyncGenerator<PoolEvent> {
  try {
    yield* head;
    yield* rest;
  } finally {
    // Closed while still in the head: the stream (its body, its stall watch) is let go of too.
    await rest.return(undefined);
  }
}

/**
 * How long a pool known down, or doubted after another went silent, has to
 * answer and send its first event: a live pool sends one within a second (a
 * step's, or `queued` while it waits).
 */
export const DOWN_POOL_ANSWER_MS = 2_000;

export async function openGeneration(
  picker: PoolPicker,
  request: GenerateInput,
  signal?: AbortSignal,
  waitUntil?: (promise: Promise<unknown>) => void,
  /** A pool silent this long (no answer, no event) has hung: the next pool, or, once tokens flowed, a resume (stall-watch.ts). */
  stallMs = 30_000,
  /** A pool took the generation in (its 200), which may wait in its queue before the first tokens. */
  onAccepted?: () => void,
  /**
   * Whether the client holds a started reply (a 200 with spaces, SSE
   * comments, while a pool held the generation queued) or part of the
   * answer (a resume after its pool failed): then a refusal could only be an
   * error inside that reply, so a round in which no pool took the generation
   * to its first token is followed by another, after the soonest hint, for up
   * to the stall window from the first such round. Before that, a clean 503,
   * which clients retry, beats waiting.
   */
  mayWait: () => boolean = () => false,
  /** Counted into as pools are asked: a request whose generation no pool took is logged with its tries too. */
  tally: PoolTries = { tries: 0 },
): Promise<OpenedGeneration> {
  // The soonest any pool said it would have room (its busy hint, up to 30 s); a pool that gave none (unreachable,
  // silent) may be back any moment: 2 s. Capped at 2 s, a pool's honest 30 s became a storm of early retries.
  let retryAfterMs: number | null = null;
  let lastBusy: string | null = null;
  const hint = (ms: number | undefined): void => {
    const at = ms ?? 2000;
    retryAfterMs = retryAfterMs === null ? at : Math.min(retryAfterMs, at);
  };
  // The pool that holds this tenant's prefixes of this prompt, unless it is much busier than another.
  const affinity = affinityKey(request.cacheSalt ?? '', request.promptIds);
  // Until when rounds follow one another (mayWait): the stall window from the first round that failed.
  let requeueUntil: number | null = null;
  // Internal errors (the pool's, or its stream cut): often the request's own (its memory, a row the runtime fails
  // on), so tried twice at most.
  let internalErrors = 0;
  const givenId = request.id;
  // What the request sets that a pool from before it would drop: only pools that honour it are tried.
  const needed = featuresNeeded(request);
  // Pools tried (this opening's), and those that refused the edge's token: all of them refusing it is said as such.
  let tries = 0;
  let tokenRefusals = 0;
  /** Refusals (401) whose answer was a pool's own: the others came from something that may not be a pool. */
  let poolTokenRefusals = 0;
  /** Pools that did not answer at all: beside pools refusing the token, nothing a retry would reach. */
  let unreachable = 0;
  /** A pool of this opening went silent past its window: the rest, doubted, get the short window, the last one too. */
  let waitedOut = false;
  /** Every pool's latest answer refuses this edge for its configuration (the last round's): no round more, and no retry. */
  let refusedForConfig: ConfigRefusals | null = null;
  /** A round was run again at once because a pool refusing this edge was found to serve it now (once an opening). */
  let settledServes = false;
  for (let round = 0; ; round++) {
    // Pools of this round that hold fewer tokens than the request needs (a 413): only where every one tried says so is it the request's.
    let roundTries = 0;
    /** Pools of this round that refused this edge (401, 421): the others' answers (busy, down, failed) a retry may outlast. */
    const roundRefused: string[] = [];
    let tooLarge: TooLarge | null = null;
    let tooLargeRefusals = 0;
    // Each round under its own id: a cancel sent for an attempt of an earlier one, arriving late, cannot end this one,
    // nor can a pool still holding that id refuse it as a duplicate.
    if (round > 0) request = { ...request, id: `${givenId}.q${round}` };
    // The first is counted as sent to already (a burst's requests each see those before them).
    const pools = await picker.orderedToSend(waitUntil, affinity, needed);
    if (pools.length === 0 && needed.length > 0) {
      const lacking = picker.featuresLacking(needed);
      if (lacking.length > 0) throw unhonouredError(lacking);
    }
    for (const client of pools) {
      if (signal?.aborted) throw cancelledError();
      tries++;
      roundTries++;
      tally.tries++;
      let events: AsyncGenerator<PoolEvent>;
      // A pool known down (its health check failed), or not heard from since another went silent, is still tried
      // but not waited on for the whole window; one that goes silent past it is noted (the others are doubted then).
      const downWindowMs = Math.min(stallMs, DOWN_POOL_ANSWER_MS);
      // The round's last pool is not cut short on doubt alone: there is nowhere else to go, and a live pool slow to
      // answer under one tenant's flood was cut into other tenants' 503s (review h203). It is where this opening
      // waited a window out already (a fleet hung together: the window once, not once per pool), or where its own
      // health check found it down and nothing was heard from it since (frozen whole).
      const last = client === pools[pools.length - 1];
      const shortWindow = (): boolean => picker.doubted(client.baseUrl) && (!last || waitedOut || picker.checkedDown(client.baseUrl));
      const watch = new StallWatch(
        stallMs,
        signal,
        shortWindow() ? downWindowMs : undefined,
        () => picker.noteStalled(client.baseUrl),
        // While no event has come: the health checks that fall due go on (their answers land later), and a pool
        // they find down gets the short window.
        {
          firstMs: downWindowMs,
          doubted: () => {
            void picker.checkHealth(waitUntil).catch(() => undefined);
            return shortWindow();
          },
          // Mid-reply: only a pool its own health check found down, nothing heard from it since (frozen whole), and
          // only where another pool is up to go on (alone, the stream waits for it as before: a resume on the same pool
          // would prefill again); the health checks go on from this stream too, where no other request refreshes them.
          down: () => {
            void picker.checkHealth(waitUntil).catch(() => undefined);
            return picker.checkedDown(client.baseUrl) && picker.anotherUp(client.baseUrl);
          },
        },
        picker.hearing(client.baseUrl),
      );
      try {
        if (client !== pools[0]) picker.noteSending(client.baseUrl);
        events = watch.watch(await client.generate(request, watch.signal));
        onAccepted?.();
      } catch (err) {
        watch.stop();
        // The client left (or a sibling choice failed): the fetch failed for that, not for the pool.
        if (signal?.aborted) throw cancelledError();
        // Too large for this pool (its token limit, its body limit): another may hold it (review h124: one small pool's
        // limit was the user's final 400, the larger pool never tried).
        if (err instanceof PoolRejectedError && err.status === 413) {
          const message = err.message || `answered ${err.status}`;
          tooLarge = largerRefusal(tooLarge, { message, limit: err.maxTotalTokens ?? tokenLimitOf(message) });
          tooLargeRefusals++;
          picker.notePassedOver(client.baseUrl, `too large for it: ${clipped(message, 120)}`, givenId);
          continue;
        }
        if (err instanceof PoolRejectedError) {
          throw new ApiError(400, `The inference pool rejected the request: ${err.message || err.status}`, 'invalid_request_error', 'pool_rejected');
        }
        if (err instanceof PoolMisdirectedError) {
          if (err.status === 401) tokenRefusals++;
          if (err.status === 401 && !err.notAPool) poolTokenRefusals++;
          picker.markRefused(client.baseUrl, err);
          roundRefused.push(client.baseUrl);
          if (err.status === 421) checkModelSoon();
          continue;
        }
        hint(err instanceof PoolUnavailableError ? err.retryAfterMs || undefined : undefined);
        if (err instanceof PoolUnavailableError && err.poolMessage) lastBusy = err.poolMessage;
        // Silent past its window (the watch aborted the fetch, and noted the pool as failed): said as such, not as "unreachable".
        if (watch.didStall) {
          waitedOut = true;
          picker.notePassedOver(client.baseUrl, `it did not answer within ${watch.windowSeconds} s`, givenId);
          continue;
        }
        if (err instanceof PoolUnreachableError) unreachable++;
        // A busy pool answered: it is up, ranked by its load, not doubted (a doubted pool gets 2 s, not the window).
        if (!(err instanceof PoolUnavailableError && err.poolMessage !== undefined)) picker.markFailed(client.baseUrl);
        picker.notePassedOver(client.baseUrl, passedOverReason(err), givenId);
        continue;
      }
      // Read up to the first tokens (or the end): an error before that moves on.
      const head: PoolEvent[] = [];
      let failed = false;
      let failedReason = 'its stream ended before the first token';
      for (;;) {
        const next = await events.next();
        if (next.done) {
          failed = true;
          break;
        }
        const event = next.value;
        if (event.type === 'error') {
          if (event.code === 'bad_request') {
            await events.return(undefined);
            throw new ApiError(400, `The inference pool rejected the request: ${event.message}`, 'invalid_request_error', 'pool_rejected');
          }
          hint(event.retryAfterMs || undefined);
          // A queued generation that gave its place to another tenant's (the pool's fair share of a full queue).
          if (event.code === 'busy') lastBusy = event.message;
          failed = true;
          // Not the stall watch's own (the pool went silent): that one took the whole window already.
          if (event.code === 'internal' && !watch.didStall) internalErrors++;
          failedReason = `${event.code}: ${clipped(event.message, 120)}`;
          break;
        }
        // Ended by the pool before a token (its drain ran out, or the generation failed there): another pool takes it
        // as a refusal, not the run as a reply broken off, which spent one of its few resumes on it.
        if (event.type === 'done' && (event.finishReason === 'cancelled' || event.finishReason === 'error')) {
          failed = true;
          if (event.finishReason === 'error' && !watch.didStall) internalErrors++;
          failedReason = `its generation ${event.finishReason === 'error' ? 'failed' : 'was cancelled by the pool'} before the first token`;
          break;
        }
        head.push(event);
        if (event.type === 'tokens' || event.type === 'done') break;
      }
      if (failed) {
        if (watch.didStall) waitedOut = true;
        await events.return(undefined);
        // Where the pool may still hold it (a cut the pool has not noticed). A late cancel cannot reach the next
        // round's attempt: that one runs under another id.
        if (head.length > 0) void client.cancel(request.id).catch(() => undefined);
        if (signal?.aborted) throw cancelledError();
        picker.notePassedOver(client.baseUrl, failedReason, givenId);
        continue;
      }
      picker.noteServing(client.baseUrl);
      return { client, id: request.id, events: prepend(head, events) };
    }
    if (tooLarge !== null && tooLargeRefusals === roundTries) {
      throw new ApiError(400, `The inference pool rejected the request: ${tooLarge.message}`, 'invalid_request_error', 'pool_rejected');
    }
    // Only refusals (or no pool left to try: those left out for what their /v1/info said): where every pool's latest
    // answer is one this edge's configuration causes (weights, release, token), the load's answer, said at once
    // (review h229: an edge serving already said "retry in 2 s" for ever, and a started reply waited its window out).
    if (roundRefused.length === roundTries) {
      const servesNow = await picker.settleRefusals(roundRefused);
      refusedForConfig = picker.configRefusal();
      if (refusedForConfig !== null) break;
      // A pool asked just now serves this edge again (restarted onto its weights): tried at once, not after a 503.
      if (servesNow && !settledServes) {
        settledServes = true;
        continue;
      }
    }
    if (!mayWait() || internalErrors >= 2) break;
    requeueUntil ??= Date.now() + stallMs;
    // A hint past the deadline (a pool behind long generations says up to 30 s) still gets one try at the deadline.
    const leftMs = requeueUntil - Date.now();
    if (leftMs <= 0) break;
    // A pool that says 100 ms each round, all through the window, was asked every 100 ms: 300 rounds of every pool,
    // each a subrequest, past what Workers allow one request (review h151). From 100 ms, doubling, to half a second.
    const floorMs = Math.min(MAX_ROUND_FLOOR_MS, 100 * 2 ** Math.min(round, 8));
    if (!(await pause(Math.min(Math.max(floorMs, retryAfterMs ?? 2000), leftMs), signal))) throw cancelledError();
    retryAfterMs = null;
  }
  const misconfigured = misconfiguredPoolsError({ tries, tokenRefusals, poolTokenRefusals, unreachable });
  if (misconfigured) throw misconfigured;
  if (refusedForConfig !== null) throw everyPoolRefusesError(refusedForConfig);
  // The pool's words end "retry after the time given": the time is said once, here, as Retry-After gives it.
  const why = lastBusy ? ` (the last: ${clipped(lastBusy.replace(/; retry after the time given$/, ''), 200)})` : '';
  const retryS = (retryAfterMs ?? 2000) / 1000;
  throw new ApiError(503, `No inference pool can take the request now${why}; retry in ${retryAfterSeconds(retryS)} s.`, 'service_unavailable', 'pool_unavailable', null, retryS);
}

/** The least wait between rounds grows to this: a started reply waits for room at most this long past a pool's hint. */
const MAX_ROUND_FLOOR_MS = 500;

/** A pool's 413 refusal: its words, and its token limit (null: none said, a body limit's). */
interface TooLarge {
  message: string;
  limit: number | null;
}

/**
 * A pool's token limit as an older pool's 413 says it only in words (gpu-pool admission: "... this pool holds at most
 * N"; pools since 2026-12-07 send `maxTotalTokens`); null: another 413 (its body limit).
 */
function tokenLimitOf(message: string): number | null {
  const said = /holds at most (\d+)/.exec(message);
  return said ? Number(said[1]) : null;
}

/**
 * Of two pools' 413s, the one to quote where every pool refused: the largest token limit, which is what the request
 * must fit to be served anywhere (the last pool's was quoted, however small). One without a limit (a body limit's)
 * gives way to one with.
 */
function largerRefusal(kept: TooLarge | null, given: TooLarge): TooLarge {
  if (kept === null) return given;
  if (given.limit === null) return kept;
  return kept.limit === null || given.limit > kept.limit ? given : kept;
}

/** What a request calls each feature (shared/pool-features.ts): the field an error's `param` names (null: none of the request's), and how a message says it. */
const FEATURE_FIELDS: Readonly<Record<PoolFeature, { param: string | null; said: string }>> = {
  ignoreEos: { param: 'ignore_eos', said: 'ignore_eos' },
  stopTokenIds: { param: 'stop_token_ids', said: 'stop_token_ids' },
  minTokens: { param: 'min_tokens', said: 'min_tokens' },
  // Never needed (featuresNeeded leaves it out: a pool from before it answers the same): named here for completeness.
  stopStrings: { param: 'stop', said: 'stop' },
  allowedTokenIds: { param: 'allowed_token_ids', said: 'allowed_token_ids' },
  badWords: { param: 'bad_words', said: 'bad_words' },
  choices: { param: 'structured_outputs.choice', said: 'structured_outputs.choice (or guided_choice)' },
  regex: { param: 'structured_outputs', said: 'structured outputs (structured_outputs.regex, json or json_object; guided_regex, guided_json; response_format json_object or json_schema; tool calls)' },
  regexJsonLength: { param: 'structured_outputs', said: "a JSON schema's string minLength or maxLength beside its pattern or format (structured_outputs.json, guided_json, response_format json_schema, tool calls; or a regex's (?json-length...))" },
  regexAnyTail: { param: 'structured_outputs', said: 'a regex\'s (?any-tail) (structured_outputs.regex, guided_regex)' },
  grammar: { param: 'structured_outputs.grammar', said: 'structured_outputs.grammar (or guided_grammar; with SSSD_JSON_GRAMMAR=1, JSON schemas, JSON mode and tool calls go as one where the pools heard from follow it)' },
  logprobs: { param: 'logprobs', said: 'logprobs' },
  logprobIds: { param: 'logprob_token_ids', said: 'logprob_token_ids' },
  promptLogprobs: { param: 'prompt_logprobs', said: 'prompt_logprobs (or echo with logprobs)' },
  resumedOutputTokens: { param: null, said: 'going on after a pool failed, with min_tokens, frequency_penalty, presence_penalty, bad_words or structured outputs' },
  'sampling.minP': { param: 'min_p', said: 'min_p' },
  'sampling.frequencyPenalty': { param: 'frequency_penalty', said: 'frequency_penalty' },
  'sampling.presencePenalty': { param: 'presence_penalty', said: 'presence_penalty' },
  'sampling.repetitionPenalty': { param: 'repetition_penalty', said: 'repetition_penalty' },
  'sampling.logitBias': { param: 'logit_bias', said: 'logit_bias' },
};

/** How soon to try again when the pools up are from before a field the request sets: a rolling upgrade replaces them in minutes. */
const UNHONOURED_RETRY_S = 30;

/**
 * The pools up are all from before something the request sets, and would
 * drop it unread: a 503 naming it (the fleet is mid-upgrade, or older than
 * the edge), not an answer to another question.
 */
function unhonouredError(lacking: readonly PoolFeature[]): UnhonouredFeaturesError {
  const fields = lacking.map((f) => FEATURE_FIELDS[f].said);
  const them = fields.length === 1 ? 'it' : 'them';
  return new UnhonouredFeaturesError(
    fields,
    `No inference pool up here honours ${fields.join(', ')}: the pools are from before ${them} and would ignore ${them} (a fleet mid-upgrade). Retry in ${UNHONOURED_RETRY_S} s, or send the request without ${them}.`,
    FEATURE_FIELDS[lacking[0]].param,
    UNHONOURED_RETRY_S,
  );
}

/** No pool up honours what the request sets (unhonouredError): a resume says so rather than that it waited for a pool. */
export class UnhonouredFeaturesError extends ApiError {
  constructor(
    /** The fields, as a request names them. */
    readonly fields: readonly string[],
    message: string,
    param: string | null,
    retryAfterS: number,
  ) {
    super(503, message, 'service_unavailable', 'pool_unavailable', param, retryAfterS);
    this.name = 'UnhonouredFeaturesError';
  }
}

/** Waits `ms`; false when `signal` aborted first. */
function pause(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const done = (went: boolean): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(went);
    };
    const onAbort = (): void => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Why a pool could not take a generation, in a few words for the log (busy, unreachable: the error's own message). */
function passedOverReason(err: unknown): string {
  // Long enough for a busy pool's limit and its retry hint (review h147: cut at 160, "retry a").
  return clipped(err instanceof Error ? err.message : String(err), 400);
}

/** The run was cancelled while opening: no pool is to blame, and no one reads the answer. */
function cancelledError(): ApiError {
  return new ApiError(400, 'The request was cancelled before the generation started.', 'invalid_request_error', 'cancelled');
}
