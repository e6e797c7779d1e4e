/**
 * Completion runs (one per choice) as a Server-Sent Events response, its
 * frames a StreamFormat's: chat's and completions' chunks here (`data:
 * {chunk}` lines, final `data: [DONE]`), the Responses API's events in
 * responses-stream.ts. Without smoothing a piece is one verification step's
 * released text; with it, one token's text, paced by BurstSmoother.
 * Cancelling the response stream (client gone) cancels the run.
 */
import { toApiError, type ApiError } from './api-error';
import { QUIET_STREAM_COMMENT_MS } from './edge-config';
import { BurstSmoother } from './burst-smoother';
import { combinedUsage, type CompletionRun, type CompletionSummary, type CompletionUsage } from './completion-run';
import { finishChunk, joinText, roleChunk, textChunk, toolCallChunk, tokensOf, usageChunk, type ChunkTokenIds, type LogprobsFormatter, type ResponseMeta, type RunningUsage } from './openai-format';
import { toolCallId, toolCallsOf, toolFinishReason, type ToolCallMode } from './tool-calls';
import type { SourcedText, TokenLogprob } from './token-text';

export interface StreamOptions {
  includeUsage: boolean;
  /** vLLM's continuous_usage_stats (with includeUsage): every chunk carries its choice's usage so far. */
  continuousUsage?: boolean;
  smooth: boolean;
}

/** How long a write is given to fail before a resume takes the client for still there. */
const CLIENT_CHECK_MS = 200;

const sseHeaders = {
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

/** A call of `target.gone` that does not keep `target` alive. */
function weakCall(target: { gone: () => void }): () => void {
  const ref = new WeakRef(target);
  return () => ref.deref()?.gone();
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
  /** The reply failed (opening its generations, or mid-way). */
  failed(error: ApiError, send: SendFrame): void;
  /** The last frames, whatever happened (chat: `data: [DONE]`). */
  close(send: SendFrame): void;
}

/** Chat's and completions' SSE frame: `data: <json>` (or `[DONE]`). */
function dataFrame(payload: object | string): string {
  return `data: ${typeof payload === 'string' ? payload : JSON.stringify(payload)}\n\n`;
}

/** Chat's and completions' chunks (openai-format.ts), one choice per run. */
class ChatStreamFormat implements StreamFormat {
  private readonly formatters: Array<LogprobsFormatter | undefined>;
  private readonly usageOf: (i: number) => RunningUsage | undefined;
  private readonly idsOf: (index: number) => ChunkTokenIds | undefined;
  private readonly calls: StreamedToolCalls | null;

  constructor(
    private readonly runs: readonly CompletionRun[],
    private readonly meta: ResponseMeta,
    private readonly options: StreamOptions,
  ) {
    this.formatters = runs.map((_, i) => (i === 0 ? meta.logprobs : meta.logprobs?.another()));
    // As vLLM's: the prompt's tokens and the choice's completion tokens so far, in every chunk of the choice.
    this.usageOf = options.continuousUsage ? (i: number): RunningUsage => runningUsage(runs[i]) : (): undefined => undefined;
    this.idsOf = chunkTokenIds(runs, meta);
    this.calls = meta.kind === 'chat' && meta.toolCalls ? new StreamedToolCalls(meta.toolCalls, runs.length) : null;
  }

  begin(send: SendFrame): void {
    const meta = this.meta;
    if (meta.kind === 'chat') for (let i = 0; i < this.runs.length; i++) send(dataFrame(roleChunk(meta, i, this.usageOf(i), meta.tokenIds ? this.runs[i].promptIds : undefined)));
  }

  piece(index: number, segments: SourcedText[], send: SendFrame): void {
    const { meta, formatters, usageOf, idsOf, calls } = this;
    const piece = calls ? calls.piece(index, segments) : null;
    if (piece) send(dataFrame(toolCallChunk(meta, [piece], index, formatters[index] ? formatters[index].format(tokensOf(segments)) : null, usageOf(index), idsOf(index))));
    else if (!calls) send(dataFrame(textChunk(meta, segments, index, formatters[index], usageOf(index), idsOf(index))));
  }

  finished(index: number, summary: CompletionSummary, send: SendFrame): void {
    const { meta, formatters, usageOf, idsOf, calls } = this;
    let finishReason: string = summary.finishReason;
    if (calls) {
      const ended = calls.finish(index, finishReason);
      finishReason = ended.finishReason;
      if (ended.calls) send(dataFrame(toolCallChunk(meta, ended.calls, index, ended.tokens && formatters[index] ? formatters[index].format(ended.tokens) : null, usageOf(index), idsOf(index))));
      else if (ended.text) send(dataFrame(textChunk(meta, ended.text, index, formatters[index], usageOf(index), idsOf(index))));
    }
    send(dataFrame(finishChunk(meta, finishReason, index, summary.stopReason, usageOf(index), idsOf(index))));
  }

  ended(usages: CompletionUsage[], send: SendFrame): void {
    if (this.options.includeUsage) send(dataFrame(usageChunk(this.meta, combinedUsage(usages))));
  }

  failed(error: ApiError, send: SendFrame): void {
    send(dataFrame(error.toBody()));
  }

  close(send: SendFrame): void {
    send(dataFrame('[DONE]'));
  }
}

/**
 * The runs (one per choice, `n` of them) as one SSE stream: each choice's
 * chunks carry its `index`, as they come; a choice's finish chunk when it
 * ends; the usage (all choices) once all have.
 */
export function streamResponse(
  runs: readonly CompletionRun[],
  meta: ResponseMeta,
  options: StreamOptions,
  headers: HeadersInit,
  clientSignal?: AbortSignal,
  opening: Promise<void> = Promise.resolve(),
  heartbeatMs = 0,
  quietCommentMs = QUIET_STREAM_COMMENT_MS,
): Response {
  return sseStream(runs, new ChatStreamFormat(runs, meta, options), { smooth: options.smooth, id: meta.id }, headers, clientSignal, opening, heartbeatMs, quietCommentMs);
}

/**
 * The runs as one SSE stream in `format`'s frames. Cancelling the response
 * stream (client gone) cancels the runs.
 */
export function sseStream(
  runs: readonly CompletionRun[],
  format: StreamFormat,
  /** `id`: what an unexpected error is logged with. */
  options: { smooth: boolean; id: string },
  headers: HeadersInit,
  clientSignal?: AbortSignal,
  /**
   * The generations being opened, when the stream starts before they have
   * (see openedOrLate): until they are, an SSE comment goes out every
   * `heartbeatMs`, so a client that leaves meanwhile is noticed; an error
   * opening them ends the stream with the format's error frames.
   */
  opening: Promise<void> = Promise.resolve(),
  heartbeatMs = 0,
  /** Mid-reply, a stream that has sent nothing this long gets an SSE comment (QUIET_STREAM_COMMENT_MS). */
  quietCommentMs = QUIET_STREAM_COMMENT_MS,
): Response {
  const encoder = new TextEncoder();
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const writer = writable.getWriter();
  let clientGone = false;
  const cancelAll = (): void => {
    for (const run of runs) run.cancel();
  };
  // The client is gone: cancel the generations at the pool, and abort the
  // writer, as a response dropped unread never takes its pending write.
  const gone = (): void => {
    if (clientGone) return;
    clientGone = true;
    cancelAll();
    writer.abort(new Error('client disconnected')).catch(() => undefined);
  };
  // What the response's pending writes and the client's signal call back is `gone` through a weak link only: when
  // the client leaves while a write waits on it, workerd (wrangler dev) never settles that write nor fires the
  // signal, and keeps both for good; holding `gone` strongly, they kept the runs and the request (~60 KB each).
  // The task below holds `ender` for as long as it runs, so the link reaches `gone` while anything can happen.
  const ender = { gone };
  const goneLater = weakCall(ender);
  if (clientSignal?.aborted) gone();
  else clientSignal?.addEventListener('abort', goneLater, { once: true });
  let lastWriteAt = Date.now();
  // A failed write means the client disconnected too. Not awaited (see `ender`): a slow client's chunks wait in
  // the stream, at most a generation's worth.
  const send: SendFrame = (frame) => {
    if (clientGone) return;
    lastWriteAt = Date.now();
    void writer.write(encoder.encode(frame)).catch(goneLater);
  };
  const end = (): void => {
    format.close(send);
    void writer.close().catch(() => undefined);
    clientSignal?.removeEventListener('abort', goneLater);
    // Over: nothing is left to end (and naming `ender` here is what keeps it held by the task until now).
    ender.gone = () => undefined;
  };
  void (async () => {
    const comment = encoder.encode(': waiting for the pool\n\n');
    const beat = heartbeatMs > 0 ? setInterval(() => void writer.write(comment).catch(goneLater), heartbeatMs) : null;
    try {
      await opening;
    } catch (err) {
      if (beat) clearInterval(beat);
      format.failed(toApiError(err, options.id), send);
      end();
      return;
    }
    if (beat) clearInterval(beat);
    // Silent mid-stream (a pool that hangs until the stall window moves the generation on, up to 30 s and more):
    // a comment now and then keeps proxies from cutting the stream, and a failed write notices a client gone.
    // Checked twice a window: a silence gets its comment after quietCommentMs to 1.5 × it (on the window's tick alone, up to 2 ×).
    const sendComment = (): void => {
      lastWriteAt = Date.now();
      void writer.write(comment).catch(goneLater);
    };
    const quiet = setInterval(() => {
      if (!clientGone && Date.now() - lastWriteAt >= quietCommentMs) sendComment();
    }, Math.max(50, quietCommentMs / 2));
    // Before a resume: comments, and a moment for a failed write to tell of a client gone. Two: the runtime finds
    // the client gone as it sends the first, and only the writes after it fail.
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
      for (const run of runs) generators.push(paced(run.run(), options.smooth));
      format.begin(send);
      for (let i = 0; i < runs.length; i++) pull(i);
      while (pending.size > 0 && !clientGone) {
        const { index, next } = await Promise.race(pending.values());
        if (next.done) {
          pending.delete(index);
          usages[index] = next.value.usage;
          format.finished(index, next.value, send);
          continue;
        }
        format.piece(index, next.value, send);
        pull(index);
      }
      if (pending.size === 0) await format.ended(usages, send);
    } catch (err) {
      cancelAll();
      format.failed(toApiError(err, options.id), send);
    } finally {
      clearInterval(quiet);
    }
    for (const g of generators) await g.return(undefined as never).catch(() => undefined);
    end();
  })();
  return new Response(readable, { headers: { ...sseHeaders, ...Object.fromEntries(new Headers(headers)) } });
}

/**
 * vLLM's return_token_ids, chunk by chunk (undefined where not asked): the
 * choice's ids received since its previous chunk (text held back for a
 * possible stop string comes later than its ids), and in its first chunk the
 * prompt's (chat sends those with its role chunk instead).
 */
function chunkTokenIds(runs: readonly CompletionRun[], meta: ResponseMeta): (index: number) => ChunkTokenIds | undefined {
  if (!meta.tokenIds) return () => undefined;
  const idsSent = runs.map(() => 0);
  const promptSent = runs.map(() => meta.kind === 'chat');
  return (i) => {
    const output = runs[i].completionIds(idsSent[i]);
    idsSent[i] += output.length;
    if (promptSent[i]) return { output };
    promptSent[i] = true;
    return { output, prompt: runs[i].promptIds };
  };
}

function runningUsage(run: CompletionRun): RunningUsage {
  const prompt = run.promptTokens;
  const completion = run.completionTokens;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/**
 * Each choice's tool calls as a stream: a named function's arguments as
 * they come (its id, type and name with the first piece, as OpenAI streams a
 * call); `"required"`'s calls, whose names and arguments are known only once
 * their JSON array is whole, in one chunk at the end (text, where it never
 * became one: cut by max_tokens or a stop string).
 */
class StreamedToolCalls {
  private readonly ids: Array<string | null>;
  private readonly held: SourcedText[][];

  constructor(
    private readonly mode: ToolCallMode,
    choices: number,
  ) {
    this.ids = Array.from({ length: choices }, () => null);
    this.held = Array.from({ length: choices }, () => []);
  }

  /** A named call's piece to send now; null where it is held (`"required"`) or says nothing. */
  piece(choice: number, segments: SourcedText[]): { index: number; id?: string; name?: string; arguments: string } | null {
    if (this.mode.kind === 'required') {
      this.held[choice].push(...segments);
      return null;
    }
    const text = joinText(segments);
    const id = this.ids[choice];
    if (id !== null) return text === '' && tokensOf(segments).length === 0 ? null : { index: 0, arguments: text };
    this.ids[choice] = toolCallId();
    return { index: 0, id: this.ids[choice]!, name: this.mode.name, arguments: text };
  }

  /** What a choice's end sends before its finish chunk: its calls (or, unparsed, its text), and its finish reason. */
  finish(choice: number, finishReason: string): { calls: Array<{ index: number; id?: string; name?: string; arguments: string }> | null; text: SourcedText[] | null; tokens: TokenLogprob[] | null; finishReason: string } {
    if (this.mode.kind === 'named') {
      // A call with no piece yet (nothing generated) still says which it is.
      const calls = this.ids[choice] === null ? [{ index: 0, id: (this.ids[choice] = toolCallId()), name: this.mode.name, arguments: '' }] : null;
      // A named call ends as the reply did (`stop`, as OpenAI's and vLLM's forced calls end).
      return { calls, text: null, tokens: null, finishReason };
    }
    const held = this.held[choice];
    this.held[choice] = [];
    const calls = toolCallsOf(this.mode, joinText(held));
    if (calls === null) return { calls: null, text: held.length > 0 ? held : null, tokens: null, finishReason };
    return {
      calls: calls.map((call, index) => ({ index, id: call.id, name: call.function.name, arguments: call.function.arguments })),
      text: null,
      tokens: tokensOf(held),
      finishReason: toolFinishReason(this.mode, finishReason, calls),
    };
  }
}
