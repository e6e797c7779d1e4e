/**
 * A completion run as a Server-Sent Events response (`data: {chunk}` lines,
 * final `data: [DONE]`), or as one JSON body. Without smoothing a chunk is one
 * verification step's released text; with it, one token's text, paced by
 * BurstSmoother. Cancelling the response stream (client gone) cancels the run.
 */
import { toApiError } from './api-error';
import { BurstSmoother } from './burst-smoother';
import type { CompletionRun, CompletionSummary } from './completion-run';
import { finishChunk, joinText, roleChunk, textChunk, tokensOf, usageChunk, wholeResponse, type ResponseMeta } from './openai-format';
import type { SourcedText, TokenLogprob } from './token-text';

export interface StreamOptions {
  includeUsage: boolean;
  smooth: boolean;
}

const sseHeaders = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
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

export function streamResponse(run: CompletionRun, meta: ResponseMeta, options: StreamOptions, headers: HeadersInit): Response {
  const encoder = new TextEncoder();
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const writer = writable.getWriter();
  let clientGone = false;
  // A failed write means the client disconnected: cancel the generation at the pool.
  const send = async (payload: object | string): Promise<void> => {
    if (clientGone) return;
    try {
      await writer.write(encoder.encode(`data: ${typeof payload === 'string' ? payload : JSON.stringify(payload)}\n\n`));
    } catch {
      clientGone = true;
      run.cancel();
    }
  };
  void (async () => {
    const generator = paced(run.run(), options.smooth);
    try {
      if (meta.kind === 'chat') await send(roleChunk(meta));
      let summary: CompletionSummary | null = null;
      while (!clientGone) {
        const next = await generator.next();
        if (next.done) {
          summary = next.value;
          break;
        }
        await send(textChunk(meta, next.value));
      }
      if (summary) {
        await send(finishChunk(meta, summary.finishReason));
        if (options.includeUsage) await send(usageChunk(meta, summary.usage));
      } else {
        await generator.return(undefined as never).catch(() => undefined);
      }
    } catch (err) {
      await send(toApiError(err).toBody());
    }
    await send('[DONE]');
    await writer.close().catch(() => undefined);
  })();
  return new Response(readable, { headers: { ...sseHeaders, ...Object.fromEntries(new Headers(headers)) } });
}

/** The whole completion as one JSON response (errors before the end become OpenAI errors). */
export async function wholeCompletion(run: CompletionRun, meta: ResponseMeta): Promise<object> {
  const generator = run.run();
  const parts: string[] = [];
  const tokens: TokenLogprob[] = [];
  for (;;) {
    const next = await generator.next();
    if (next.done) {
      return wholeResponse(meta, parts.join(''), next.value.finishReason, next.value.usage, tokens);
    }
    parts.push(joinText(next.value));
    for (const t of tokensOf(next.value)) tokens.push(t);
  }
}
