// Two real pools behind one edge: chats spread over both, and each chat's
// next turn goes back to the pool that holds its first turn's keys/values.
// The second loads the same checkpoint from another path, as a deploy into a
// release folder does, and both serve it under one name the operator set
// (--served-model-name): by file name they were two models, and one pool
// took no traffic (review h191).
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatePoolToken, startEdge, startPool, type RunningEdge, type RunningPool } from '../../launcher/stack';
import { startAll, poolUrlOn } from './stack-fixture';
import { freePort } from '../../launcher/service-process';
import { models } from '../support/shared-data';

const KEY = 'affinity-key';
/** The name both pools serve the model under. */
const SERVED = 'acme/tinystories-260k';
let pools: RunningPool[];
let edge: RunningEdge;
let dir: string;
let token: string;

beforeAll(async () => {
  token = generatePoolToken();
  dir = mkdtempSync(path.join(tmpdir(), 'sssd-affinity-'));
  // The pools and the edge at once: the edge needs them only to serve.
  const ports = [await freePort(), await freePort()];
  const release = path.join(dir, 'release-2');
  mkdirSync(release);
  copyFileSync(models.stories260K.checkpoint, path.join(release, 'model.bin'));
  const start = (port: number, model: string): Promise<RunningPool> =>
    startPool({ model, tokenizer: models.stories260K.tokenizer, token, port, extraArgs: ['--served-model-name', SERVED] });
  let first: RunningPool, second: RunningPool;
  [first, second, edge] = await startAll([start(ports[0], models.stories260K.checkpoint), start(ports[1], path.join(release, 'model.bin')), startEdge({ poolUrls: ports.map(poolUrlOn), poolToken: token, devKey: KEY, persistTo: dir })]);
  pools = [first, second];
}, 180_000);

afterAll(async () => {
  await Promise.all([edge?.stop(), ...(pools ?? []).map((p) => p.service.stop())]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type Message = { role: 'system' | 'user' | 'assistant'; content: string };

async function chat(messages: Message[]): Promise<{ content: string; cached: number }> {
  const res = await fetch(`${edge.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: SERVED, messages, max_tokens: 16, temperature: 0 }),
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { model: string; choices: Array<{ message: { content: string } }>; usage: { prompt_tokens_details: { cached_tokens: number } } };
  expect(body.model).toBe(SERVED);
  return { content: body.choices[0].message.content, cached: body.usage.prompt_tokens_details.cached_tokens };
}

async function generations(pool: RunningPool): Promise<number> {
  const text = await (await fetch(`${pool.url}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('vllm:request_success_total{'))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

describe('one model at two paths under the name the operator set', () => {
  it('is what both pools and the edge name it: /v1/info, /v1/models, the replies', async () => {
    const infos = await Promise.all(pools.map(async (pool) => (await (await fetch(`${pool.url}/v1/info`, { headers: { authorization: `Bearer ${token}` } })).json()) as { model: { name: string; sha256: string } }));
    expect(infos.map((info) => info.model.name)).toEqual([SERVED, SERVED]);
    expect(infos[1].model.sha256).toBe(infos[0].model.sha256);
    const models = (await (await fetch(`${edge.url}/v1/models`, { headers: { authorization: `Bearer ${KEY}` } })).json()) as { data: Array<{ id: string }> };
    expect(models.data.map((m) => m.id)).toEqual([SERVED]);
    // Its slash included, as a Hugging Face id's: the SDK's models.retrieve(id).
    const retrieved = await fetch(`${edge.url}/v1/models/${SERVED}`, { headers: { authorization: `Bearer ${KEY}` } });
    expect([retrieved.status, ((await retrieved.json()) as { id: string }).id]).toEqual([200, SERVED]);
    // The file's name is no name of the model's now.
    const byFile = await fetch(`${edge.url}/v1/completions`, { method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'stories260K', prompt: 'Once', max_tokens: 2 }) });
    expect(byFile.status).toBe(404);
    expect(((await byFile.json()) as { error: { message: string } }).error.message).toBe(`The model 'stories260K' does not exist. This server serves '${SERVED}'.`);
  });
});

describe('cache affinity across pools', () => {
  it("sends a chat's next turn to the pool holding its first, and different chats to both pools", async () => {
    // Which pool a chat hashes to depends on the pools' (random) ports: 8 chats
    // all land on one pool 1 time in 128, so chats go on until both have some.
    const names = ['Lily', 'Tom', 'Ben', 'Sue', 'Mia', 'Max', 'Tim', 'Amy', 'Zoe', 'Sam', 'Ann', 'Bob', 'Kim', 'Dan', 'Eve', 'Jay'];
    let chats = 0;
    let served: number[] = [0, 0];
    for (const name of names) {
      const system: Message = { role: 'system', content: `Tell a short happy story about a child named ${name} who finds a small lost puppy in the big park.` };
      const ask: Message = { role: 'user', content: `Once upon a time, ${name} went to the park.` };
      const first = await chat([system, ask]);
      const next = await chat([system, ask, { role: 'assistant', content: first.content }, { role: 'user', content: 'What happened next?' }]);
      // The whole first exchange's opening is in the pool it went to.
      expect(next.cached, name).toBeGreaterThanOrEqual(32);
      chats += 1;
      served = await Promise.all(pools.map(generations));
      expect(served[0] + served[1]).toBe(2 * chats);
      if (chats >= 8 && Math.min(...served) > 0) break;
    }
    // One pool for everything would also have found them all: both served some.
    expect(Math.min(...served)).toBeGreaterThan(0);
  });
});
