// Background responses (the Responses API's `background: true`) against the
// real stack: a pool behind a proxy that can hold a generation's stream (a
// run that goes on), and `wrangler dev` with local KV, driven by the official
// `openai` client.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatePoolToken, startEdge, startPool, type RunningEdge, type RunningPool } from '../../launcher/stack';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy';
import { models } from '../support/shared-data';
import { startAll } from './stack-fixture';

const KEY = 'background-key';
const DEADLINE_S = 4;
const PROMPT = 'Once upon a time, there was a little dog named Max.';
let pool: RunningPool;
let proxy: FaultProxy;
let edge: RunningEdge;
let dir: string;
let client: OpenAI;

beforeAll(async () => {
  const token = generatePoolToken();
  dir = mkdtempSync(path.join(tmpdir(), 'sssd-background-'));
  [pool] = await startAll([startPool({ model: models.stories260K.checkpoint, tokenizer: models.stories260K.tokenizer, token })]);
  proxy = await startFaultProxy(pool.url);
  edge = await startEdge({ poolUrls: [proxy.url], poolToken: token, devKey: KEY, persistTo: dir, vars: { SSSD_DEFAULT_RPM: '100000', SSSD_BACKGROUND_DEADLINE_SECONDS: String(DEADLINE_S) } });
  client = new OpenAI({ apiKey: KEY, baseURL: `${edge.url}/v1`, maxRetries: 0 });
}, 180_000);

afterAll(async () => {
  await Promise.all([edge?.stop(), proxy?.close(), pool?.service.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Polls a response (as a client of background mode does) until it is no longer queued, or `ms` have passed. */
async function polled(id: string, ms = 15_000): Promise<OpenAI.Responses.Response> {
  const until = Date.now() + ms;
  for (;;) {
    const response = await client.responses.retrieve(id);
    if ((response.status !== 'queued' && response.status !== 'in_progress') || Date.now() > until) return response;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A background response whose generation goes on (the proxy holds its stream after a first step), as a long one would. */
async function held(): Promise<OpenAI.Responses.Response> {
  proxy.mode = 'stall';
  proxy.afterTokenEvents = 1;
  try {
    return await client.responses.create({ model: 'default', input: PROMPT, max_output_tokens: 200, temperature: 0, background: true });
  } finally {
    proxy.mode = 'pass';
  }
}

describe('background responses', () => {
  it('answers queued at once and stores the same response a foreground request gets, which a poll finds and a chain continues', async () => {
    const foreground = await client.responses.create({ model: 'default', input: PROMPT, max_output_tokens: 24, temperature: 0 });
    const queued = await client.responses.create({ model: 'default', input: PROMPT, max_output_tokens: 24, temperature: 0, background: true });
    expect(queued).toMatchObject({ object: 'response', status: 'queued', background: true, output: [], usage: null });
    const done = await polled(queued.id);
    expect(done.status).toBe(foreground.status);
    expect(done.background).toBe(true);
    expect(done.output_text).toBe(foreground.output_text);
    expect(done.usage?.output_tokens).toBe(foreground.usage?.output_tokens);
    // Its input items are there from the start, and a chain continues from it once it has ended.
    expect((await client.responses.inputItems.list(queued.id)).data).toHaveLength(1);
    const next = await client.responses.create({ model: 'default', previous_response_id: queued.id, input: 'Max ran.', max_output_tokens: 8, temperature: 0 });
    expect(next.usage!.input_tokens).toBeGreaterThan(done.usage!.input_tokens);
    // A cancel that comes after the end answers the response as it is (it often races the end).
    expect((await client.responses.cancel(queued.id)).status).toBe(done.status);
    // Only a background response can be cancelled.
    const cancelForeground = await client.responses.cancel(foreground.id).catch((e: unknown) => e);
    expect(cancelForeground).toBeInstanceOf(OpenAI.BadRequestError);
  });

  it('refuses background without the store, and with a stream, by name', async () => {
    for (const params of [{ store: false }, { stream: true }]) {
      const err = await client.responses.create({ model: 'default', input: PROMPT, max_output_tokens: 4, background: true, ...params } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming).catch((e: unknown) => e);
      expect(err, JSON.stringify(params)).toBeInstanceOf(OpenAI.BadRequestError);
      expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('background');
    }
  });

  it('stops a running response on cancel, wherever it runs, and stores it cancelled; a chain from one still running is refused', async () => {
    const running = await held();
    expect(running.status).toBe('queued');
    expect((await client.responses.retrieve(running.id)).status).toBe('queued');
    const chained = await client.responses.create({ model: 'default', previous_response_id: running.id, input: 'Max ran.', max_output_tokens: 4 }).catch((e: unknown) => e);
    expect(chained).toBeInstanceOf(OpenAI.BadRequestError);
    expect((chained as InstanceType<typeof OpenAI.BadRequestError>).message).toMatch(/still running in the background/);
    const asked = Date.now();
    expect((await client.responses.cancel(running.id)).status).toBe('cancelled');
    const ended = await polled(running.id);
    expect(ended.status).toBe('cancelled');
    // The run read the cancel and stopped (well before its deadline would have).
    expect(Date.now() - asked).toBeLessThan((DEADLINE_S - 1) * 1000);
  });

  it('honours a cancel or a delete that comes as a short run ends: cancelled stays cancelled, deleted stays gone (review h115)', async () => {
    // Both land while the run's end waits for KV's second after the queued record: before, each was read once, too early.
    const cancelled = await client.responses.create({ model: 'default', input: PROMPT, max_output_tokens: 4, temperature: 0, background: true });
    expect((await client.responses.cancel(cancelled.id)).status).toBe('cancelled');
    const deleted = await client.responses.create({ model: 'default', input: PROMPT, max_output_tokens: 4, temperature: 0, background: true });
    await client.responses.delete(deleted.id);
    await new Promise((r) => setTimeout(r, 3_000));
    expect((await client.responses.retrieve(cancelled.id)).status).toBe('cancelled');
    expect(await client.responses.retrieve(deleted.id).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('stops a response past SSSD_BACKGROUND_DEADLINE_SECONDS and stores it failed, saying why', async () => {
    const running = await held();
    const ended = await polled(running.id, (DEADLINE_S + 10) * 1000);
    expect(ended.status).toBe('failed');
    expect(ended.error?.message).toMatch(/SSSD_BACKGROUND_DEADLINE_SECONDS/);
  }, 30_000);

  it('deletes a running response for good: its run stores nothing after the delete', async () => {
    const running = await held();
    expect((await client.responses.delete(running.id)) as unknown).toMatchObject({ id: running.id, deleted: true });
    // Past its deadline and the write after it, were the run to go on and write.
    await new Promise((r) => setTimeout(r, (DEADLINE_S + 2.5) * 1000));
    const gone = await client.responses.retrieve(running.id).catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(OpenAI.NotFoundError);
  }, 30_000);
});
