// The edge's client of one pool, against a real HTTP server standing where a
// proxy would put a pool: under a path prefix.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PoolClient, PoolRejectedError } from '../../edge/pool-client';
import { POOL_EVENT_FRAMES_TYPE } from '../../shared/pool-event-frames';
import type { PoolEvent } from '../../shared/protocol';
import { startFaultProxy } from '../support/fault-proxy';
import { realPoolForTests } from '../support/real-pool';

let server: Server;
let base: string;
const seen: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push(`${req.url} ${req.headers.authorization ?? ''}`);
    if (req.url === '/poolA/v1/tokenizer') res.end(Buffer.from([1, 2, 3]));
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe('PoolClient.tokenizerBytes', () => {
  it("fetches the tokenizer under the pool's base URL, path prefix included", async () => {
    const bytes = await new PoolClient(`${base}/poolA`, 'tok').tokenizerBytes('/v1/tokenizer');
    expect([...bytes]).toEqual([1, 2, 3]);
    expect(seen.at(-1)).toBe('/poolA/v1/tokenizer Bearer tok');
  });

  it('refuses a tokenizer path that names another host, and sends the pool token nowhere', async () => {
    const before = seen.length;
    const client = new PoolClient(`${base}/poolA`, 'tok');
    for (const path of ['http://other.example/x', '//other.example/x', 'v1/tokenizer']) {
      await expect(client.tokenizerBytes(path), path).rejects.toThrow(/not a path on it/);
    }
    expect(seen.length).toBe(before);
  });
});

describe('PoolClient.generate', () => {
  const pool = realPoolForTests();

  async function outputThrough(client: PoolClient, id: string): Promise<{ ids: number[]; last: PoolEvent | undefined }> {
    const ids: number[] = [];
    let last: PoolEvent | undefined;
    for await (const event of await client.generate({ id, promptIds: [1, 403, 407, 261], maxTokens: 40, sampling: { temperature: 0 }, speculation: 'sssd' })) {
      if (event.type === 'tokens') ids.push(...event.ids);
      last = event;
    }
    return { ids, last };
  }

  it("refuses what the pool refuses with the pool's own words, not its JSON body quoted", async () => {
    const err = await new PoolClient(pool.url, pool.token).generate({ id: 'refused', promptIds: [1, 9999], maxTokens: 4, sampling: { temperature: 0 } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PoolRejectedError);
    expect((err as PoolRejectedError).status).toBe(400);
    expect((err as PoolRejectedError).message).toMatch(/^promptIds\[1\] = 9999 is outside the vocabulary/);
  });

  it('asks the pool for event frames, and reads the NDJSON a pool from before them answers to the same output', async () => {
    const proxy = await startFaultProxy(pool.url);
    try {
      const framed = await outputThrough(new PoolClient(proxy.url, pool.token), 'framed');
      expect(proxy.answeredAs).toEqual([POOL_EVENT_FRAMES_TYPE]);
      // A breaking mode that breaks nothing: the proxy asks without `accept`, as an older pool would ignore it.
      proxy.mode = 'cut';
      proxy.breaks = () => false;
      const lines = await outputThrough(new PoolClient(proxy.url, pool.token), 'lines');
      expect(proxy.answeredAs).toEqual([POOL_EVENT_FRAMES_TYPE, 'application/x-ndjson']);
      expect(framed.ids).toHaveLength(40);
      expect(lines.ids).toEqual(framed.ids);
      expect(framed.last).toMatchObject({ type: 'done', finishReason: 'length' });
      expect(lines.last).toMatchObject({ type: 'done', finishReason: 'length' });
    } finally {
      await proxy.close();
    }
  });
});
