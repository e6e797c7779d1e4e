/**
 * A client's flaky link to the edge (a phone's), as a TCP proxy on this
 * machine: everything passes untouched until a connection's response is an
 * event stream; past `afterBytes` of it, `stall` passes nothing more either
 * way and leaves both sockets open (a tunnel: a half-open connection), until
 * `resetStalled` resets the client's side (a dropped connection, once what
 * came before it was read: a reset also discards what a browser holds
 * unread). `pass` lets the stream through, and tells `onStream` when its
 * headers came.
 */
import net from 'node:net';

export type LinkFault = 'pass' | 'stall';

export interface FlakyClientLink {
  url: string;
  /** What happens to the next event streams. */
  mode: LinkFault;
  /** Bytes of an event stream's response (its headers included) that pass before the fault, and the rest of the read that crosses the mark. */
  afterBytes: number;
  /** Called as an event stream's headers pass on. */
  onStream: (() => void) | null;
  /** Event streams stalled so far. */
  readonly stalls: number;
  /** Resets the client's side of every stalled connection. */
  resetStalled(): void;
  close(): Promise<void>;
}

/** An HTTP/1.1 response head of an event stream (the edge's SSE replies). */
const EVENT_STREAM_HEAD = /^HTTP\/1\.1 [\s\S]*?\r\ncontent-type: text\/event-stream/i;

export async function startFlakyClientLink(target: string): Promise<FlakyClientLink> {
  const upstream = new URL(target);
  const sockets = new Set<net.Socket>();
  const stalled: Array<[client: net.Socket, edge: net.Socket]> = [];
  let stalls = 0;
  const server = net.createServer((client) => {
    const edge = net.connect(Number(upstream.port), upstream.hostname);
    for (const s of [client, edge]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    // Counted from the event stream's head (a connection kept alive served the page and /v1/models before it).
    let streamed: number | null = null;
    let broken = false;
    client.on('data', (d: Buffer) => {
      if (!broken) edge.write(d);
    });
    client.on('close', () => {
      if (!broken) edge.destroy();
    });
    edge.on('close', () => {
      if (!broken) client.end();
    });
    edge.on('data', (d: Buffer) => {
      if (broken) return;
      // A response's head comes in a read of its own (its request came between): is it an event stream's?
      if (d.subarray(0, 7).toString('latin1') === 'HTTP/1.') {
        streamed = EVENT_STREAM_HEAD.test(d.toString('latin1')) ? 0 : null;
        if (streamed !== null) link.onStream?.();
      }
      if (streamed !== null && link.mode !== 'pass' && streamed + d.length > link.afterBytes) {
        // The read that crosses the mark passes whole: the edge writes each event at once, and half of one shows nothing.
        client.write(d);
        broken = true;
        stalls++;
        // Nothing read from the edge either: its writes back up as a lost phone's would.
        edge.pause();
        stalled.push([client, edge]);
        return;
      }
      if (streamed !== null) streamed += d.length;
      client.write(d);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const link: FlakyClientLink = {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    mode: 'pass',
    afterBytes: 1500,
    onStream: null,
    get stalls() {
      return stalls;
    },
    resetStalled() {
      for (const [client, edge] of stalled.splice(0)) {
        client.resetAndDestroy();
        edge.destroy();
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  return link;
}
