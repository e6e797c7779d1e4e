// Pool choice at the edge against real processes: an unreachable pool is
// skipped before the first token; with no pool at all the edge answers 503.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../launcher/service-process';
import { generatePoolToken, startEdge, startPool, type RunningEdge, type RunningPool } from '../../launcher/stack';
import { startAll } from './stack-fixture';
import { models } from '../support/shared-data';

const KEY = 'failover-key';
let pool: RunningPool;
let failover: RunningEdge;
let stranded: RunningEdge;
const dirs: string[] = [];

beforeAll(async () => {
  const token = generatePoolToken();
  const [poolPort, deadPort] = [await freePort(), await freePort()];
  const deadPool = `http://127.0.0.1:${deadPort}`;
  dirs.push(mkdtempSync(path.join(tmpdir(), 'sssd-failover-')), mkdtempSync(path.join(tmpdir(), 'sssd-stranded-')));
  [pool, failover, stranded] = await startAll([
    startPool({ model: models.stories260K.checkpoint, tokenizer: models.stories260K.tokenizer, token, port: poolPort }),
    // The dead pool comes first in the list: it must be skipped, not merely never tried.
    startEdge({ poolUrls: [deadPool, `http://127.0.0.1:${poolPort}`], poolToken: token, devKey: KEY, persistTo: dirs[0] }),
    startEdge({ poolUrls: [deadPool], poolToken: token, devKey: KEY, persistTo: dirs[1] }),
  ]);
}, 180_000);

afterAll(async () => {
  await Promise.all([failover?.stop(), stranded?.stop(), pool?.service.stop()]);
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

  it('answers 503 with Retry-After when no pool is reachable, streaming or not', async () => {
    for (const stream of [false, true]) {
      const res = await complete(stranded, stream);
      expect(res.status).toBe(503);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('pool_unavailable');
    }
  });
});
