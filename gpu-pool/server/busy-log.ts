/**
 * The pool's log line for busy answers (503 `busy`), at most one a minute
 * while they come. A busy answer is the pool working as meant, and a burst
 * brings thousands a minute (each line written synchronously on the pool's
 * only thread), so they are not logged one by one; but every overload
 * episode must leave a line an on-call can find (review h223: a count-based
 * "1st and every 1,000th" left a second episode out of the log entirely).
 *
 * The first answer after a quiet interval is said at once; those that follow
 * within the interval are counted and said together when it ends, with the
 * latest one's reason. sssd_pool_rejected_requests_total counts every one.
 */

/** At most one line this often while busy answers come. */
export const BUSY_LOG_INTERVAL_MS = 60_000;

const ADVICE =
  'sssd_pool_rejected_requests_total, by reason; at capacity for long, raise --max-active, --max-queued or --max-total-tokens, or add pools';

export class BusyLog {
  /** Answers not yet in a line. */
  private held = 0;
  private total = 0;
  private latest = '';
  /** When the last line was written; null before the first. */
  private lastLineAt: number | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly write: (line: string) => void,
    private readonly intervalMs = BUSY_LOG_INTERVAL_MS,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /** One busy answer, with the message it was given. */
  note(message: string): void {
    this.held++;
    this.total++;
    this.latest = message;
    const wait = this.lastLineAt === null ? 0 : this.lastLineAt + this.intervalMs - this.clock();
    if (wait <= 0) {
      this.flush();
      return;
    }
    if (this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.flush();
      }, wait);
      // A line still held never keeps the process alive: close() writes it.
      this.timer.unref();
    }
  }

  /** Writes the answers held, if any. */
  flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.held === 0) return;
    const since = this.lastLineAt === null ? 'since it started' : `since the last such line, ${Math.round((this.clock() - this.lastLineAt) / 1000)} s ago`;
    const all = this.lastLineAt === null ? '' : ` (${this.total} in all)`;
    this.write(`pool: answered busy ${this.held} time(s) ${since}${all}, the latest: ${this.latest} (${ADVICE})`);
    this.held = 0;
    this.lastLineAt = this.clock();
  }

  /** At shutdown: the answers held are said, not lost with the timer. */
  close(): void {
    this.flush();
  }
}
