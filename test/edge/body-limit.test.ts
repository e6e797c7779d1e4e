// The edge's body limits on a real Request stream (what workerd hands the Worker).
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { readLimitedBody, refuseByLength } from '../../edge/body-limit';

/** A body of these chunks, then (when `stall`) nothing, never ending; `headers` as workerd passes them on. */
function chunked(chunks: Uint8Array[], stall: boolean, headers: Record<string, string> = {}): Request {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      if (!stall) controller.close();
    },
  });
  return new Request('http://edge/v1/completions', { method: 'POST', body, headers, duplex: 'half' } as RequestInit & { duplex: 'half' });
}

/** The route's read of the body (after its key's limits): its text, or what refused it, and how long it took. */
async function limited(request: Request, maxBytes: number, timeoutMs: number): Promise<{ error: ApiError | null; ms: number; body: string | null }> {
  const started = performance.now();
  try {
    const bytes = await readLimitedBody(request, maxBytes, Date.now() + timeoutMs, timeoutMs);
    return { error: null, ms: performance.now() - started, body: new TextDecoder().decode(bytes) };
  } catch (err) {
    return { error: err as ApiError, ms: performance.now() - started, body: null };
  }
}

describe('readLimitedBody', () => {
  it('reads a chunked body within the limit, whole', async () => {
    const r = await limited(chunked([new TextEncoder().encode('{"a":'), new TextEncoder().encode('1}')], false), 1024, 5_000);
    expect(r.error).toBeNull();
    expect(r.body).toBe('{"a":1}');
  });

  it('refuses a chunked body that reads as 0 bytes, and reads one declared empty or none as empty', async () => {
    // workerd (wrangler dev) hands the Worker a chunked body with a broken chunk size so: read as none, a DELETE
    // /v1/user-cache forgot the key's unnamed user instead of the named one (review h175). (One sent with its
    // length is checked where it is read.)
    const r = await limited(chunked([], false, { 'transfer-encoding': 'chunked' }), 1024, 5_000);
    expect(r.error).toMatchObject({ status: 400, code: 'invalid_body' });
    // No body at all reaches the Worker as Content-Length: 0, or with no body.
    expect(await limited(chunked([], false, { 'content-length': '0' }), 1024, 5_000)).toMatchObject({ error: null, body: '' });
    expect(await limited(new Request('http://edge/v1/user-cache', { method: 'DELETE' }), 1024, 5_000)).toMatchObject({ error: null, body: '' });
    expect(await limited(chunked([new TextEncoder().encode('{}')], false, { 'transfer-encoding': 'chunked' }), 1024, 5_000)).toMatchObject({ error: null, body: '{}' });
  });

  it('refuses a chunked body past the limit with a 413 once its count passes it', async () => {
    const r = await limited(chunked([new Uint8Array(600), new Uint8Array(600)], false), 1024, 5_000);
    expect(r.error).toMatchObject({ status: 413, code: 'request_too_large' });
    // At the limit exactly it is read.
    expect((await limited(chunked([new Uint8Array(512), new Uint8Array(512)], false), 1024, 5_000)).error).toBeNull();
  });

  it('refuses a chunked body that stalls with a 408 at its deadline', async () => {
    const r = await limited(chunked([new TextEncoder().encode('{"a":')], true), 1024, 300);
    expect(r.error?.status).toBe(408);
    expect(r.ms).toBeGreaterThan(250);
    expect(r.ms).toBeLessThan(2_000);
  });

  it('answers a body known too large that then stalls with a 413 within the 2 s it is drained for, not a 408 at the deadline', async () => {
    const r = await limited(chunked([new Uint8Array(2000)], true), 1024, 20_000);
    expect(r.error?.status).toBe(413);
    expect(r.ms).toBeLessThan(4_000);
  });
});

describe('refuseByLength', () => {
  it('refuses a body by its Content-Length past the limit, and leaves a chunked one unread', async () => {
    const sized = chunked([new Uint8Array(2000)], false, { 'content-length': '2000' });
    await expect(refuseByLength(sized, 1024, 5_000)).rejects.toMatchObject({ status: 413, code: 'request_too_large' });
    await expect(refuseByLength(chunked([new Uint8Array(10)], false, { 'content-length': '10' }), 1024, 5_000)).resolves.toBeUndefined();
    // Chunked, however large: not a byte read here (its key's limits come first; the route counts it as it reads).
    const stream = chunked([new Uint8Array(2000)], false, { 'transfer-encoding': 'chunked' });
    await refuseByLength(stream, 1024, 5_000);
    expect(stream.bodyUsed).toBe(false);
    expect((await limited(stream, 1024, 5_000)).error?.status).toBe(413);
  });

  it('refuses a request that declares a body but has none', async () => {
    const none = new Request('http://edge/v1/conversations', { method: 'POST', headers: { 'content-length': '5' } });
    await expect(refuseByLength(none, 1024)).rejects.toMatchObject({ status: 400, code: 'invalid_body' });
  });
});
