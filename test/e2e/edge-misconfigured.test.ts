// An edge deployed with a mistake in its configuration, against the real stack: a pool token the pools refuse,
// SSSD_POOL_URLS naming another edge, a KV namespace bound under another name than SSSD_KV. Its readiness probe says
// it is not ready before any request fails, and its requests and log say what to fix (review h137).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatePoolToken, repoRoot, startEdge, startPool, type RunningEdge, type RunningPool } from '../../launcher/stack';
import { freePort } from '../../launcher/service-process';
import { poolUrlOn, startAll } from './stack-fixture';
import { models } from '../support/shared-data';

const KEY = 'misconfigured-dev-key';
let pool: RunningPool;
/** Its SSSD_POOL_TOKEN is not the pool's, and its other pool is down (review h191's fleet). */
let wrongToken: RunningEdge;
/** Its SSSD_POOL_URLS names `wrongToken`, an edge, with the pool's own token. */
let edgeAsPool: RunningEdge;
/** Its wrangler config binds the KV namespace as KV, not SSSD_KV. */
let noKv: RunningEdge;
let dir: string;
const output = { wrongToken: [] as string[], edgeAsPool: [] as string[], noKv: [] as string[] };

beforeAll(async () => {
  const token = generatePoolToken();
  dir = mkdtempSync(path.join(tmpdir(), 'sssd-misconfigured-'));
  // The repository's config but for the binding's name (and `main`, which wrangler reads beside the config).
  const config = readFileSync(path.join(repoRoot, 'wrangler.toml'), 'utf8').replace('binding = "SSSD_KV"', 'binding = "KV"').replace('main = "edge/index.ts"', `main = ${JSON.stringify(path.join(repoRoot, 'edge/index.ts'))}`);
  expect(config).toContain('binding = "KV"');
  writeFileSync(path.join(dir, 'wrangler.toml'), config);
  const edge = (name: keyof typeof output, poolUrls: string[], poolToken: string, more: { wranglerConfig?: string; port?: number } = {}): Promise<RunningEdge> =>
    startEdge({ poolUrls, poolToken, devKey: KEY, persistTo: path.join(dir, name), echo: (line) => void output[name].push(line), ...more });
  // All four at once, on ports picked first (an edge needs its pools, and edgeAsPool the edge it names, only to
  // serve): one start's wait, not three in turn.
  const [poolPort, wrongTokenPort] = [await freePort(), await freePort()];
  const poolUrl = poolUrlOn(poolPort);
  [pool, wrongToken, noKv, edgeAsPool] = await startAll([
    startPool({ model: models.stories260K.checkpoint, tokenizer: models.stories260K.tokenizer, token, port: poolPort }),
    edge('wrongToken', [poolUrl, 'http://127.0.0.1:1'], 'not-the-pool-token', { port: wrongTokenPort }),
    edge('noKv', [poolUrl], token, { wranglerConfig: path.join(dir, 'wrangler.toml') }),
    edge('edgeAsPool', [poolUrlOn(wrongTokenPort)], token),
  ] as const);
}, 300_000);

afterAll(async () => {
  await Promise.all([wrongToken?.stop(), edgeAsPool?.stop(), noKv?.stop(), pool?.service.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function post(edge: RunningEdge, route: string, body: object, key = KEY): Promise<Response> {
  return fetch(`${edge.url}${route}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

async function readyz(edge: RunningEdge): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${edge.url}/readyz`);
  return { status: res.status, body: await res.json() };
}

/** Waits for a line of `lines` that `matches` (the Worker's log reaches wrangler's output a moment after). */
async function logLine(lines: string[], matches: (line: string) => boolean): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const line = lines.find(matches);
    if (line) return line;
    if (Date.now() > deadline) throw new Error(`no such line in:\n${lines.slice(-30).join('\n')}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('the readiness probe of an edge no pool serves', () => {
  it("answers 503 where the only pool up refuses the edge's token, before any request has failed, and stays so, counting it apart from the pool down", async () => {
    // The pool is healthy: its open /healthz says ok to anyone.
    expect((await fetch(`${pool.url}/healthz`)).status).toBe(200);
    // "token", not "down" (review h191): an operator's page tells the two apart.
    const notReady = { status: 503, body: { ok: false, pools: { healthy: 0, total: 2, refusedToken: 1 } } };
    expect(await readyz(wrongToken)).toEqual(notReady);
    // A misconfiguration, not an outage to retry in 2 s for ever: as a protocol mismatch is answered (docs/protocol.md).
    const res = await post(wrongToken, '/v1/completions', { model: 'default', prompt: 'Once', max_tokens: 4 });
    expect(res.status).toBe(503);
    expect([res.headers.get('x-should-retry'), res.headers.get('retry-after')]).toEqual(['false', '60']);
    expect(((await res.json()) as { error: { message: string } }).error.message).toBe(
      "The service is misconfigured: the one inference pool that answers refuses this edge's credentials (its pool token), and the other is unreachable; the service's operator must fix its configuration.",
    );
    expect(await readyz(wrongToken)).toEqual(notReady);
    await logLine(output.wrongToken, (line) => line.includes('it refuses SSSD_POOL_TOKEN'));
  });

  it('answers 503 where SSSD_POOL_URLS names another edge, and its requests say the URL may not be a pool, not that the token is wrong', async () => {
    // What the reviewer saw: another edge answers /healthz {"ok":true} too.
    expect(await (await fetch(`${wrongToken.url}/healthz`)).json()).toEqual({ ok: true });
    expect(await readyz(edgeAsPool)).toEqual({ status: 503, body: { ok: false, pools: { healthy: 0, total: 1 } } });
    const res = await post(edgeAsPool, '/v1/chat/completions', { model: 'default', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 });
    expect(res.status).toBe(503);
    expect(res.headers.get('x-should-retry')).toBe('false');
    const message = ((await res.json()) as { error: { message: string } }).error.message;
    expect(message).toMatch(/do not answer as pools do \(they may not be pools\)/);
    expect(message).not.toContain(wrongToken.url);
    const line = await logLine(output.edgeAsPool, (l) => l.includes('answered 401'));
    expect(line).toContain('SSSD_POOL_URLS may name something that is not a pool');
    expect(line).not.toContain('it refuses SSSD_POOL_TOKEN');
  });
});

describe('an edge without its SSSD_KV binding', () => {
  it('says so once in its log, is not ready, and answers what needs KV with a 500 not to retry, naming the binding, with no stack', async () => {
    const ready = await readyz(noKv);
    // The pool serves it: only the binding is wanting.
    expect(ready).toEqual({ status: 503, body: { ok: false, pools: { healthy: 1, total: 1 }, kv: 'missing' } });
    const refusedAsKvMissing = async (res: Response): Promise<void> => {
      expect(res.status).toBe(500);
      expect(res.headers.get('x-should-retry')).toBe('false');
      const { error } = (await res.json()) as { error: { code: string; type: string; message: string } };
      expect(error).toMatchObject({ code: 'kv_binding_missing', type: 'server_error' });
      expect(error.message).toContain('SSSD_KV');
    };
    // A key that is neither the dev key nor in SSSD_API_KEYS: only KV could say.
    await refusedAsKvMissing(await post(noKv, '/v1/completions', { model: 'default', prompt: 'Once', max_tokens: 4 }, 'a-provisioned-key'));
    // The Responses API stores by default: refused before it generates, not a 200 whose retrieve fails.
    await refusedAsKvMissing(await post(noKv, '/v1/responses', { model: 'default', input: 'Once', max_output_tokens: 4 }));
    await refusedAsKvMissing(await fetch(`${noKv.url}/v1/user-cache?user=alice`, { headers: { authorization: `Bearer ${KEY}` } }));
    await refusedAsKvMissing(await post(noKv, '/v1/chat/completions', { model: 'default', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, store: true }));
    // What needs no KV is served: the dev key's completion, drafting without a user cache.
    for (let i = 0; i < 2; i++) {
      const done = await post(noKv, '/v1/completions', { model: 'default', prompt: 'Once upon a time', max_tokens: 6, temperature: 0, user: 'alice' });
      expect(done.status).toBe(200);
      expect(((await done.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(6);
    }
    const said = await logLine(output.noKv, (line) => line.includes('SSSD_KV binding is missing'));
    expect(said).toContain('a KV namespace is bound as KV');
    expect(output.noKv.filter((line) => line.includes('SSSD_KV binding is missing'))).toHaveLength(1);
    expect(output.noKv.join('\n')).not.toMatch(/TypeError|Cannot read properties of undefined/);
  });
});
