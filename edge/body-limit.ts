/**
 * The request body size limit (SSSD_MAX_BODY_BYTES): by Content-Length when
 * one is sent, else counted while reading. Hono's bodyLimit does the same
 * but leaves a chunked body it refused half read: under `wrangler dev` the
 * request after such a 413 got workerd's "worker restarted" 503 (cancelling
 * the body did too). Here the rest of the body is read and dropped, up to a
 * bound, before the 413.
 */
import type { Context } from 'hono';
import { ApiError } from './api-error';

/**
 * A refused body is read on, and dropped, up to this many bytes; past that
 * it is cancelled. Cloudflare itself refuses bodies over 100 MB on most
 * plans, so in production this reads whatever gets through; reading costs
 * the isolate next to no CPU and holds no memory.
 */
const DRAIN_BYTES = 128 * 1024 * 1024;

/** Reads the body once (at most `maxBytes`), or throws a 413; later handlers read the buffered copy. */
export async function limitRequestBody(c: Context, maxBytes: number, next: () => Promise<void>): Promise<void> {
  const raw = c.req.raw;
  const tooLarge = (): ApiError => new ApiError(413, `Request body too large (limit ${maxBytes} bytes).`, 'invalid_request_error', 'request_too_large');
  if (!raw.body) return next();
  const declared = raw.headers.get('content-length');
  if (declared !== null && !raw.headers.has('transfer-encoding')) {
    if (Number.parseInt(declared, 10) > maxBytes) throw tooLarge();
    return next();
  }
  const reader = raw.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      // Read to its end, up to a bound, before the 413: cancelling it left workerd (wrangler dev) failing the next request.
      for (let drained = size; drained <= DRAIN_BYTES; ) {
        const rest = await reader.read();
        if (rest.done) throw tooLarge();
        drained += rest.value.byteLength;
      }
      await reader.cancel().catch(() => undefined);
      throw tooLarge();
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.byteLength;
  }
  c.req.raw = new Request(raw, { body });
  return next();
}
