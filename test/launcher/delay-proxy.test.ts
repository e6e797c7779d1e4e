// The loopback proxy that stands in for the edge ↔ pool link in bench-edge-delay:
// a real TCP server behind it, bytes and timing checked.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startDelayProxy, type DelayProxy } from '../../launcher/delay-proxy';

const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((x) => x.close()));
});

/** A TCP echo server on a free loopback port. */
async function echoServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.pipe(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const handle = {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  open.push(handle);
  return handle;
}

async function proxyTo(port: number, delayMs: number): Promise<DelayProxy> {
  const proxy = await startDelayProxy({ host: '127.0.0.1', port }, delayMs);
  open.push(proxy);
  return proxy;
}

async function connect(port: number): Promise<Socket> {
  const socket = createConnection({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return socket;
}

/** Reads from `socket` until `bytes` bytes have arrived. */
function readBytes(socket: Socket, bytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      got += chunk.length;
      if (got >= bytes) {
        socket.off('data', onData);
        resolve(Buffer.concat(chunks));
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('close', () => got < bytes && reject(new Error(`socket closed after ${got} of ${bytes} bytes`)));
  });
}

/** Whether `socket` closes within `ms`: a proxy that leaves it open fails the test at once, not at its timeout. */
function closesWithin(socket: Socket, ms: number): Promise<'closed' | 'still open'> {
  if (socket.closed) return Promise.resolve('closed');
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('still open'), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
  });
}

describe('startDelayProxy', () => {
  it('delivers every byte in order, through many writes', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port, 5);
    const socket = await connect(proxy.port);
    const payload = Buffer.alloc(1 << 20);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7919) & 0xff;
    const back = readBytes(socket, payload.length);
    for (let at = 0; at < payload.length; at += 4096) socket.write(payload.subarray(at, at + 4096));
    expect((await back).equals(payload)).toBe(true);
    socket.destroy();
  });

  it('adds the delay once each way: a round trip takes at least twice the delay', async () => {
    const echo = await echoServer();
    const delayMs = 40;
    const proxy = await proxyTo(echo.port, delayMs);
    const socket = await connect(proxy.port);
    // The first exchange also pays the connection's set-up delay; time the second.
    socket.write('warm');
    await readBytes(socket, 4);
    const t0 = performance.now();
    socket.write('ping');
    expect((await readBytes(socket, 4)).toString()).toBe('ping');
    // A timer may fire a millisecond early; the proxy adds, never removes, delay.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(2 * delayMs - 2);
    socket.destroy();
  });

  it('with no delay, answers within a few milliseconds', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port, 0);
    const socket = await connect(proxy.port);
    socket.write('ping');
    expect((await readBytes(socket, 4)).toString()).toBe('ping');
    socket.destroy();
  });

  it('closes the client side when the target refuses, and keeps serving', async () => {
    const echo = await echoServer();
    const deadPort = echo.port;
    await echo.close();
    const proxy = await proxyTo(deadPort, 0);
    const socket = await connect(proxy.port);
    expect(await closesWithin(socket, 2_000)).toBe('closed');
    // The proxy itself is still up: another connection is accepted (and closed the same way).
    const again = await connect(proxy.port);
    expect(await closesWithin(again, 2_000)).toBe('closed');
  });

  it('close() ends open connections', async () => {
    const echo = await echoServer();
    const proxy = await startDelayProxy({ host: '127.0.0.1', port: echo.port }, 0);
    const socket = await connect(proxy.port);
    socket.on('error', () => undefined);
    const closed = closesWithin(socket, 2_000);
    // Not awaited first: a close() that left connections open would never resolve.
    const closing = proxy.close();
    expect(await closed).toBe('closed');
    await closing;
  });
});
