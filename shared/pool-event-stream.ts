/**
 * Reads a pool's generation response as events, in either of its forms:
 * binary frames (pool-event-frames.ts, what the edge and the serving benchmark
 * ask for) or NDJSON (pool-event-lines.ts, what a pool answers a client that
 * does not ask, and what pools from before frames answer everyone). Shared by
 * the edge and the serving benchmark so both read the stream the same way: a
 * broken event, an event of the wrong shape, a cut connection or a stream that
 * ends without `done` ends with one `error` event, and reading stops after
 * `done` or `error`. See docs/protocol.md.
 */
import { POOL_EVENT_FRAMES_TYPE, PoolEventFrameDecoder } from './pool-event-frames';
import type { PoolEventDecoder } from './pool-event-decoder';
import { PoolEventLineDecoder } from './pool-event-lines';
import type { PoolEvent } from './protocol';

export type PoolEventFormat = 'frames' | 'ndjson';

/** The form of a generation's body, from its `content-type`: frames only where the pool says so. */
export function poolEventFormat(contentType: string | null | undefined): PoolEventFormat {
  const mediaType = (contentType ?? '').split(';', 1)[0].trim().toLowerCase();
  return mediaType === POOL_EVENT_FRAMES_TYPE ? 'frames' : 'ndjson';
}

export interface ReadPoolEventsOptions {
  /** The body's form (poolEventFormat of its content-type); NDJSON when not given. */
  format?: PoolEventFormat;
  /** Ends a web stream's reading: its reader is cancelled, so a pending read ends rather than fails. */
  signal?: AbortSignal;
}

/**
 * A generation's body → events. Takes a web ReadableStream (fetch, workerd)
 * or any async iterable of byte chunks (a Node response read with
 * `iterator({ destroyOnReturn: false })`, so that stopping after `done` leaves
 * a keep-alive socket usable).
 */
export async function* readPoolEvents(
  body: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  options: ReadPoolEventsOptions = {},
): AsyncGenerator<PoolEvent> {
  const chunks = 'getReader' in body ? streamChunks(body, options.signal) : body;
  const it = chunks[Symbol.asyncIterator]();
  const decoder: PoolEventDecoder = options.format === 'frames' ? new PoolEventFrameDecoder() : new PoolEventLineDecoder();
  let sawDone = false;
  try {
    for (;;) {
      let chunk: IteratorResult<Uint8Array>;
      try {
        chunk = await it.next();
      } catch (err) {
        if (!sawDone) yield { type: 'error', code: 'internal', message: `pool stream broke: ${String(err)}` };
        return;
      }
      if (chunk.done) break;
      decoder.push(chunk.value);
      for (let event = decoder.next(); event !== null; event = decoder.next()) {
        if (typeof event === 'string') {
          yield { type: 'error', code: 'internal', message: event };
          return;
        }
        if (event.type === 'done') sawDone = true;
        yield event;
        if (event.type === 'done' || event.type === 'error') return;
      }
    }
    if (!sawDone) yield { type: 'error', code: 'internal', message: 'pool stream ended without a done event' };
  } finally {
    await it.return?.();
  }
}

/** A web stream's chunks; stopping early, or `signal`, cancels the stream. */
async function* streamChunks(body: ReadableStream<Uint8Array>, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  // Cancelled, a pending read ends ({done: true}) with no error made and kept (see PoolClient.generate).
  const cancel = (): void => void reader.cancel().catch(() => undefined);
  if (signal?.aborted) cancel();
  else signal?.addEventListener('abort', cancel, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    signal?.removeEventListener('abort', cancel);
    reader.releaseLock();
    await body.cancel().catch(() => undefined);
  }
}
