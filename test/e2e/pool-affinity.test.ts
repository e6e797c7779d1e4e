// Two real pools behind one edge: chats spread over both, and each chat's
// next turn goes back to the pool that holds its first turn's keys/values.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatePoolToken, startEdge, startPool, type RunningEdge, type RunningPool } from '../../launcher/stack';
import { startAll, poolUrlOn } from './stack-fixture';
import { freePort } from '../../launcher/service-process';
import { models } from '../support/shared-data';

const KEY = 'affinity-key';
let pools: RunningPool[];
let edge: RunningEdge;
let dir: string;

beforeAll(async () => {
  const token = generatePoolToken();
  dir = mkdtempSync(path.join(tmpdir(), 'sssd-affinity-'));
  // The pools and the edge at once: the edge needs them only to serve.
  const ports = [await freePort(), await freePort()];
  const start = (port: number): Promise<RunningPool> => startPool({ model: models.stories260K.checkpoint, tokenizer: models.stories260K.tokenizer, token, port });
  let first: RunningPool, second: RunningPool;
  [first, second, edge] = await startAll([start(ports[0]), start(ports[1]), startEdge({ poolUrls: ports.map(poolUrlOn), poolToken: token, devKey: KEY, persistTo: dir })]);
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
    body: JSON.stringify({ model: 'stories260K', messages, max_tokens: 16, temperature: 0 }),
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { choices: Array<{ message: { content: string } }>; usage: { prompt_tokens_details: { cached_tokens: number } } };
  return { content: body.choices[0].message.content, cached: body.usage.prompt_tokens_details.cached_tokens };
}

async function generations(pool: RunningPool): Promise<number> {
  const text = await (await fetch(`${pool.url}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('vllm:request_success_total{'))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

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
