// One real pool behind an edge under wrangler dev, frozen (SIGSTOP) while it
// streams a reply. With no other pool to go on on, the stream waits for its
// pool: back within the stall window, the reply goes on where it was; back
// after it, the reply resumes on the same pool; not back, the stream ends in
// an error event (the usage chunk first) once the resume's window is out too.
// What a user sees of a pool frozen whole (docs/deploy.md, "4. When paged").
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatePoolToken, startEdge, startPool, type RunningEdge, type RunningPool } from '../../launcher/stack';
import { freePort } from '../../launcher/service-process';
import { streamReply, type StreamedReply } from '../support/streamed-reply';
import { edgeRequestLine } from '../support/edge-request-line';
import { startAll, poolUrlOn } from './stack-fixture';
import { models } from '../support/shared-data';

const KEY = 'freeze-key';
/** The edge's stall window: short, so that a freeze past it and past the resume's window after it fit a test. */
const STALL_SECONDS = 4;
let pool: RunningPool;
let edge: RunningEdge;
let dir: string;

beforeAll(async () => {
  const token = generatePoolToken();
  dir = mkdtempSync(path.join(tmpdir(), 'sssd-freeze-'));
  const port = await freePort();
  [pool, edge] = await startAll([
    startPool({ model: models.stories260K.checkpoint, tokenizer: models.stories260K.tokenizer, token, port }),
    startEdge({
      poolUrls: [poolUrlOn(port)],
      poolToken: token,
      devKey: KEY,
      persistTo: dir,
      vars: { SSSD_DEFAULT_RPM: '100000', SSSD_POOL_STALL_SECONDS: String(STALL_SECONDS), SSSD_STREAM_QUIET_COMMENT_MS: '500' },
    }),
  ]);
}, 180_000);

afterAll(async () => {
  pool?.service.signal('SIGCONT');
  await Promise.all([edge?.stop(), pool?.service.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Speculation off and the end token ignored: one token a step for 400
 * steps, so the freeze lands mid-reply (a repeated greedy request is
 * otherwise drafted whole from the user's cache, in a few steps).
 */
const LONG = { model: 'stories260K', max_tokens: 400, temperature: 0, speculation: 'off', ignore_eos: true };

/** The reply streamed, its pool frozen as its first text comes and let go `frozenMs` later (never: Infinity). */
async function frozenFor(route: 'completions' | 'chat/completions', body: Record<string, unknown>, frozenMs: number): Promise<{ reply: StreamedReply; frozenAt: number }> {
  let frozenAt = 0;
  let thaw: Promise<void> = Promise.resolve();
  const reply = await streamReply({
    url: edge.url,
    key: KEY,
    route,
    body,
    onFirstText: () => {
      pool.service.signal('SIGSTOP');
      frozenAt = performance.now();
      if (Number.isFinite(frozenMs)) thaw = sleep(frozenMs).then(() => pool.service.signal('SIGCONT'));
    },
  });
  await thaw;
  return { reply, frozenAt };
}

/** The pool answers again (after a freeze that outlasted a test): a short request served. */
async function servedAgain(): Promise<void> {
  let status = 0;
  for (let i = 0; i < 20 && status !== 200; i++) {
    const res = await fetch(`${edge.url}/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'stories260K', prompt: 'Once', max_tokens: 4 }),
    });
    status = res.status;
    await res.text();
    if (status !== 200) await sleep(500);
  }
  expect(status).toBe(200);
}

describe('the only pool frozen mid-reply', () => {
  it('back within the stall window: the stream waits, then goes on token for token as an unbroken greedy run, no resume', async () => {
    const body = { ...LONG, prompt: 'Lily went to the park with her mom.' };
    const whole = await streamReply({ url: edge.url, key: KEY, route: 'completions', body });
    expect(whole.error).toBeNull();
    expect(whole.completionTokens).toBe(400);
    const { reply, frozenAt } = await frozenFor('completions', body, 1_500);
    // The freeze held the reply mid-way (the edge filled the silence with comments), and it went on after it.
    expect(reply.quietComments).toBeGreaterThan(0);
    expect(reply.endedAt - frozenAt).toBeGreaterThan(1_400);
    expect(reply.error).toBeNull();
    expect(reply.text).toBe(whole.text);
    expect(reply.finish).toBe('length');
    expect(reply.completionTokens).toBe(400);
    // Waited for, not resumed: a resume on the only pool would have prefilled it all again.
    expect(await edgeRequestLine(edge, reply.id)).toMatchObject({ status: 200, resumes: 0, completion_tokens: 400 });
    expect(edge.service.tail()).not.toContain(`generation ${reply.id} resumes`);
  }, 40_000);

  it('back after the stall window, within the resume\'s: the reply resumes on the same pool, token for token as an unbroken greedy run', async () => {
    const body = { ...LONG, messages: [{ role: 'user', content: 'Tell me about a cat and a dog.' }] };
    const whole = await streamReply({ url: edge.url, key: KEY, route: 'chat/completions', body });
    expect(whole.error).toBeNull();
    expect(whole.completionTokens).toBe(400);
    // Past the window by two seconds, two before the resume's is out: the edge gives the stream up, and its resume waits for the pool.
    const { reply } = await frozenFor('chat/completions', body, STALL_SECONDS * 1000 + 2_000);
    expect(reply.quietComments).toBeGreaterThan(0);
    expect(reply.error).toBeNull();
    expect(reply.text).toBe(whole.text);
    expect(reply.finish).toBe('length');
    expect(reply.completionTokens).toBe(400);
    expect(await edgeRequestLine(edge, reply.id)).toMatchObject({ status: 200, resumes: 1, completion_tokens: 400 });
    expect(edge.service.tail()).toContain(`edge: generation ${reply.id} resumes on the same pool, the only one, once it answers again`);
  }, 40_000);

  it('not back: the stream ends with the usage chunk, then an error event, once the stall window and the resume\'s are out', async () => {
    const body = { ...LONG, messages: [{ role: 'user', content: 'Tell me about a big red ball.' }] };
    try {
      const { reply, frozenAt } = await frozenFor('chat/completions', body, Infinity);
      const tookMs = reply.endedAt - frozenAt;
      expect(reply.text.length).toBeGreaterThan(0);
      expect(reply.kinds.slice(-2)).toEqual(['usage', 'error']);
      expect(reply.completionTokens).toBeGreaterThan(0);
      expect(reply.completionTokens).toBeLessThan(400);
      expect(reply.error).toMatch(new RegExp(`^The generation was cut off after ${reply.completionTokens} tokens: its pool, the only one here, failed and could not go on with it in the \\d+ s since its last tokens\\. A retry starts it over\\.$`));
      // The silence it names is the one the client sat through (the window and the resume's), not the window alone (review h241).
      const saidS = Number(/in the (\d+) s since/.exec(reply.error ?? '')?.[1]);
      expect(saidS).toBeGreaterThanOrEqual(2 * STALL_SECONDS - 1);
      expect(saidS).toBeLessThanOrEqual(Math.ceil(tookMs / 1000) + 1);
      // The stall window, then the resume's rounds for another window: never sooner; the bound above is loose for a loaded machine.
      expect(tookMs).toBeGreaterThan(2 * STALL_SECONDS * 1000 - 500);
      expect(tookMs).toBeLessThan(4 * STALL_SECONDS * 1000 + 10_000);
      expect(reply.quietComments).toBeGreaterThan(2);
      expect(await edgeRequestLine(edge, reply.id)).toMatchObject({ status: 200, resumes: 0, error: 'pool_unavailable', completion_tokens: reply.completionTokens });
    } finally {
      pool.service.signal('SIGCONT');
    }
    await servedAgain();
  }, 40_000);
});
