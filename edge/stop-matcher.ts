/**
 * Stop strings over streamed text. Text that could still be the start of a stop
 * string is held back until the next piece decides it, so a stop split across
 * chunks (or tokens) is never partly sent.
 */
export class StopMatcher {
  private held = '';
  private readonly maxLen: number;
  /** The stop string that ended the text (the earliest found; of two at one place, the first listed); null until one does. */
  matched: string | null = null;

  /** `includeStop`: the stop string itself is released with the text before it (vLLM's include_stop_str_in_output). */
  constructor(
    private readonly stops: readonly string[],
    private readonly includeStop = false,
  ) {
    this.maxLen = stops.reduce((m, s) => Math.max(m, s.length), 0);
  }

  /** Append text; returns what may be sent now and whether a stop string was hit (the text before it is released, the stop too with includeStop, the rest dropped). */
  push(text: string): { release: string; stopped: boolean } {
    if (this.stops.length === 0) return { release: text, stopped: false };
    const pending = this.held + text;
    let stopAt = -1;
    for (const stop of this.stops) {
      const at = pending.indexOf(stop);
      if (at >= 0 && (stopAt < 0 || at < stopAt)) {
        stopAt = at;
        this.matched = stop;
      }
    }
    if (stopAt >= 0) {
      this.held = '';
      return { release: pending.slice(0, this.includeStop ? stopAt + this.matched!.length : stopAt), stopped: true };
    }
    const keep = this.heldSuffixLength(pending);
    this.held = pending.slice(pending.length - keep);
    return { release: pending.slice(0, pending.length - keep), stopped: false };
  }

  /** The end of the stream: held text was not a stop after all. */
  flush(): string {
    const rest = this.held;
    this.held = '';
    return rest;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
  private heldSuffixLength(text: string): number {
    for (let len = Math.min(this.maxLen - 1, text.length); len > 0; len--) {
      const suffix = text.slice(text.length - len);
      for (const stop of this.stops) if (stop.startsWith(suffix)) return len;
    }
    return 0;
  }
}
