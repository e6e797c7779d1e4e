/**
 * Completion runs (one per choice) as a Server-Sent Events response, its
 * frames a StreamFormat's: chat's and completions' chunks (chat-stream.ts),
 * or the Responses API's events (responses-stream.ts). Without smoothing a
 * piece is one verification step's released text; with it, one token's
 * text, paced by BurstSmoother. Cancelling the response stream (client
 * gone) cancels the run.
 */
import { toApiError, type ApiError } from './api-error';
import { QUIET_STREAM_COMMENT_MS, STALLED_CLIENT_MS } from './edge-config';
import { BurstSmoother } from './burst-smoother';
import { ClientBody, weakCall } from './client-body';
import { openedOrLate } from './reply-start';
import type { CompletionRun, CompletionSummary, CompletionUsage } from './completion-run';
import type { SourcedText } from './token-text';
import type { CancelCause, RequestLog } from './request-log';

/** How long the body's comments are given to find the client gone before a resume takes it for still there. */
const CLIENT_CHECK_MS = 200;

/** A Server-Sent Events response's headers (no proxy buffering or transforming it). */
export const sseHeaders = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
};

/** Pieces of the run as they should be sent: per step, or per token when smoothing. */
async function* paced(source: AsyncGenerator<SourcedText[], CompletionSummary>, smooth: boolean): AsyncGenerator<SourcedText[], CompletionSummary> {
  if (!smooth) return yield* source;
  const smoother = new BurstSmoother();
  const queue: SourcedText[] = [];
  let finished: { summary?: CompletionSummary; error?: unknown } | null = null;
  const waiter: { wake: (() => void) | null } = { wake: null };
  const pump = (async () => {
    try {
      for (;;) {
        const next = await source.next();
        if (next.done) {
          finished = { summary: next.value };
          break;
        }
        smoother.onBurst(next.value.length, Date.now());
        for (const piece of next.value) queue.push(piece);
        waiter.wake?.();
      }
    } catch (error) {
      finished = { error };
    }
    waiter.wake?.();
  })();
  try {
    for (;;) {
      if (queue.length === 0) {
        if (finished) break;
        await new Promise<void>((resolve) => (waiter.wake = resolve));
        waiter.wake = null;
        continue;
      }
      yield [queue.shift() as SourcedText];
      const gap = smoother.gapMs(queue.length, finished !== null);
      if (gap >= 1) await new Promise((resolve) => setTimeout(resolve, gap));
    }
  } finally {
    if (!finished) await source.return(undefined as never).catch(() => undefined);
    await pump;
  }
  const end = finished as { summary?: CompletionSummary; error?: unknown } | null;
  if (end?.error !== undefined || !end?.summary) throw end?.error ?? new Error('stream ended early');
  return end.summary;
}

type Tagged = { index: number; next: IteratorResult<SourcedText[], CompletionSummary> };

/** Writes one frame's text to the client (nothing once it is gone). */
export type SendFrame = (frame: string) => void;

/**
 * What a stream says, in its API's frames (chat's and completions' chunks,
 * or the Responses API's events); sseStream does the rest: the runs, the
 * client's leaving, heartbeats and quiet comments.
 */
export interface StreamFormat {
  /** Every generation opened: the frames before any text (chat: each choice's role chunk). */
  begin(send: SendFrame): void;
  /** A piece of choice `index`'s reply. */
  piece(index: number, segments: SourcedText[], send: SendFrame): void;
  /** Choice `index` ended. */
  finished(index: number, summary: CompletionSummary, send: SendFrame): void;
  /** Every choice ended; it may wait (a response stored before its last frame), the quiet comments going on meanwhile. */
  ended(usages: CompletionUsage[], send: SendFrame): void | Promise<void>;
  /** The reply failed (opening its generations, or mid-way); it may wait (a failed response stored before its last frame). */
  failed(error: ApiError, send: SendFrame): void | Promise<void>;
  /** The last frames, whatever happened (chat: `data: [DONE]`). */
  close(send: SendFrame): void;
  /**
   * The client left before the end (the runs are cancelled): what the
   * reply keeps of that, if anything (the Responses API: the response as
   * far as it was sent, `cancelled`). Nothing is sent.
   */
  abandoned?(): void | Promise<void>;
}

/**
 * The runs as one SSE stream in `format`'s frames. Cancelling the response
 * stream (client gone) cancels the runs.
 */
/** How a stream is written, beside its runs and format. */
export interface StreamSetting {
  /** What an unexpected error is logged with. */
  id: string;
  /** Pieces one token at a time, paced (BurstSmoother), rather than one a verification step. */
  smooth: boolean;
  headers: HeadersInit;
  clientSignal?: AbortSignal;
  /**
   * The generations being opened, when the stream starts before they have
   * (see openedOrLate): until they are, an SSE comment goes out every
   * `heartbeatMs`, so a client that leaves meanwhile is noticed; an error
   * opening them ends the stream with the format's error frames.
   */
  opening?: Promise<void>;
  heartbeatMs?: number;
  /** Mid-reply, a stream that has sent nothing this long gets an SSE comment (QUIET_STREAM_COMMENT_MS). */
  quietCommentMs?: number;
  /**
   * The request's `waitUntil`, given the stream's task: workerd ends a
   * request's code as its client goes unless a waitUntil holds it, and the
   * body's cancel, which tells the task of the client gone, then came too
   * late or never (review h223: of 59 streams left at once, 44 had no
   * request-log line, and 24 of 30 Responses were never stored
   * `cancelled`, though the pool saw each fetch end). Held, the task cancels
   * the runs, writes the line and stores what the format keeps.
   */
  waitUntil?: (promise: Promise<unknown>) => void;
  /**
   * What was sent waiting this long with none of it taken (ClientBody.unreadForMs)
   * takes the client for gone, as a failed write would (0: never; STALLED_CLIENT_MS):
   * held by waitUntil, a stream whose body the runtime stopped reading would
   * otherwise run its generation to the end for no one. At the runs' end, what
   * was sent is waited for as long to be taken before the reply is kept as read.
   */
  stalledClientMs?: number;
  /** The request's log line: it waits for the stream's end, which says whether its client left (RequestLog.replyEnded). */
  requestLog?: RequestLog;
  /** Told the stream's task, which goes on past the Response (PreparedReply.goesOn): its format's end may store. */
  goesOn?: (work: Promise<unknown>) => void;
}

/**
 * A stream that starts once its generations opened, or, queued at a pool
 * past `heartbeatMs`, before (SSE comments meanwhile); what opening threw
 * before either ("busy") keeps its HTTP status.
 */
export async function streamWhenOpened(runs: readonly CompletionRun[], format: StreamFormat, setting: StreamSetting & { opening: Promise<void>; heartbeatMs: number }): Promise<Response> {
  const when = await openedOrLate(runs, setting.opening, setting.heartbeatMs);
  return sseStream(runs, format, { ...setting, heartbeatMs: when === 'late' ? setting.heartbeatMs : 0 });
}

export function sseStream(runs: readonly CompletionRun[], format: StreamFormat, setting: StreamSetting): Response {
  const { id, smooth, headers, clientSignal, opening = Promise.resolve(), heartbeatMs = 0, quietCommentMs = QUIET_STREAM_COMMENT_MS, waitUntil, stalledClientMs = STALLED_CLIENT_MS, requestLog } = setting;
  requestLog?.awaitsReplyEnd();
  const encoder = new TextEncoder();
  let clientGone = false;
  const cancelAll = (by: CancelCause = 'client'): void => {
    for (const run of runs) run.cancel(by);
  };
  // The client is gone (the body cancelled by the runtime, or the client's signal): cancel the generations at the
  // pool, and drop what waits unsent.
  const gone = (): void => {
    if (clientGone) return;
    clientGone = true;
    cancelAll();
    body.abandon();
  };
  // The body's cancel and the client's signal reach `gone` through a weak link only: when the client leaves, workerd
  // (wrangler dev) may keep the body or the signal for good without a word, and holding `gone` strongly, they kept
  // the runs and the request (~60 KB each). The task below holds `ender` for as long as it runs, so the link reaches
  // `gone` while anything can happen.
  const ender = { gone };
  const goneLater = weakCall(ender);
  const body = new ClientBody(ender);
  if (clientSignal?.aborted) gone();
  else clientSignal?.addEventListener('abort', goneLater, { once: true });
  let lastWriteAt = Date.now();
  // Looked at before each write: a body left unread is a client gone (and the write is dropped).
  const leftUnread = (): boolean => {
    if (stalledClientMs > 0 && body.unreadForMs() >= stalledClientMs) gone();
    return clientGone;
  };
  // Enqueued, never waited on: a slow client's chunks wait in the body, at most a generation's worth.
  const send: SendFrame = (frame) => {
    if (leftUnread()) return;
    lastWriteAt = Date.now();
    body.send(encoder.encode(frame));
  };
  const end = (): void => {
    format.close(send);
    body.close();
    clientSignal?.removeEventListener('abort', goneLater);
    // Over: nothing is left to end (and naming `ender` here is what keeps it held by the task until now).
    ender.gone = () => undefined;
  };
  const task = (async () => {
    const comment = encoder.encode(': waiting for the pool\n\n');
    const beat = heartbeatMs > 0 ? setInterval(() => body.send(comment), heartbeatMs) : null;
    try {
      await opening;
    } catch (err) {
      if (beat) clearInterval(beat);
      await format.failed(toApiError(err, id), send);
      end();
      return;
    }
    if (beat) clearInterval(beat);
    // Silent mid-stream (a pool that hangs until the stall window moves the generation on, up to 30 s and more):
    // a comment now and then keeps proxies from cutting the stream, and one the runtime cannot deliver has the
    // body cancelled: a client gone is noticed.
    // Checked twice a window: a silence gets its comment after quietCommentMs to 1.5 × it (on the window's tick alone, up to 2 ×).
    const sendComment = (): void => {
      if (leftUnread()) return;
      lastWriteAt = Date.now();
      body.send(comment);
    };
    const quiet = setInterval(() => {
      if (!clientGone && Date.now() - lastWriteAt >= quietCommentMs) sendComment();
    }, Math.max(50, quietCommentMs / 2));
    // Before a resume: comments, and a moment for the body's cancel to tell of a client gone. Two: the runtime finds
    // the client gone as it sends the first, and only the one after it fails.
    const stillThere = async (): Promise<boolean> => {
      for (let i = 0; i < 2 && !clientGone; i++) {
        sendComment();
        await new Promise((resolve) => setTimeout(resolve, CLIENT_CHECK_MS / 2));
      }
      return !clientGone;
    };
    for (const run of runs) run.clientStillThere = stillThere;
    const generators: Array<AsyncGenerator<SourcedText[], CompletionSummary>> = [];
    const pending = new Map<number, Promise<Tagged>>();
    const pull = (index: number): void => {
      pending.set(index, generators[index].next().then((next) => ({ index, next })));
    };
    const usages: CompletionUsage[] = [];
    try {
      for (const run of runs) generators.push(paced(run.run(), smooth));
      format.begin(send);
      for (let i = 0; i < runs.length; i++) pull(i);
      while (pending.size > 0 && !clientGone) {
        const { index, next } = await Promise.race(pending.values());
        // What a run says after its client left (its cancel ends it as if at its length) is no part of the reply.
        if (clientGone) break;
        if (next.done) {
          pending.delete(index);
          usages[index] = next.value.usage;
          format.finished(index, next.value, send);
          continue;
        }
        format.piece(index, next.value, send);
        pull(index);
      }
      // Every run ended: before the reply is kept as read, what was sent must have been taken. Under wrangler dev a
      // client that left may get no cancel and no abort, its body just never read again, and a generation that ends
      // within the window after that would otherwise be logged and stored as read whole (ClientBody.taken).
      if (!clientGone && pending.size === 0 && stalledClientMs > 0 && !(await body.taken(stalledClientMs))) gone();
      if (clientGone) await format.abandoned?.();
      else if (pending.size === 0) await format.ended(usages, send);
    } catch (err) {
      // A choice failed (or the client left, whose cancel came first): the others stop with the request.
      cancelAll(clientGone ? 'client' : 'request-failed');
      if (clientGone) await format.abandoned?.();
      else await format.failed(toApiError(err, id), send);
    } finally {
      clearInterval(quiet);
    }
    for (const g of generators) await g.return(undefined as never).catch(() => undefined);
    end();
  })();
  waitUntil?.(task);
  setting.goesOn?.(task);
  const ended = (): void => requestLog?.replyEnded(clientGone);
  void task.then(ended, ended);
  return new Response(body.stream, { headers: { ...sseHeaders, ...Object.fromEntries(new Headers(headers)) } });
}
