/**
 * A response body the Worker writes as it goes (an SSE stream, a whole
 * reply's heartbeat spaces), with nothing ever left pending inside the
 * runtime: each chunk is enqueued on a ReadableStream's controller at once,
 * and the stream's `cancel` is how the client's leaving is told (or, where
 * the runtime tells nothing, its queue left unread: unreadForMs).
 *
 * A TransformStream's writer did the same work before, its writes not
 * awaited; under wrangler dev (workerd), a client that left while a write
 * waited on it left that write unsettled for good, and with it the writable
 * side (controller, writer, its AbortSignal, the pending writes' chunks):
 * ~2 KB of heap (~6 KB with workerd's own objects) for one client in ten that
 * dropped a stream, and nothing told the request that its client had gone,
 * so its key's slot stayed taken until its lease lapsed (review h163).
 */
/** A call of `target.gone` that does not keep `target` alive (what a body or signal workerd keeps after its client left reaches). */
export function weakCall(target: { gone: () => void }): () => void {
  const ref = new WeakRef(target);
  return () => ref.deref()?.gone();
}

/**
 * How often taken() looks at the queue, at most: it looks after 1 ms, then
 * twice as long each time up to this, since a live reader has mostly taken
 * the last chunks within a turn or two and would otherwise wait a whole poll
 * for its reply's end.
 */
const TAKEN_POLL_MS = 20;

export class ClientBody {
  readonly stream: ReadableStream<Uint8Array>;
  private controller: ReadableStreamDefaultController<Uint8Array> | null = null;
  private over = false;
  /** Ended by the runtime's cancel (its client gone), or abandoned. */
  private cancelled = false;
  /** The queue's desiredSize when last looked at (a chunk counts 1, the high-water mark is 1: 1 is an empty queue). */
  private lastDesired = 1;
  /** When the runtime was last seen taking a chunk, or nothing waited. */
  private tookAt = Date.now();

  /**
   * `left` is called once, when the runtime cancels the stream (the client
   * went); it is held through a weak link only, as a body the runtime keeps
   * after its client left would keep all it reaches: the caller holds its
   * target for as long as it may be needed.
   */
  constructor(left: { gone: () => void }) {
    const leftLater = weakCall(left);
    this.stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.controller = controller;
      },
      cancel: () => {
        this.cancelled = true;
        this.drop();
        leftLater();
      },
    });
  }

  /** Sends `chunk` (nothing once the body is over: closed, or its client gone). */
  send(chunk: Uint8Array): void {
    if (this.over || !this.controller) return;
    this.unreadForMs();
    this.controller.enqueue(chunk);
    this.lastDesired = this.controller.desiredSize ?? 1;
  }

  /**
   * How long what was sent has waited with the runtime taking none of it (0
   * while nothing waits, or it took some since the last look). A client that
   * reads, however slowly, is read for at once until the buffers behind the
   * body fill (the kernel's, a proxy's: far more than a reply's text); under
   * wrangler dev, a client that left can have the body never read again, with
   * no cancel and no abort signal (24 streams left at once, their requests
   * held by waitUntil: in 3 to 21 of them every chunk of the reply waited
   * unread to its end; review h223's case, 2026-12-07).
   */
  unreadForMs(): number {
    const now = Date.now();
    const desired = this.controller?.desiredSize ?? 1;
    if (desired > 0 || desired > this.lastDesired) this.tookAt = now;
    this.lastDesired = desired;
    return now - this.tookAt;
  }

  /**
   * Whether all that was sent is taken by the runtime (true as its queue
   * empties), or false once what waits has had none of it taken for
   * `windowMs` (unreadForMs), or the body was cancelled: asked at a generation's
   * end, before it is kept as read. Under wrangler dev a client that left can
   * have its body's reads stop with no cancel and no abort signal (runs of 12
   * streams left at their first text, 80 tokens each: 6 of 12 through
   * wrangler's port, 11 of 12 on workerd's own), and a generation that ended
   * within the window after that was taken for a reply read whole.
   */
  async taken(windowMs: number): Promise<boolean> {
    for (let pollMs = 1; ; pollMs = Math.min(TAKEN_POLL_MS, pollMs * 2)) {
      if (this.over) return !this.cancelled;
      const unread = this.unreadForMs();
      // All of it taken; a reader that takes some, however slowly, is waited for (unread is 0 as it takes).
      if ((this.controller?.desiredSize ?? 1) > 0) return true;
      if (unread >= windowMs) return false;
      await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, windowMs - unread)));
    }
  }

  /** The body's end, after what was sent. */
  close(): void {
    if (this.over) return;
    this.controller?.close();
    this.drop();
  }

  /** The client is gone: what waits unsent is dropped, and nothing more is sent. */
  abandon(): void {
    if (this.over) return;
    this.controller?.error(new Error('client disconnected'));
    this.cancelled = true;
    this.drop();
  }

  /** Over: closed, cancelled, or abandoned. */
  get ended(): boolean {
    return this.over;
  }

  private drop(): void {
    this.over = true;
    this.controller = null;
  }
}
