/**
 * Completion runs (one per choice) as one JSON body, with space heartbeats
 * while a long one is still running (see wholeCompletionResponse).
 */
import { toApiError } from './api-error';
import { ClientBody, weakCall } from './client-body';
import { combinedUsage, type CompletionRun, type CompletionUsage } from './completion-run';
import type { PromptLogprobs } from './prompt-logprobs';
import { joinText, responseJson, tokensOf, wholeResponse, type ResponseMeta, type WholeChoice } from './openai-format';
import { lateBefore } from './reply-start';
import { STALLED_CLIENT_MS } from './edge-config';
import type { PreparedReply } from './completion-handler';
import type { TokenLogprob } from './token-text';

/**
 * How soon one more space follows the headers, and each heartbeat's space.
 * A write to a client that has left succeeds (its kernel answers it with a
 * reset) and only the write after it fails, which is when workerd tells of
 * the client gone: under wrangler dev the request's signal fires then too,
 * never before a response exists (workerd 1.20260401, measured 2026-12-07).
 * With one write a heartbeat, a client that left was noticed a heartbeat
 * late: ~1 s after the request at 500 ms, nearly the whole reply generated.
 */
const SECOND_WRITE_AFTER_MS = 100;

/**
 * A non-streamed completion's response. Done within `heartbeatMs` of the
 * request (`opening` is its generations being opened), it is sent whole,
 * with its status: an error is an OpenAI error with its own, as is one
 * before any pool took every generation in ("busy" stays a 503 an SDK
 * retries). Otherwise, once `heartbeatMs` has passed and a pool holds every
 * generation (perhaps queued there still), its 200 headers go out and a
 * space follows every `heartbeatMs` until the JSON, each (and the headers)
 * with another close behind (leading whitespace is valid JSON): workerd
 * notices a client that leaves only when a write to it fails (then it
 * cancels the body, ClientBody, or ends the request and its fetch to the
 * pool, which is what wrangler dev's mostly does), and without
 * this a client that gave up (a timeout, a closed tab, an SDK's retry) left
 * its generations running at the pool to the end, and its key's slot taken.
 * The price: an error after that point (every pool gone mid-generation) can
 * only be the error object in the 200's body. Uncompressed (`encodeBody:
 * 'manual'`): a compressed body's spaces wait in the encoder and never fail.
 */
/** What a whole reply is made of: the prepared reply's runs and settings. */
export type WholeReply = Pick<PreparedReply, 'runs' | 'meta' | 'headers' | 'heartbeatMs' | 'opening' | 'clientSignal' | 'goesOn' | 'waitUntil' | 'log' | 'streamStalledClientMs'>;

export async function wholeCompletionResponse(
  /** The reply's runs and settings; `goesOn` is told the reply's task where it goes on past its headers (`build` may store still). */
  { runs, meta, headers, heartbeatMs, opening, clientSignal, goesOn, waitUntil, log, streamStalledClientMs = STALLED_CLIENT_MS }: WholeReply,
  /** The body, once every run is done (the Responses API builds its own from finishedChoices). */
  build: () => Promise<object> = () => wholeCompletion(runs, meta),
): Promise<Response> {
  const jsonHeaders = { ...Object.fromEntries(new Headers(headers)), 'content-type': 'application/json' };
  const whole = opening.then(build);
  // Held by the request's waitUntil, as a stream's task is (StreamSetting.waitUntil): without it workerd could stop
  // the request's code as its client went, and the generations' end (the log line, what `build` stores) never came.
  waitUntil?.(whole.catch(() => undefined));
  // The line waits for the body's end, which says whether its client left.
  log?.awaitsReplyEnd();
  let gone = false;
  const over = (): void => log?.replyEnded(gone || clientSignal?.aborted === true);
  let late = false;
  try {
    late = await lateBefore(runs, whole, heartbeatMs);
    // Done in time (or heartbeats off): sent whole, and an error thrown here keeps its status.
    if (!late) return new Response(responseJson(meta, await whole), { headers: jsonHeaders });
  } finally {
    if (!late) over();
  }

  const encoder = new TextEncoder();
  const leave = (): void => {
    if (gone) return;
    gone = true;
    for (const run of runs) run.cancel();
    body.abandon();
  };
  // Weak links from the body's cancel and the client's signal, as in sseStream (a body or signal workerd keeps after
  // its client left keeps nothing more); the task below holds `ender` until the reply is over.
  const ender = { gone: leave };
  const body = new ClientBody(ender);
  const leaveLater = weakCall(ender);
  if (clientSignal?.aborted) leave();
  else clientSignal?.addEventListener('abort', leaveLater, { once: true });
  const space = encoder.encode(' ');
  // Two writes soon after the client leaves, wherever it leaves: the headers (the first) or a heartbeat's space, and a space right after.
  let second: ReturnType<typeof setTimeout> | undefined;
  const secondWrite = (): void => {
    second = setTimeout(() => body.send(space), Math.min(SECOND_WRITE_AFTER_MS, heartbeatMs / 2));
  };
  secondWrite();
  const beat = setInterval(() => {
    body.send(space);
    secondWrite();
  }, heartbeatMs);
  const task = (async () => {
    let json: string;
    try {
      json = responseJson(meta, await whole);
    } catch (err) {
      json = JSON.stringify(toApiError(err, meta.id).toBody());
    }
    clearInterval(beat);
    if (second !== undefined) clearTimeout(second);
    // Its spaces taken, or its client gone with no word (as a stream's, sse-response.ts): a reply whose generations
    // ended before a write failed was otherwise logged as read (3 or more of 12 left at once after their headers, in 1 of 4 runs).
    if (!gone && streamStalledClientMs > 0 && !(await body.taken(streamStalledClientMs))) leave();
    clientSignal?.removeEventListener('abort', leaveLater);
    ender.gone = () => undefined;
    if (gone) return;
    body.send(encoder.encode(json));
    body.close();
  })();
  waitUntil?.(task);
  goesOn?.(task);
  void task.then(over, over);
  return new Response(body.stream, {
    // no-transform: a proxy that compressed or buffered it would hold the spaces back, and the client's leaving with them.
    headers: { ...jsonHeaders, 'content-encoding': 'identity', 'cache-control': 'no-store, no-transform' },
    encodeBody: 'manual',
  });
}

/** Every choice's reply, run to its end, with the runs' usage. */
export interface FinishedChoices {
  choices: WholeChoice[];
  usage: CompletionUsage;
  /** Choice 0's: its generation scored the prompt, which every choice shares. */
  promptLogprobs: PromptLogprobs | null;
}

/** Runs every choice to its end (the first error cancels the others, and is thrown). */
export async function finishedChoices(runs: readonly CompletionRun[], meta: ResponseMeta): Promise<FinishedChoices> {
  const finished = await Promise.all(
    runs.map(async (run, i) => {
      const generator = run.run();
      const parts: string[] = [];
      const tokens: TokenLogprob[] = [];
      try {
        for (;;) {
          const next = await generator.next();
          if (next.done) {
            const choice: WholeChoice = {
              text: parts.join(''),
              finishReason: next.value.finishReason,
              stopReason: next.value.stopReason,
              tokens,
              logprobs: i === 0 ? meta.logprobs : meta.logprobs?.another(),
              ...(meta.tokenIds ? { tokenIds: run.completionIds() } : {}),
            };
            return { choice, usage: next.value.usage, promptLogprobs: next.value.promptLogprobs };
          }
          parts.push(joinText(next.value));
          for (const t of tokensOf(next.value)) tokens.push(t);
        }
      } catch (err) {
        // The request fails with this choice's error: the others stop with it (their client did not leave).
        for (const other of runs) other.cancel('request-failed');
        throw err;
      }
    }),
  );
  return { choices: finished.map((f) => f.choice), usage: combinedUsage(finished.map((f) => f.usage)), promptLogprobs: finished[0].promptLogprobs };
}

/** The whole completion, every choice, as one JSON response (errors before the end become OpenAI errors). */
export async function wholeCompletion(runs: readonly CompletionRun[], meta: ResponseMeta): Promise<object> {
  const { choices, usage, promptLogprobs } = await finishedChoices(runs, meta);
  return wholeResponse(meta, choices, usage, promptLogprobs, meta.tokenIds ? runs[0].promptIds : null);
}
