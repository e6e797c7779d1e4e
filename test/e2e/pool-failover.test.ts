// Pool choice at the edge against real processes: an unreachable pool is
// skipped before the first token; with no pool at all the edge answers 503; a
// pool serving another model, or a URL that names no pool, is passed over.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PoolClient, PoolMisdirectedError } from '../../edge/pool-client';
import { freePort } from '../../launcher/service-process';
import { generatePoolToken, startEdge, startPool, type RunningEdge, type RunningPool } from '../../launcher/stack';
import { referenceGenerate, startAll, poolUrlOn, type GenerateOutput } from './stack-fixture';
import { models } from '../support/shared-data';
import { metricValue } from '../gpu-pool/server/pool-process';

const KEY = 'failover-key';
let pool: RunningPool;
/** llama2xs on stories260K's tokenizer: the same ids mean something else to it. */
let otherModel: RunningPool;
let failover: RunningEdge;
let stranded: RunningEdge;
/** stories260K's pool, llama2xs's, and the first pool's URL with `/v1` added (a route-less path). */
let mixed: RunningEdge;
let token: string;
const dirs: string[] = [];
const PROMPTS = ['Once upon a time', 'The dog ran to the park', 'Lily had a red ball', 'Tom and Sue went to the sea', 'The cat was sad', 'A big bird sat on a tree'];
let references: GenerateOutput[];

beforeAll(async () => {
  token = generatePoolToken();
  const [poolPort, otherPort, deadPort] = [await freePort(), await freePort(), await freePort()];
  const [poolUrl, otherUrl, deadPool] = [poolPort, otherPort, deadPort].map(poolUrlOn);
  dirs.push(mkdtempSync(path.join(tmpdir(), 'sssd-failover-')), mkdtempSync(path.join(tmpdir(), 'sssd-stranded-')), mkdtempSync(path.join(tmpdir(), 'sssd-mixed-')));
  // The pools and the edges at once: an edge needs its pools only to serve.
  [pool, otherModel, references, failover, stranded, mixed] = await startAll([
    startPool({ model: models.stories260K.checkpoint, tokenizer: models.stories260K.tokenizer, token, port: poolPort }),
    startPool({ model: models.llama2xs.checkpoint, tokenizer: models.stories260K.tokenizer, token, port: otherPort }),
    Promise.all(PROMPTS.map((prompt) => referenceGenerate(prompt, 24))),
    // The dead pool comes first in the list: it must be skipped, not merely never tried.
    startEdge({ poolUrls: [deadPool, poolUrl], poolToken: token, devKey: KEY, persistTo: dirs[0] }),
    startEdge({ poolUrls: [deadPool], poolToken: token, devKey: KEY, persistTo: dirs[1] }),
    // The right pool first, so the edge serves its model; the other two can only be passed over.
    startEdge({ poolUrls: [poolUrl, otherUrl, `${poolUrl}/v1`], poolToken: token, devKey: KEY, persistTo: dirs[2] }),
  ]);
}, 240_000);

afterAll(async () => {
  await Promise.all([failover?.stop(), stranded?.stop(), mixed?.stop(), pool?.service.stop(), otherModel?.service.stop()]);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function complete(edge: RunningEdge, stream = false): Promise<Response> {
  return fetch(`${edge.url}/v1/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 16, temperature: 0, stream }),
  });
}

describe('pool failover', () => {
  it('skips an unreachable pool and serves from a live one', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await complete(failover);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { choices: Array<{ text: string }>; usage: { completion_tokens: number } };
      expect(body.usage.completion_tokens).toBe(16);
      expect(body.choices[0].text.length).toBeGreaterThan(10);
    }
  });

  it("never serves one model's text under another's name: a pool of another model refuses the edge's ids (421), and the edge passes it over", async () => {
    // Asked directly, with the model the ids are meant for: a 421 that names both.
    const direct = await fetch(`${otherModel.url}/v1/generate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'mismatch', promptIds: [1, 403], maxTokens: 4, model: { name: 'stories260K', contextLength: 512, tokenizerSha256: 'f'.repeat(64) } }),
    });
    expect(direct.status).toBe(421);
    const refusal = (await direct.json()) as { type: string; code: string; message: string };
    expect(refusal).toMatchObject({ type: 'error', code: 'model_mismatch' });
    expect(refusal.message).toMatch(/serves llama2xs .*not stories260K/);
    // Same name, context and tokenizer, other weights (a retrained checkpoint under the same file name): another model too.
    const info = (await (await fetch(`${pool.url}/v1/info`, { headers: { authorization: `Bearer ${token}` } })).json()) as { model: { sha256: string }; tokenizer: { sha256: string } };
    expect(info.model.sha256).toMatch(/^[0-9a-f]{64}$/);
    const byWeights = async (sha256: string): Promise<Response> =>
      fetch(`${pool.url}/v1/generate`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id: `weights-${sha256.slice(0, 4)}`, promptIds: [1, 403], maxTokens: 2, model: { name: 'stories260K', contextLength: 512, tokenizerSha256: info.tokenizer.sha256, sha256 } }),
      });
    const mismatches = await metricValue(pool, 'sssd_pool_rejected_requests_total', 'reason="model_mismatch"');
    const retrained = await byWeights('a'.repeat(64));
    expect(retrained.status).toBe(421);
    // Counted, so an operator sees why an upgraded pool takes no traffic.
    // (Node's fetch sends a request answered 421 once more, on a new connection, as RFC 9110 allows: each is counted.)
    expect(await metricValue(pool, 'sssd_pool_rejected_requests_total', 'reason="model_mismatch"')).toBeGreaterThan(mismatches);
    expect(((await retrained.json()) as { message: string }).message).toMatch(/weights [0-9a-f]{12}\), not stories260K .*weights aaaaaaaaaaaa/);
    const same = await byWeights(info.model.sha256);
    expect(same.status).toBe(200);
    await same.text();
    // Through the edge: prompts whose affinity falls on either pool all get stories260K's own text,
    // and the llama2xs pool and the route-less URL never take a generation.
    const res = await Promise.all(
      PROMPTS.map((prompt) =>
        fetch(`${mixed.url}/v1/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'stories260K', prompt, max_tokens: 24, temperature: 0, user: prompt }),
        }),
      ),
    );
    for (const [i, r] of res.entries()) {
      expect(r.status, PROMPTS[i]).toBe(200);
      const body = (await r.json()) as { model: string; choices: Array<{ text: string }> };
      expect(body.model).toBe('stories260K');
      expect(body.choices[0].text, PROMPTS[i]).toBe(references[i].text);
    }
    const metrics = await (await fetch(`${otherModel.url}/metrics`)).text();
    expect(metrics).toMatch(/^vllm:prompt_tokens_total(?:\{[^}]*\})? 0$/m);
  });

  it("takes a pool that refuses the edge's token, or a URL naming no pool, as misdirected (said in the log), not as down", async () => {
    const wrongToken = await new PoolClient(pool.url, 'not-the-token').info().catch((err: unknown) => err);
    expect(wrongToken).toBeInstanceOf(PoolMisdirectedError);
    expect((wrongToken as PoolMisdirectedError).message).toMatch(/401 \(it refuses SSSD_POOL_TOKEN\)/);
    const noPool = await new PoolClient(`${pool.url}/v1`, token).info().catch((err: unknown) => err);
    expect(noPool).toBeInstanceOf(PoolMisdirectedError);
    expect((noPool as PoolMisdirectedError).status).toBe(404);
    // The URL fetched, whole: the log said "/v1/info" where /v1/v1/info was asked.
    expect((noPool as PoolMisdirectedError).message).toContain(`${pool.url}/v1/v1/info answered 404 (no pool there: SSSD_POOL_URLS takes base URLs, without /v1)`);
  });

  it('answers 503 with Retry-After when no pool is reachable, streaming or not', async () => {
    for (const stream of [false, true]) {
      const res = await complete(stranded, stream);
      expect(res.status).toBe(503);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('pool_unavailable');
    }
  });
});
