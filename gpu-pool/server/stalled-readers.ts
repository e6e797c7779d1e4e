/**
 * Cuts generation streams whose readers have stopped taking bytes. A stream's
 * events are written as the loop produces them; a reader that stops reading
 * (a wedged edge, a peer that keeps its connection open and its TCP window
 * shut) leaves them in the process, up to a generation's worth each, for as
 * long as the connection stays open, and nothing else bounds that.
 *
 * Progress is what Node lets one see: bytes waiting in the process (the
 * kernel's buffers full) and writes handed to the kernel completing. A
 * reader that catches up now and then, however far behind it falls, is never
 * cut; one behind by more than the kernel holds, with no write completing,
 * for the whole window is. The default window is long (5 minutes) for that
 * reason: a single write may hold all that queued up while the one before it
 * was in flight, and a slow link must be able to take it.
 */
import type { ServerResponse } from 'node:http';

/** How long a reader may take nothing while bytes wait for it (--stalled-reader-seconds). */
export const DEFAULT_STALLED_READER_MS = 300_000;

interface Watched {
  /** Bytes handed to the kernel at the last look. */
  dispatched: number;
  /** When bytes were first seen waiting with no write completing since; null while none wait. */
  stalledSince: number | null;
}

export class StalledReaders {
  private readonly watched = new Map<ServerResponse, Watched>();
  private readonly timer: NodeJS.Timeout | null;

  constructor(
    /** 0 = never cut. */
    private readonly limitMs: number,
    /** Called once for each stream cut, before it is destroyed. */
    private readonly onCut: (res: ServerResponse, waitingBytes: number) => void,
    private readonly clock: () => number = () => performance.now(),
  ) {
    // Looked at four times a window: a stream is cut between 1 and 1.25 windows after it stalled.
    // At most a minute apart: Node fires an interval past 2^31 ms every millisecond.
    this.timer = limitMs > 0 ? setInterval(() => this.sweep(), Math.min(60_000, Math.max(50, Math.floor(limitMs / 4)))) : null;
    this.timer?.unref();
  }

  watch(res: ServerResponse): void {
    if (this.timer) this.watched.set(res, { dispatched: dispatchedBytes(res), stalledSince: null });
  }

  forget(res: ServerResponse): void {
    this.watched.delete(res);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.watched.clear();
  }

  /** Public for tests; the interval calls it. */
  sweep(now = this.clock()): void {
    for (const [res, w] of this.watched) {
      if (res.destroyed) {
        this.watched.delete(res);
        continue;
      }
      // A pipelined response gets its socket once the one before it has finished.
      const socket = res.socket;
      if (!socket) continue;
      const dispatched = dispatchedBytes(res);
      const waiting = socket.writableLength;
      if (waiting === 0 || dispatched !== w.dispatched) {
        w.dispatched = dispatched;
        w.stalledSince = waiting === 0 ? null : now;
        continue;
      }
      if (w.stalledSince === null) {
        w.stalledSince = now;
        continue;
      }
      if (now - w.stalledSince >= this.limitMs) {
        this.watched.delete(res);
        this.onCut(res, waiting);
        res.destroy();
      }
    }
  }
}

/** Bytes of the response's socket whose writes have completed (what it was given, less what still waits in it). */
function dispatchedBytes(res: ServerResponse): number {
  const socket = res.socket;
  return socket ? socket.bytesWritten - socket.writableLength : 0;
}
