// The edge's client of one pool, against a real HTTP server standing where a
// proxy would put a pool: under a path prefix.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PoolClient } from '../../edge/pool-client';

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
