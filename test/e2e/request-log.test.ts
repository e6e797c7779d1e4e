// The edge's observability against the real stack: one JSON line per API
// request in the Worker's log, found by the x-request-id the client got and
// joined to the pool's by the tenant hash, with no text of the request in it,
// the line of every stream whose client leaves (and its stored `cancelled`
// response); and the readiness probe, 200 while a pool can take work and 503 once none can.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { poolTenant } from '../../edge/completion-handler';
import type { RequestLogLine } from '../../edge/request-log';
import { generatePoolToken, startEdge, startPool, type RunningEdge, type RunningPool } from '../../launcher/stack';
import { startAll, poolUrlOn } from './stack-fixture';
import { freePort } from '../../launcher/service-process';
import { models } from '../support/shared-data';

const KEY = 'request-log-key';
/** Words of the prompt, looked for in the log: none may be there. */
const PROMPT = 'Once upon a time a zebra named Quillfeather';
/** Streams of each API (chat, Responses) whose clients leave at once (review h223: 44 of 59 had no line, at 60). */
const LEAVING_EACH = 12;
/**
 * A body left unread this long is a client gone: shorter than the default (2 s), as the tiny model runs the rest of
 * a reply in 1 to 3 s, and a generation that ends first is one nothing can tell from a reply read whole.
 */
const STALLED_CLIENT_MS = 300;
let pool: RunningPool;
let edge: RunningEdge;
let dir: string;
const edgeOutput: string[] = [];

beforeAll(async () => {
  const token = generatePoolToken();
  dir = mkdtempSync(path.join(tmpdir(), 'sssd-request-log-'));
  // Both at once: the edge needs the pool only to serve.
  const poolPort = await freePort();
  [pool, edge] = await startAll([
    startPool({ model: models.stories260K.checkpoint, tokenizer: models.stories260K.tokenizer, token, port: poolPort }),
    // Room for the abandoned streams below, all at once.
    startEdge({ poolUrls: [poolUrlOn(poolPort)], poolToken: token, devKey: KEY, persistTo: dir, vars: { SSSD_DEFAULT_CONCURRENCY: String(2 * LEAVING_EACH), SSSD_STREAM_STALLED_CLIENT_MS: String(STALLED_CLIENT_MS) }, echo: (line) => void edgeOutput.push(line) }),
  ]);
}, 180_000);

afterAll(async () => {
  await Promise.all([edge?.stop(), pool?.service.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The request line of `requestId` in the edge's output, waited for (a stream's is written as it ends). */
async function lineOf(requestId: string): Promise<{ line: RequestLogLine; text: string }> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const text = edgeOutput.find((l) => l.includes(`"id":"${requestId}"`));
    if (text) return { line: JSON.parse(text.slice(text.indexOf('{'))) as RequestLogLine, text };
    if (Date.now() > deadline) throw new Error(`no request line for ${requestId} in:\n${edgeOutput.slice(-20).join('\n')}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function post(route: string, body: object, key = KEY): Promise<Response> {
  return fetch(`${edge.url}${route}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

describe('the request log', () => {
  it("writes one line per request under the id the client got, with the pool's tenant hash and the figures, and none of the text", async () => {
    const res = await post('/v1/completions', { model: 'stories260K', prompt: PROMPT, max_tokens: 12, temperature: 0, n: 2 });
    expect(res.status).toBe(200);
    const id = res.headers.get('x-request-id')!;
    const body = (await res.json()) as { choices: Array<{ text: string }>; usage: { prompt_tokens: number; completion_tokens: number; prompt_tokens_details: { cached_tokens: number } } };
    const { line, text } = await lineOf(id);
    // The dev key's tenant is "dev": hashed as the pool gets it.
    expect(line).toMatchObject({
      msg: 'request',
      id,
      method: 'POST',
      route: '/v1/completions',
      status: 200,
      tenant: (await poolTenant('dev')).slice(0, 12),
      model: 'stories260K',
      n: 2,
      stream: false,
      // The key, as `sssd key create` prints its hash, to tell two keys of a tenant apart; cached prompt tokens as usage says (review h143).
      key: createHash('sha256').update(KEY).digest('hex').slice(0, 12),
      prompt_tokens: body.usage.prompt_tokens,
      cached_tokens: body.usage.prompt_tokens_details.cached_tokens,
      completion_tokens: body.usage.completion_tokens,
      finish_reasons: ['length', 'length'],
      // The pool of each choice, by its place in SSSD_POOL_URLS (review h147).
      served_by: [0, 0],
      pools_tried: 2,
      resumes: 0,
    });
    expect(line.error).toBeUndefined();
    expect(line.first_token_ms).toBeLessThanOrEqual(line.ms);
    expect(edgeOutput.filter((l) => l.includes(id))).toHaveLength(1);
    for (const secret of ['Quillfeather', 'zebra', KEY, body.choices[0].text.trim().split(' ').slice(-3).join(' ')]) expect(text).not.toContain(secret);
  });

  it("writes a stream's line when it ends, and a refused request's with its status and code", async () => {
    const res = await post('/v1/chat/completions', { model: 'stories260K', messages: [{ role: 'user', content: PROMPT }], max_tokens: 8, temperature: 0, stream: true });
    const id = res.headers.get('x-request-id')!;
    await res.text();
    expect((await lineOf(id)).line).toMatchObject({ route: '/v1/chat/completions', status: 200, stream: true, n: 1, finish_reasons: ['length'], completion_tokens: 8 });

    const refused = await post('/v1/completions', { model: 'stories260K', prompt: PROMPT }, 'not-a-key');
    expect(refused.status).toBe(401);
    const { line } = await lineOf(refused.headers.get('x-request-id')!);
    expect(line).toMatchObject({ route: '/v1/completions', status: 401, error: 'invalid_api_key' });
    expect(line.tenant).toBeUndefined();
    expect(line.key).toBeUndefined();

    // The route as registered, never the path as sent.
    const unknown = await fetch(`${edge.url}/no-such-route-${PROMPT.length}`);
    const { line: stray, text } = await lineOf(unknown.headers.get('x-request-id')!);
    expect(stray).toMatchObject({ route: '/*', status: 404, error: 'not_found' });
    expect(text).not.toContain('no-such-route');
  });
});

describe('a stream whose client leaves', () => {
  /** Posts a stream, reads it to its first text, and leaves (aborts): its x-request-id. */
  async function leftAfterFirstText(route: string, body: object, text: string): Promise<string> {
    const controller = new AbortController();
    const res = await fetch(`${edge.url}${route}`, { method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', 'x-sssd-smooth': '1' }, body: JSON.stringify(body), signal: controller.signal });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let seen = '';
    while (!seen.includes(text)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended before its first text: ${seen}`);
      seen += decoder.decode(value, { stream: true });
    }
    controller.abort();
    return res.headers.get('x-request-id')!;
  }

  it("has its line, client_left, and a stored response is stored cancelled, for every one of many that leave at once", async () => {
    // Long enough (smoothed, 400 tokens) that every generation is still running when its client leaves.
    const chat = { model: 'stories260K', messages: [{ role: 'user', content: PROMPT }], max_tokens: 400, ignore_eos: true, temperature: 1, stream: true, store: true };
    const responses = { model: 'stories260K', input: PROMPT, max_output_tokens: 400, temperature: 1, stream: true, store: true };
    const left = await Promise.all(
      Array.from({ length: 2 * LEAVING_EACH }, (_, i) =>
        i % 2 === 0 ? leftAfterFirstText('/v1/chat/completions', chat, '"content":"') : leftAfterFirstText('/v1/responses', responses, 'response.output_text.delta'),
      ),
    );
    // Each line, written once the edge has cancelled the generation (review h223: most never were, their request's
    // code stopped by the runtime as the client went).
    const deadline = Date.now() + 10_000;
    const lineText = (id: string): string | undefined => edgeOutput.find((l) => l.includes(`"id":"${id}"`));
    while (left.some((id) => !lineText(id)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(left.filter((id) => !lineText(id)), 'requests with no line').toEqual([]);
    for (const id of left) expect((await lineOf(id)).line, id).toMatchObject({ status: 200, stream: true, client_left: true });
    // Their key's slots came back with their cancels, not with their leases (5 s): as many again at once are served.
    const again = await Promise.all(Array.from({ length: 2 * LEAVING_EACH }, () => post('/v1/completions', { model: 'stories260K', prompt: PROMPT, max_tokens: 1 })));
    expect(await Promise.all(again.map(async (res) => `${res.status} ${res.status === 200 ? '' : await res.text()}`.trim()))).toEqual(again.map(() => '200'));
    for (const res of again) if (!res.bodyUsed) await res.body?.cancel();
    // Stored after the line (KV's one write a second per key): a 404 meanwhile is waited out, within the deadline.
    const statuses: string[] = [];
    for (const id of left.filter((_, i) => i % 2 === 1).map((id) => `resp_${id.slice('req-'.length)}`)) {
      for (;;) {
        const stored = await fetch(`${edge.url}/v1/responses/${id}`, { headers: { authorization: `Bearer ${KEY}` } });
        if (stored.status === 404 && Date.now() < deadline + 5_000) {
          await stored.body?.cancel();
          await new Promise((resolve) => setTimeout(resolve, 200));
          continue;
        }
        const response = stored.status === 200 ? ((await stored.json()) as { status: string; output: Array<{ status: string }> }) : null;
        statuses.push(response === null ? String(stored.status) : `${response.status}/${response.output[0]?.status}`);
        break;
      }
    }
    expect(statuses).toEqual(Array.from({ length: LEAVING_EACH }, () => 'cancelled/incomplete'));
  });
});

describe('the readiness probe', () => {
  it('answers 200 with the pools counted while one can take work, and 503 once none can; /healthz stays 200', async () => {
    const ready = await fetch(`${edge.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ok: true, pools: { healthy: 1, total: 1 } });
    await pool.service.stop();
    // The isolate's view of a pool is at most 2 s old: a probe soon after finds it down.
    const deadline = Date.now() + 10_000;
    let last: Response;
    for (;;) {
      last = await fetch(`${edge.url}/readyz`);
      if (last.status === 503 || Date.now() > deadline) break;
      await last.body?.cancel();
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(last.status).toBe(503);
    expect(await last.json()).toEqual({ ok: false, pools: { healthy: 0, total: 1 } });
    expect((await fetch(`${edge.url}/healthz`)).status).toBe(200);
    // vLLM's name for it too (review h118).
    expect((await fetch(`${edge.url}/health`)).status).toBe(200);
  });
});
