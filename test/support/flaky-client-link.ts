/**
 * A client's flaky link to the edge (a phone's), as a TCP proxy on this
 * machine: everything passes untouched until a connection's response is an
 * event stream; past `afterBytes` of it, `stall` passes nothing more either
 * way and leaves both sockets open (a tunnel: a half-open connection), until
 * `resetStalled` resets the client's side (a dropped connection, once what
 * came before it was read: a reset also discards what a browser holds
 * unread). `stall-after-done` and `reset-after-done` pass an event stream up
 * to its `data: [DONE]` and then stall, or reset the client's side 0.3 s
 * later (a link lost as a whole reply's last bytes went). `withhold-answer`
 * passes a POST on and nothing back (a link lost as the request went: no
 * headers ever come). `pass` lets the stream through, and tells `onStream`
 * when its headers came.
 */
import net from 'node:net';

export type LinkFault = 'pass' | 'stall' | 'stall-after-done' | 'reset-after-done' | 'withhold-answer';

const DONE = 'data: [DONE]\n\n';
/** After [DONE], how long `reset-after-done` leaves the client before its reset. */
const RESET_AFTER_DONE_MS = 300;

export interface FlakyClientLink {
  url: string;
  /** What happens to the next event streams. */
  mode: LinkFault;
  /** Bytes of an event stream's response (its headers included) that pass before the fault, and the rest of the read that crosses the mark. */
  afterBytes: number;
  /** Called as an event stream's headers pass on. */
  onStream: (() => void) | null;
  /** Event streams stalled so far (and answers withheld). */
  readonly stalls: number;
  /** Client connections reset after their [DONE] so far. */
  readonly resetsAfterDone: number;
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
  let resetsAfterDone = 0;
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
    // The end of what passed of the event stream, for a [DONE] split over two reads.
    let tail = '';
    const breakLink = (): void => {
      broken = true;
      stalls++;
      // Nothing read from the edge either: its writes back up as a lost phone's would.
      edge.pause();
      stalled.push([client, edge]);
    };
    // An answer withheld: the request's body, in reads after its head, still passes on.
    let withheld = false;
    client.on('data', (d: Buffer) => {
      if (broken && !withheld) return;
      edge.write(d);
      if (!broken && link.mode === 'withhold-answer' && d.subarray(0, 5).toString('latin1') === 'POST ') {
        withheld = true;
        breakLink();
      }
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
        tail = '';
        if (streamed !== null) link.onStream?.();
      }
      if (streamed !== null && link.mode === 'stall' && streamed + d.length > link.afterBytes) {
        // The read that crosses the mark passes up to the end of the event that crosses it (half of one shows nothing),
        // not whole: on a loaded host one read held the rest of the reply, [DONE] too (CI at 21fc382), and nothing stalled.
        const end = d.indexOf('\n\n', Math.max(0, link.afterBytes - streamed), 'latin1');
        client.write(end >= 0 ? d.subarray(0, end + 2) : d);
        breakLink();
        return;
      }
      if (streamed !== null && (link.mode === 'stall-after-done' || link.mode === 'reset-after-done')) {
        const text = tail + d.toString('latin1');
        const at = text.indexOf(DONE);
        if (at >= 0) {
          // Up to the [DONE] event's end, not the chunked body's: the browser has the whole reply, its body unended.
          client.write(d.subarray(0, at + DONE.length - tail.length));
          breakLink();
          if (link.mode === 'reset-after-done') {
            setTimeout(() => {
              link.resetStalled();
              resetsAfterDone++;
            }, RESET_AFTER_DONE_MS);
          }
          return;
        }
        tail = text.slice(-DONE.length);
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
    get resetsAfterDone() {
      return resetsAfterDone;
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
