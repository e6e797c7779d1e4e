/**
 * Reads a JSON request body with a hard size cap: the connection is not
 * allowed to push more than `maxBytes` into memory, whatever Content-Length
 * claims. Only an uncompressed one (no Content-Encoding, or identity): any
 * other is a 415 before it is read. One nested past MAX_BODY_NESTING is a
 * 400 before it is parsed.
 */
import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import { nestsDeeperThan } from '../../shared/json-nesting';
import { MAX_BODY_NESTING } from '../../shared/protocol';
import { HttpError } from './http-error';

export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  // Nothing is decompressed here: a gzip body was "not valid UTF-8", and an unknown coding was read as identity (review h175).
  const encoding = req.headers['content-encoding']?.trim().toLowerCase();
  if (encoding && encoding !== 'identity') {
    throw new HttpError(415, 'bad_request', `Content-Encoding ${JSON.stringify(encoding.slice(0, 40))} is not supported; send the JSON uncompressed`);
  }
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    throw new HttpError(413, 'bad_request', `request body is ${declared} bytes; the limit is ${maxBytes}`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      // Past the cap (a body of no declared length) the rest is read and dropped, not kept: stopping at once
      // destroyed the connection, and a client still sending got a reset instead of its 413. One more cap's worth
      // at most; a client that sends on past that gets the reset.
      if (size > 2 * maxBytes) throw new HttpError(413, 'bad_request', `request body exceeds the limit of ${maxBytes} bytes`);
      if (size <= maxBytes) chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof HttpError) throw err;
    // The client went away halfway through its body (Node's "aborted", a
    // reset): the client's doing, not the pool's, and nobody is left to answer.
    throw new HttpError(400, 'bad_request', `the request body did not arrive whole: ${(err as Error).message}`);
  }
  if (size > maxBytes) throw new HttpError(413, 'bad_request', `request body exceeds the limit of ${maxBytes} bytes`);
  const body = Buffer.concat(chunks);
  // Read loosely, a bad byte became U+FFFD and the request ran on text it never sent (review h142).
  if (!isUtf8(body)) throw new HttpError(400, 'bad_request', 'request body is not valid UTF-8; send JSON encoded as UTF-8');
  const text = body.toString('utf8');
  if (text.length === 0) throw new HttpError(400, 'bad_request', 'request body is empty; expected JSON');
  // Before the parse, which deep nesting holds on this, the pool's only thread, for seconds.
  if (nestsDeeperThan(text, MAX_BODY_NESTING)) throw new HttpError(400, 'bad_request', `request body nests arrays and objects deeper than ${MAX_BODY_NESTING} levels; no request of the protocol needs more`);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new HttpError(400, 'bad_request', `request body is not valid JSON: ${(err as Error).message}`);
  }
}
