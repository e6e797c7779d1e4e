/**
 * A response body the Worker writes as it goes (an SSE stream, a whole
 * reply's heartbeat spaces), with nothing ever left pending inside the
 * runtime: each chunk is enqueued on a ReadableStream's controller at once,
 * and the stream's `cancel` is how the client's leaving is told.
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

export class ClientBody {
  readonly stream: ReadableStream<Uint8Array>;
  private controller: ReadableStreamDefaultController<Uint8Array> | null = null;
  private over = false;

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
        this.drop();
        leftLater();
      },
    });
  }

  /** Sends `chunk` (nothing once the body is over: closed, or its client gone). */
  send(chunk: Uint8Array): void {
    if (this.over) return;
    this.controller?.enqueue(chunk);
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
