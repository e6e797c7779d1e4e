/**
 * A pool's generation stream that goes silent: a pool sends an event every
 * step (milliseconds apart), so a stream with nothing for `stallMs` has a
 * pool that hangs (a stuck device, a network that stopped delivering without
 * a reset), which would otherwise hold the client until it gives up. The
 * watch aborts the generation's fetch and ends its events with an error, so
 * the edge moves on: to the next pool before the first token, or resumes the
 * generation elsewhere after it (CompletionRun.resume).
 *
 * One timer per stream that re-arms itself for what is left of the window,
 * not one per event: events only stamp the time.
 */
import type { PoolEvent } from '../shared/protocol';
import type { PoolHeard } from './pool-picker';

/** How often a stream waiting on its pool asks whether the pool is now known down. */
const RECHECK_MS = 1_000;

export class StallWatch {
  private readonly controller = new AbortController();
  private last = Date.now();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stalled = false;
  /** Waiting for the pool: for its answer at first, then for each event the reader asked for. */
  private waiting = true;
  private readonly onOuterAbort = (): void => this.controller.abort();

  /** The window now: `firstMs` until the pool's first event, `stallMs` after. */
  private windowMs: number;
  /** The pool's first event has come. */
  private heard = false;
  /** A recheck found the pool doubted (once: its window is set then). */
  private doubtSeen = false;
  /** A recheck found the pool down mid-reply since its last event (its window is set then, until the next event). */
  private downSeen = false;

  /**
   * `outer`: the run's own signal (the client left, a stop string): it aborts
   * this stream too. `firstMs`: a shorter window for the pool's answer and
   * first event (a pool known down: a hung fleet otherwise held a request
   * the whole window once per pool before its 503).
   */
  constructor(
    private readonly stallMs: number,
    private readonly outer?: AbortSignal,
    firstMs?: number,
    /** Called once if the pool goes silent past its window (the picker then doubts every pool not heard from since). */
    private readonly onStall?: () => void,
    /**
     * Asked about once a second until the pool's first event: a pool found
     * down meanwhile (its health check failed since the request went to it)
     * gets `firstMs` more from then, not the whole window. Sent while its
     * health still said up (a pool frozen a moment before), a request waited
     * out the 30 s window while another pool sat idle. `down`, asked as
     * often after the first event while the stream waits on the pool: a pool
     * whose own health check found it down since its last event gets
     * `firstMs` more too (review h228: streams mid-reply on a frozen pool
     * waited out the whole window, 25 s after new requests had moved to the
     * other pool). Doubt alone is not asked then: a live pool's slow step, or
     * another pool's stall, must not cut a reply that is flowing.
     */
    private readonly recheck?: { doubted: () => boolean; firstMs: number; down?: () => boolean },
    /** Stamped at each event: the pool is heard from, for every request that weighs whether it hangs (PoolPicker.doubted). */
    private readonly heardFrom?: PoolHeard,
  ) {
    this.windowMs = firstMs ?? stallMs;
    if (outer?.aborted) this.controller.abort();
    else outer?.addEventListener('abort', this.onOuterAbort);
    this.arm(this.nextCheckIn(this.windowMs));
  }

  /** Until the first event, and after it where `down` is asked, a recheck comes at least every RECHECK_MS. */
  private nextCheckIn(ms: number): number {
    return this.recheck && (!this.heard || this.recheck.down) ? Math.min(ms, RECHECK_MS) : ms;
  }

  /** The signal to fetch the generation with. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The pool went silent past its window (what aborted the fetch, when it was aborted). */
  get didStall(): boolean {
    return this.stalled;
  }

  /** The window the pool had, in seconds, for what is said of a stall. */
  get windowSeconds(): number {
    return Number((this.windowMs / 1000).toFixed(1));
  }

  /** The stream's events, each one proof of life; after a stall, one `error` event ends them. */
  async *watch(events: AsyncGenerator<PoolEvent>): AsyncGenerator<PoolEvent> {
    let done = false;
    try {
      for (;;) {
        this.startWaiting();
        const next = await events.next();
        this.waiting = false;
        this.heard = true;
        if (!this.stalled) {
          this.windowMs = this.stallMs;
          this.downSeen = false;
          if (this.heardFrom && !next.done) this.heardFrom.at = Date.now();
        }
        if (this.stalled || next.done) {
          done = next.done === true;
          break;
        }
        yield next.value;
      }
      if (this.stalled) yield { type: 'error', code: 'internal', message: `the pool sent nothing for ${this.windowSeconds} s` };
    } finally {
      this.stop();
      if (!done) await events.return(undefined);
    }
  }

  /**
   * The window runs while the edge waits for the pool, not while it is busy
   * elsewhere: a client that reads slowly holds the reading of events back
   * (the pool's own events wait, buffered, meanwhile), and a healthy pool is
   * not to be taken for a hung one for that.
   */
  private startWaiting(): void {
    this.last = Date.now();
    this.waiting = true;
  }

  /** The stream is over (or never opened): no more timer, no tie to the outer signal. */
  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.outer?.removeEventListener('abort', this.onOuterAbort);
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => {
      // Not waiting: the window starts again when the reader next asks.
      const quiet = this.waiting ? Date.now() - this.last : 0;
      // Found doubted: `firstMs` more from now, not from the send (a pool that answers slowly, busy compiling,
      // had its requests cut at once, and their stall doubted every other pool).
      if (this.recheck && !this.heard && !this.doubtSeen && this.recheck.doubted()) {
        this.doubtSeen = true;
        this.windowMs = Math.min(this.windowMs, quiet + this.recheck.firstMs);
      }
      // Mid-reply, found down by its own health check with nothing from it since: likewise `firstMs` more.
      if (this.recheck?.down && this.heard && this.waiting && !this.downSeen && this.recheck.down()) {
        this.downSeen = true;
        this.windowMs = Math.min(this.windowMs, quiet + this.recheck.firstMs);
      }
      if (quiet < this.windowMs) {
        this.arm(this.nextCheckIn(this.windowMs - quiet));
        return;
      }
      // The run itself ended meanwhile (the client left, a stop string): no pool is to blame.
      if (this.outer?.aborted) {
        this.timer = undefined;
        return;
      }
      this.stalled = true;
      this.timer = undefined;
      this.controller.abort();
      this.onStall?.();
    }, ms);
  }
}
