/**
 * The request body size limit (SSSD_MAX_BODY_BYTES): by Content-Length when
 * one is sent, before the key's limits are checked; else counted while the
 * route reads it, after them (its slot and rate token taken first). Hono's
 * bodyLimit does the same but leaves a chunked body it refused half read:
 * under `wrangler dev` the request after such a 413 got workerd's "worker
 * restarted" 503 (cancelling the body did too). Here the rest of the body
 * is read and dropped, within bounds (64 MiB, 2 s), before the 413.
 */
import { ApiError } from './api-error';

/**
 * A refused body is read on, and dropped, up to DRAIN_BYTES and for at most
 * DRAIN_MS; past either it is cancelled, which costs the next request (see
 * above). Not a multiple of the route's own limit: the user cache's 4 KiB
 * made that 32 KiB, and any key holder's 100 KB body broke someone else's
 * next request. Bounded both ways: one read per chunk, and a client may
 * send its body in one-byte chunks.
 */
const DRAIN_BYTES = 64 * 1024 * 1024;
const DRAIN_MS = 2_000;

/**
 * `reading` (a body, or a part of one) if it settles before `deadline`
 * (Date.now() time), else a 408; a read that fails is the client's body
 * breaking off, a 400. One timer, cleared either way.
 */
export async function readBy<T>(reading: Promise<T>, deadline: number, timeoutMs: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  // No deadline: no timer (one past 2^31 ms would fire at once).
  const late = new Promise<never>((_, reject) => {
    if (!Number.isFinite(deadline)) return;
    timer = setTimeout(
      () => reject(new ApiError(408, `The request body did not arrive whole within ${timeoutMs / 1000} s.`, 'invalid_request_error', 'request_timeout')),
      Math.max(0, deadline - Date.now()),
    );
  });
  try {
    return await Promise.race([reading, late]);
  } catch (err) {
    if (err instanceof ApiError) throw err;
    throw new ApiError(400, 'The request body could not be read to its end.', 'invalid_request_error', 'invalid_body');
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

/**
 * Whether the request says it has a body: chunked (any Transfer-Encoding), or a
 * Content-Length above 0. Read as 0 bytes, such a body is not "no body": under
 * `wrangler dev` workerd hands the Worker a chunked body whose framing is
 * broken (a chunk size that is no hex number) as an empty one, and read as
 * none it named the key's unnamed user on DELETE /v1/user-cache and made an
 * empty conversation (review h175). A legitimate empty chunked body reads the
 * same and is refused with it; no body at all reaches the Worker as
 * Content-Length: 0.
 */
function declaresBody(headers: Headers): boolean {
  if (headers.has('transfer-encoding')) return true;
  const length = headers.get('content-length');
  return length !== null && Number.parseInt(length, 10) > 0;
}

/**
 * A 400 where the request declares a body (declaresBody) and `readBytes`, what was read of it, is 0. The one place
 * this is checked: readLimitedBody for a body it counts (chunked), the route's reader for one sent with its length.
 */
export function refuseEmptyDeclaredBody(headers: Headers, readBytes: number): void {
  if (readBytes > 0 || !declaresBody(headers)) return;
  throw new ApiError(
    400,
    'The request declared a body (Transfer-Encoding: chunked, or a Content-Length above 0) but none could be read: its chunked framing is broken, or it is empty. To send no body, send none, or Content-Length: 0.',
    'invalid_request_error',
    'invalid_body',
  );
}

/**
 * A body refused by its Content-Length (past `maxBytes`: a 413), before its request is let in by its key's limits,
 * so it costs no rate token; one declared but absent is a 400. A chunked body is left unread here: it is counted as
 * it is read (readLimitedBody), once the key's limits have let its request in and taken its slot (review h213: read
 * whole here first, chunked uploads took neither slot nor rate token while megabytes of them sat in the isolate).
 */
export async function refuseByLength(raw: Request, maxBytes: number, timeoutMs = Infinity): Promise<void> {
  if (!raw.body) return refuseEmptyDeclaredBody(raw.headers, 0);
  const declared = raw.headers.get('content-length');
  // A length that is no number is the runtime's to refuse (it frames the body by it), as before.
  if (!isSized(raw.headers) || !(Number.parseInt(declared ?? '', 10) > maxBytes)) return;
  // Refused by its length, and drained as a counted one is: left unread, workerd (wrangler dev) held the 413 until
  // the whole body came, and forever for one that stalled (review h159).
  await drainRefused(raw.body.getReader(), 0, Date.now() + timeoutMs, timeoutMs);
  throw tooLarge(maxBytes);
}

/** Sent with its length (no Transfer-Encoding): checked by it before it is read (refuseByLength). */
function isSized(headers: Headers): boolean {
  return headers.get('content-length') !== null && !headers.has('transfer-encoding');
}

function tooLarge(maxBytes: number): ApiError {
  return new ApiError(413, `Request body too large (limit ${maxBytes} bytes).`, 'invalid_request_error', 'request_too_large');
}

/**
 * The body's bytes, read by `deadline` (Date.now() time; else a 408). One sent with its length was checked by it
 * (refuseByLength); a chunked one is counted as it is read, a 413 once past `maxBytes` (the rest drained first), and
 * a 400 where it reads as 0 bytes (refuseEmptyDeclaredBody).
 */
export async function readLimitedBody(raw: Request, maxBytes: number, deadline: number, timeoutMs = Infinity): Promise<Uint8Array> {
  if (!raw.body) return new Uint8Array(0);
  if (isSized(raw.headers)) return new Uint8Array(await readBy(raw.arrayBuffer(), deadline, timeoutMs));
  const reader = raw.body.getReader();
  // A body that breaks off (the client gave up, bad chunking) is the client's fault; one that trickles past the deadline too.
  const read = async (): Promise<ReadableStreamReadResult<Uint8Array>> => {
    try {
      return await readBy(reader.read(), deadline, timeoutMs);
    } catch (err) {
      if ((err as ApiError).status === 408) await reader.cancel().catch(() => undefined);
      throw err;
    }
  };
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await drainRefused(reader, size, deadline, timeoutMs);
      throw tooLarge(maxBytes);
    }
    chunks.push(value);
  }
  refuseEmptyDeclaredBody(raw.headers, size);
  const body = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.byteLength;
  }
  return body;
}

/**
 * A refused body read to its end, within bounds (DRAIN_BYTES, DRAIN_MS), before the 413: cancelling it left workerd
 * (wrangler dev) failing the 413 and the next request. Past a bound, or where it stalls, it is cancelled.
 */
async function drainRefused(reader: ReadableStreamDefaultReader<Uint8Array>, read: number, deadline: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + DRAIN_MS;
  for (let drained = read; drained <= DRAIN_BYTES && Date.now() < until; ) {
    // Each read within what is left of the 2 s too: a body known too large that then stalls is a 413, not a 408 later.
    const rest = await readBy(reader.read(), Math.min(deadline, until), timeoutMs).catch(() => null);
    if (rest === null) break;
    if (rest.done) return;
    drained += rest.value.byteLength;
  }
  await reader.cancel().catch(() => undefined);
}
