// A background response whose run is lost with its edge (review h157), against the real stack: a pool behind a proxy
// that holds a generation's stream (a run that goes on, writing nothing), and `wrangler dev` on a local KV kept on
// disk, killed outright mid-run and started again on the same state. Its stream read again ended after ~77 s of
// comments, and a poll said `queued` until its deadline and a minute more; the run's heartbeat tells it within
// seconds, and a live run that is only quiet is never taken for lost.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatePoolToken, startEdge, startPool, type RunningEdge, type RunningPool } from '../../launcher/stack';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy';
import { models } from '../support/shared-data';
import { startAll, poolUrlOn } from './stack-fixture';
import { freePort } from '../../launcher/service-process';

const KEY = 'lost-run-key';
const PROMPT = 'Once upon a time, there was a little dog named Max.';
/**
 * Long enough that a run's deadline (and the minute after it, when a poll took a queued record for a dead run
 * before heartbeats) is far past anything these tests wait for; a pool silent as long is not moved from either.
 */
const DEADLINE_S = 300;
/**
 * A run's heartbeat interval (SSSD_BACKGROUND_HEARTBEAT_MS, shorter than its 5 s default so that the bound is waited
 * out in seconds: the waits below are set by it) and the bound where it ran, three of them (lostAfterMs).
 */
const BEAT_MS = 2_000;
const LOST_AFTER_MS = 3 * BEAT_MS;
/** A poll this often while the run is quiet: well over 15 of them in the window past the bound, on a loaded machine too. */
const POLL_EVERY_MS = 200;

let pool: RunningPool;
let proxy: FaultProxy;
let edge: RunningEdge;
let dir: string;
let token: string;
let client: OpenAI;

function startTheEdge(): Promise<RunningEdge> {
  const vars = { SSSD_DEFAULT_RPM: '100000', SSSD_BACKGROUND_DEADLINE_SECONDS: String(DEADLINE_S), SSSD_POOL_STALL_SECONDS: String(DEADLINE_S), SSSD_BACKGROUND_HEARTBEAT_MS: String(BEAT_MS) };
  return startEdge({ poolUrls: [proxy.url], poolToken: token, devKey: KEY, persistTo: dir, vars });
}

beforeAll(async () => {
  token = generatePoolToken();
  dir = mkdtempSync(path.join(tmpdir(), 'sssd-lost-run-'));
  // The pool and the edge at once (the edge needs the pool only to serve), the proxy before both.
  const poolPort = await freePort();
  proxy = await startFaultProxy(poolUrlOn(poolPort));
  [pool, edge] = await startAll([startPool({ model: models.stories260K.checkpoint, tokenizer: models.stories260K.tokenizer, token, port: poolPort }), startTheEdge()]);
  client = new OpenAI({ apiKey: KEY, baseURL: `${edge.url}/v1`, maxRetries: 0 });
}, 180_000);

afterAll(async () => {
  await Promise.all([edge?.stop(), proxy?.close(), pool?.service.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type StreamEvent = OpenAI.Responses.ResponseStreamEvent;

/**
 * Two background responses whose generations the proxy holds after their first tokens (a pool that goes on slowly,
 * sending nothing): one made with stream, read up to its first text, and one without.
 */
async function twoHeld(): Promise<{ streamed: string; seen: StreamEvent[]; plain: string }> {
  proxy.mode = 'stall';
  proxy.afterTokenEvents = 1;
  try {
    const params = { model: 'default', input: PROMPT, max_output_tokens: 200, temperature: 0, background: true } as const;
    const seen: StreamEvent[] = [];
    for await (const event of await client.responses.create({ ...params, stream: true })) {
      seen.push(event);
      if (event.type === 'response.output_text.delta') break;
    }
    const plain = await client.responses.create(params);
    return { streamed: (seen[0] as OpenAI.Responses.ResponseCreatedEvent).response.id, seen, plain: plain.id };
  } finally {
    proxy.mode = 'pass';
  }
}

describe('a background run lost with its edge', () => {
  it('is never shown failed while it runs, however long nothing comes from its pool', async () => {
    const { streamed, plain } = await twoHeld();
    // Its pool sends nothing for longer than the bound a lost run is told by, and a poll finds it running all along.
    const until = Date.now() + LOST_AFTER_MS + 2 * BEAT_MS;
    let polls = 0;
    while (Date.now() < until) {
      for (const id of [streamed, plain]) expect((await client.responses.retrieve(id)).status, `${id} after ${polls} polls`).toBe('queued');
      polls++;
      await new Promise((r) => setTimeout(r, POLL_EVERY_MS));
    }
    expect(polls).toBeGreaterThan(15);
    // It was alive: a cancel stops it and it stores itself cancelled (a run taken for lost would be failed).
    for (const id of [streamed, plain]) expect((await client.responses.cancel(id)).status).toBe('cancelled');
    await new Promise((r) => setTimeout(r, 3_000));
    for (const id of [streamed, plain]) expect((await client.responses.retrieve(id)).status).toBe('cancelled');
  }, 60_000);

  it('is told failed within seconds of its edge dying, by a stream read again (to its end) and by a poll, once the edge is back', async () => {
    const { streamed, seen, plain } = await twoHeld();
    // The events so far are kept (a write a second), and the edge is killed outright: its runs never write again.
    await new Promise((r) => setTimeout(r, 1_500));
    edge.service.signal('SIGKILL');
    await edge.service.exited;
    const killedAt = Date.now();
    await edge.stop();
    edge = await startTheEdge();
    client = new OpenAI({ apiKey: KEY, baseURL: `${edge.url}/v1`, maxRetries: 0 });
    // Told by three intervals after its last heartbeat (at most one before the kill), or at once where the edge took
    // longer than that to come back (a loaded machine), and read within a second or two: not after its deadline.
    const toldWithin = Math.max(LOST_AFTER_MS, Date.now() - killedAt) + 5_000;

    const again: StreamEvent[] = [];
    for await (const event of await client.responses.retrieve(streamed, { stream: true })) again.push(event);
    const streamEnded = Date.now() - killedAt;
    // What it had sent, kept, then its end told by the edge that came back: failed, as a run that died is.
    expect(again.slice(0, seen.length)).toEqual(seen);
    expect(again.slice(-2).map((e) => e.type)).toEqual(['error', 'response.failed']);
    const failed = (again.at(-1) as OpenAI.Responses.ResponseFailedEvent).response;
    expect(failed.error).toMatchObject({ code: 'server_error', message: expect.stringMatching(/went away/) });
    expect(streamEnded).toBeLessThan(toldWithin);
    // With the output its kept events had sent, cut (review h177: output [], the text in the events alone).
    const sent = again.map((e) => (e.type === 'response.output_text.delta' ? e.delta : '')).join('');
    expect(sent.length).toBeGreaterThan(0);
    expect(failed.output).toMatchObject([{ type: 'message', status: 'incomplete' }]);
    // An event's response is its JSON as sent (the SDK adds no output_text to it).
    expect((failed.output[0] as OpenAI.Responses.ResponseOutputMessage).content).toMatchObject([{ type: 'output_text', text: sent }]);

    for (const id of [streamed, plain]) {
      let polled = await client.responses.retrieve(id);
      while (polled.status === 'queued' && Date.now() - killedAt < toldWithin + 5_000) {
        await new Promise((r) => setTimeout(r, 500));
        polled = await client.responses.retrieve(id);
      }
      expect(polled.status, id).toBe('failed');
      expect(polled.error, id).toMatchObject({ code: 'server_error', message: expect.stringMatching(/went away/) });
      // A retrieve shows what the stream did; the one made without stream kept no events, and has no output.
      expect(polled.output_text, id).toBe(id === streamed ? sent : '');
      expect(Date.now() - killedAt, id).toBeLessThan(toldWithin);
      // A chain from it is refused as from a failed one, not as from one still running.
      const chained = await client.responses.create({ model: 'default', previous_response_id: id, input: 'Max ran.', max_output_tokens: 4 }).catch((e: unknown) => e);
      expect((chained as InstanceType<typeof OpenAI.BadRequestError>).message, id).toMatch(/failed \(The background response stopped without a result/);
    }
  }, 120_000);
});
