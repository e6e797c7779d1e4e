// Preemption by recompute seen through the edge: a real pool of two rows
// (--preempt, the default; no rows reserved), one tenant's two long streams
// holding both, and another tenant's first request taking one of them. The
// preempted stream only pauses: every reply streams, token for token, what
// the same request streams alone, greedy and seeded sampled, with no resume
// at the edge; the pool's counters say a preemption happened, so this cannot
// pass without one (gpu-pool/scheduler/preemption.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatePoolToken, sha256Hex, startEdge, startPool, type RunningEdge, type RunningPool } from '../../launcher/stack';
import { freePort } from '../../launcher/service-process';
import { poolTenant } from '../../edge/completion-handler';
import { seriesValue } from '../gpu-pool/server/pool-process';
import { TENANT_LABEL_CHARS } from '../../gpu-pool/metrics/tenant-slots';
import { streamReply, type ReplyRequest, type StreamedReply } from '../support/streamed-reply';
import { edgeRequestLine } from '../support/edge-request-line';
import { startAll, poolUrlOn } from './stack-fixture';
import { models } from '../support/shared-data';

/** The tenant that fills both rows, and the one whose first request takes a row from it. */
const HOG_KEY = 'preempt-hog-key';
const NEWCOMER_KEY = 'preempt-newcomer-key';
let pool: RunningPool;
let edge: RunningEdge;
let dir: string;

beforeAll(async () => {
  const token = generatePoolToken();
  dir = mkdtempSync(path.join(tmpdir(), 'sssd-preempt-'));
  const port = await freePort();
  const keys = { [sha256Hex(HOG_KEY)]: { tenant: 'hog', rpm: 100_000, concurrency: 8 }, [sha256Hex(NEWCOMER_KEY)]: { tenant: 'newcomer', rpm: 100_000, concurrency: 8 } };
  [pool, edge] = await startAll([
    // No row reserved for a tenant with none running (--tenant-reserve 0): the hog's two streams take both, and the
    // newcomer's request finds none free, however recently it was here.
    startPool({ model: models.stories260K.checkpoint, tokenizer: models.stories260K.tokenizer, token, port, extraArgs: ['--max-active', '2', '--tenant-reserve', '0'] }),
    startEdge({ poolUrls: [poolUrlOn(port)], poolToken: token, devKey: 'preempt-dev-key', persistTo: dir, vars: { SSSD_API_KEYS: JSON.stringify(keys) } }),
  ]);
}, 180_000);

afterAll(async () => {
  pool?.service.signal('SIGCONT');
  await Promise.all([edge?.stop(), pool?.service.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The pool's counters of preemptions: pool-wide, and the hog's and the newcomer's (by the tenant the edge sends for each). */
async function preemptions(): Promise<{ total: number; hog: number; newcomer: number }> {
  const text = await (await fetch(`${pool.url}/metrics`)).text();
  const ofTenant = async (name: string): Promise<number> => seriesValue(text, 'sssd_pool_tenant_preemptions_total', `tenant="${(await poolTenant(name)).slice(0, TENANT_LABEL_CHARS)}"`);
  return { total: seriesValue(text, 'sssd_pool_preemptions_total'), hog: await ofTenant('hog'), newcomer: await ofTenant('newcomer') };
}

/**
 * Speculation off and the end token ignored: one token a step for 400 steps
 * each, so both still run when the newcomer comes (a repeated greedy request
 * is otherwise drafted whole from the user's cache, in a few steps).
 */
const LONG = { model: 'stories260K', max_tokens: 400, speculation: 'off', ignore_eos: true };
const hogReply = (body: Record<string, unknown>, onFirstText?: () => void): ReplyRequest => ({ url: edge.url, key: HOG_KEY, route: 'completions', body: { ...LONG, ...body }, onFirstText });
const newcomerReply = (): ReplyRequest => ({
  url: edge.url,
  key: NEWCOMER_KEY,
  route: 'chat/completions',
  body: { model: 'stories260K', messages: [{ role: 'user', content: 'Tell me about a little bird.' }], max_tokens: 60, temperature: 0 },
});

/**
 * The hog's two streams, and, once both have text (each holds a row), the
 * newcomer's request. The pool is held still (SIGSTOP) for a second as the
 * newcomer's request goes to it: it comes while both rows run however slowly
 * a loaded machine's edge passes it on (each stream takes under a second
 * alone); a second's silence is well within the edge's stall window.
 */
async function newcomerWhileHogRuns(hogBodies: [Record<string, unknown>, Record<string, unknown>]): Promise<{ hog: StreamedReply[]; newcomer: StreamedReply }> {
  let started = 0;
  let bothStarted: () => void = () => undefined;
  const both = new Promise<void>((resolve) => (bothStarted = resolve));
  const onFirstText = (): void => {
    if (++started === 2) {
      pool.service.signal('SIGSTOP');
      bothStarted();
    }
  };
  const hog = Promise.all(hogBodies.map((body) => streamReply(hogReply(body, onFirstText))));
  // A hog stream that ends without text (refused, failed) ends the wait too, and its reply shows why below, not a timeout.
  await Promise.race([both, hog]);
  const newcomer = streamReply(newcomerReply());
  try {
    await sleep(1_000);
  } finally {
    pool.service.signal('SIGCONT');
  }
  return { hog: await hog, newcomer: await newcomer };
}

describe("another tenant's first request while one tenant holds every row", () => {
  it('preempts one of its streams, which resumes by recompute and streams what it streams alone: greedy, then seeded sampled', async () => {
    const rounds: Array<[Record<string, unknown>, Record<string, unknown>]> = [
      [
        { prompt: 'Lily went to the park with her mom.', temperature: 0 },
        { prompt: 'Tom had a big red ball.', temperature: 0, repetition_penalty: 1.2 },
      ],
      [
        { prompt: 'Sue found a little cat.', temperature: 0.9, seed: 77 },
        { prompt: 'Ben and Mia played in the sand.', temperature: 0.8, seed: 5, frequency_penalty: 0.5 },
      ],
    ];
    const newcomerAlone = await streamReply(newcomerReply());
    expect(newcomerAlone.error).toBeNull();
    for (const bodies of rounds) {
      const alone: StreamedReply[] = [];
      for (const body of bodies) alone.push(await streamReply(hogReply(body)));
      for (const reply of alone) expect(reply).toMatchObject({ error: null, completionTokens: 400 });
      const before = await preemptions();
      const { hog, newcomer } = await newcomerWhileHogRuns(bodies);
      const after = await preemptions();
      // One of the hog's rows went to the newcomer: once, the hog's, never the newcomer's.
      expect(after.total - before.total, JSON.stringify(bodies)).toBe(1);
      expect(after.hog - before.hog).toBe(1);
      expect(after.newcomer - before.newcomer).toBe(0);
      for (const [i, reply] of hog.entries()) {
        expect(reply.error).toBeNull();
        expect(reply.text, JSON.stringify(bodies[i])).toBe(alone[i].text);
        expect(reply.finish).toBe('length');
        expect(reply.completionTokens).toBe(400);
        // Paused at the pool, not broken off: the edge resumed nothing.
        expect(await edgeRequestLine(edge, reply.id)).toMatchObject({ status: 200, resumes: 0, completion_tokens: 400 });
      }
      expect(newcomer.error).toBeNull();
      expect(newcomer.text).toBe(newcomerAlone.text);
      expect(newcomer.completionTokens).toBe(newcomerAlone.completionTokens);
    }
  }, 60_000);
});
