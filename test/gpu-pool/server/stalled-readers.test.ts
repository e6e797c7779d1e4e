/**
 * StalledReaders over real sockets: a reader that stops taking bytes is cut
 * after the window; one that reads, however slowly, never is.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { StalledReaders } from '../../../gpu-pool/server/stalled-readers';

const closers: Array<() => void> = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

/** A server whose one response writes `bytes` at once, and a raw client that sent its request and reads only when told. */
async function stuckResponse(bytes: number): Promise<{ res: ServerResponse; client: Socket; closed: Promise<void> }> {
  let resolveRes: (res: ServerResponse) => void = () => {};
  const got = new Promise<ServerResponse>((resolve) => (resolveRes = resolve));
  const server: Server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    const line = Buffer.alloc(1024, 0x61);
    for (let sent = 0; sent < bytes; sent += line.length) res.write(line);
    resolveRes(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
  client.pause();
  client.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
  const res = await got;
  const closed = new Promise<void>((resolve) => res.once('close', () => resolve()));
  closers.push(() => {
    client.destroy();
    server.closeAllConnections();
    server.close();
  });
  return { res, client, closed };
}

/** Lets the kernel and the event loop move what they can. */
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 50));

describe('StalledReaders', () => {
  it('cuts a stream whose reader takes nothing for the window, and says how much was waiting', async () => {
    const { res, closed } = await stuckResponse(32 << 20);
    await settle();
    let now = 0;
    const cuts: number[] = [];
    const watch = new StalledReaders(1000, (_r, waiting) => cuts.push(waiting), () => now);
    closers.push(() => watch.close());
    watch.watch(res);
    watch.sweep((now = 100));
    watch.sweep((now = 600));
    expect(cuts).toEqual([]);
    expect(res.destroyed).toBe(false);
    watch.sweep((now = 1200));
    expect(cuts).toHaveLength(1);
    expect(cuts[0]).toBeGreaterThan(16 << 20);
    await closed;
    expect(res.destroyed).toBe(true);
  });

  it('never cuts a reader that falls behind and catches up, nor a quiet stream with nothing waiting', async () => {
    // The server writes 1 MiB every 50 ms; the reader takes nothing for 500 ms at a time, then catches up.
    const { res, client } = await stuckResponse(0);
    const line = Buffer.alloc(1 << 20, 0x62);
    const writer = setInterval(() => res.write(line), 50);
    closers.push(() => clearInterval(writer));
    const cuts: number[] = [];
    const watch = new StalledReaders(2000, (_r, waiting) => cuts.push(waiting));
    closers.push(() => watch.close());
    watch.watch(res);
    let behind = 0;
    for (let round = 0; round < 4; round++) {
      client.pause();
      await new Promise((resolve) => setTimeout(resolve, 500));
      behind = Math.max(behind, res.socket!.writableLength);
      client.resume();
      // Caught up: nothing waits in the process (the writer may add more at once).
      for (let i = 0; i < 100 && res.socket!.writableLength > 1 << 20; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    clearInterval(writer);
    expect(behind).toBeGreaterThan(0);
    expect(cuts).toEqual([]);
    expect(res.destroyed).toBe(false);

    // All of it read: nothing waits, and a quiet stream (a generation between steps, queued) is left alone.
    await new Promise<void>((resolve) => {
      const check = (): void => (res.socket!.writableLength === 0 ? resolve() : void setTimeout(check, 20));
      check();
    });
    const now = performance.now();
    watch.sweep(now + 10_000);
    watch.sweep(now + 20_000);
    expect(cuts).toEqual([]);
    expect(res.destroyed).toBe(false);
  });

  it('does nothing when the window is 0', async () => {
    const { res } = await stuckResponse(8 << 20);
    const watch = new StalledReaders(0, () => {
      throw new Error('cut');
    });
    watch.watch(res);
    watch.sweep(1e9);
    watch.sweep(2e9);
    expect(res.destroyed).toBe(false);
  });
});
