/**
 * pipelinedTurn over a real server and a raw client that pipelines: a
 * request waits until its response can flow, and is let go (false) when the
 * connection closes first, its body read to the end as the pool reads it.
 */
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { pipelinedTurn } from '../../../gpu-pool/server/pipelined-turn';
import { readJsonBody } from '../../../gpu-pool/server/read-body';

const closers: Array<() => void> = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

/** A server whose `/stream` answers after `streamMs`; every other request records its turn. */
async function serve(streamMs: number): Promise<{ port: number; turns: Map<string, boolean> }> {
  const turns = new Map<string, boolean>();
  const server: Server = createServer((req, res) => {
    void (async () => {
      await readJsonBody(req, 1 << 20);
      if (req.url === '/stream') {
        res.writeHead(200);
        res.write('x');
        setTimeout(() => res.end('done'), streamMs);
        return;
      }
      const turn = await pipelinedTurn(req, res);
      turns.set(req.url ?? '', turn);
      if (turn) res.end('ok');
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return { port: (server.address() as AddressInfo).port, turns };
}

const post = (path: string): string => `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}`;

describe('pipelinedTurn', () => {
  it('lets a pipelined request go once the response ahead of it has ended', async () => {
    const { port, turns } = await serve(200);
    const client = connect(port, '127.0.0.1');
    closers.push(() => client.destroy());
    let received = '';
    client.on('data', (d: Buffer) => (received += d.toString()));
    client.write(post('/stream') + post('/b') + post('/c'));
    await new Promise((r) => setTimeout(r, 100));
    // Still streaming ahead of them: neither has its turn yet.
    expect(turns.size).toBe(0);
    while (turns.size < 2) await new Promise((r) => setTimeout(r, 20));
    expect([...turns]).toEqual([['/b', true], ['/c', true]]);
    await new Promise((r) => setTimeout(r, 50));
    expect(received.match(/\r\n\r\nok/g)).toHaveLength(2);
  });

  it('lets it go, with no turn, when the connection closes while it waits', async () => {
    const { port, turns } = await serve(5_000);
    const client = connect(port, '127.0.0.1');
    client.on('error', () => undefined);
    client.write(post('/stream') + post('/b') + post('/c'));
    await new Promise((r) => setTimeout(r, 100));
    client.destroy();
    const until = Date.now() + 2_000;
    while (turns.size < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect([...turns]).toEqual([['/b', false], ['/c', false]]);
  });
});
