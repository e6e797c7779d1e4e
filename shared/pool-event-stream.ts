/**
 * Reads a pool's generation response (NDJSON, one PoolEvent per line; see
 * docs/protocol.md) as events. Shared by the edge and the serving benchmark so
 * both read the stream the same way: a broken line, an event of the wrong
 * shape, a cut connection or a stream that ends without `done` ends with one
 * `error` event, and reading stops after `done` or `error`.
 */
import { poolEventMalformation } from './pool-event-shape';
import type { PoolEvent } from './protocol';

/**
 * NDJSON body → events. A broken line, an event of the wrong shape
 * (pool-event-shape.ts) or a cut connection ends with an 'error' event.
 * Takes a web ReadableStream (fetch, workerd) or any async iterable of byte
 * chunks (a Node response read with `iterator({ destroyOnReturn: false })`,
 * so that stopping after `done` leaves a keep-alive socket usable).
 */
export async function* readPoolEvents(
  body: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  /** Ends a web stream's reading: its reader is cancelled, so a pending read ends rather than fails. */
  signal?: AbortSignal,
): AsyncGenerator<PoolEvent> {
  const chunks = 'getReader' in body ? streamChunks(body, signal) : body;
  const it = chunks[Symbol.asyncIterator]();
  const decoder = new TextDecoder();
  let buffer = '';
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
      buffer += decoder.decode(chunk.value, { stream: true });
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (line.length === 0) continue;
        let parsed: unknown;
        try {
          parsed = JSON.parse(line);
        } catch {
          yield { type: 'error', code: 'internal', message: 'pool sent a malformed event' };
          return;
        }
        // Valid JSON of the wrong shape is as broken a stream as a broken line: an error event, not a throw.
        const malformation = poolEventMalformation(parsed);
        if (malformation !== null) {
          yield { type: 'error', code: 'internal', message: `pool sent a malformed event (${malformation})` };
          return;
        }
        const event = parsed as PoolEvent;
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
