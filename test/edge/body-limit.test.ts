// The edge's body limits on a real Request stream (what workerd hands the Worker).
import type { Context } from 'hono';
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { limitRequestBody } from '../../edge/body-limit';

/** A chunked body: these chunks, then (when `stall`) nothing, never ending; `headers` as workerd passes them on. */
function chunked(chunks: Uint8Array[], stall: boolean, headers: Record<string, string> = {}): Request {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      if (!stall) controller.close();
    },
  });
  return new Request('http://edge/v1/completions', { method: 'POST', body, headers, duplex: 'half' } as RequestInit & { duplex: 'half' });
}

async function limited(request: Request, maxBytes: number, timeoutMs: number): Promise<{ error: ApiError | null; ms: number; body: string | null }> {
  const c = { req: { raw: request } } as unknown as Context;
  const started = performance.now();
  let body: string | null = null;
  try {
    await limitRequestBody(c, maxBytes, async () => {
      body = await c.req.raw.text();
    }, timeoutMs);
    return { error: null, ms: performance.now() - started, body };
  } catch (err) {
    return { error: err as ApiError, ms: performance.now() - started, body };
  }
}

describe('limitRequestBody', () => {
  it('passes a chunked body within the limit on, whole', async () => {
    const r = await limited(chunked([new TextEncoder().encode('{"a":'), new TextEncoder().encode('1}')], false), 1024, 5_000);
    expect(r.error).toBeNull();
    expect(r.body).toBe('{"a":1}');
  });

  it('refuses a chunked body that reads as 0 bytes, and passes one declared empty or none on', async () => {
    // workerd (wrangler dev) hands the Worker a chunked body with a broken chunk size so: read as none, a DELETE
    // /v1/user-cache forgot the key's unnamed user instead of the named one (review h175). (One sent with its
    // length is passed on unread, and checked where it is read.)
    const r = await limited(chunked([], false, { 'transfer-encoding': 'chunked' }), 1024, 5_000);
    expect(r.error).toMatchObject({ status: 400, code: 'invalid_body' });
    expect(r.body).toBeNull();
    // No body at all reaches the Worker as Content-Length: 0, or with no body.
    const declaredEmpty = await limited(chunked([], false, { 'content-length': '0' }), 1024, 5_000);
    expect(declaredEmpty).toMatchObject({ error: null, body: '' });
    const none = await limited(new Request('http://edge/v1/user-cache', { method: 'DELETE' }), 1024, 5_000);
    expect(none).toMatchObject({ error: null, body: '' });
    // A chunked body with bytes is read as before.
    expect(await limited(chunked([new TextEncoder().encode('{}')], false, { 'transfer-encoding': 'chunked' }), 1024, 5_000)).toMatchObject({ error: null, body: '{}' });
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
