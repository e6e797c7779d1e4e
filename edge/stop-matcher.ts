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

  /**
   * Append text; returns what may be sent now and whether a stop string was hit (the text before it is released, the stop too with includeStop, the rest dropped).
   * `search` false (the text of vLLM's first min_tokens tokens): no stop string may end in this text, but its end is
   * held as any text is, so a stop string that starts in it and ends in text pushed later is found (vLLM's window).
   */
  push(text: string, search = true): { release: string; stopped: boolean } {
    if (this.stops.length === 0) return { release: text, stopped: false };
    const pending = this.held + text;
    if (search) {
      // A stop string must end in the new text: one inside the held text alone was looked for already, or (held
      // from text not searched) may not count. Its search starts up to its length less one before the new text.
      const fresh = this.held.length;
      let stopAt = -1;
      for (const stop of this.stops) {
        const at = pending.indexOf(stop, fresh - stop.length + 1);
        if (at >= 0 && (stopAt < 0 || at < stopAt)) {
          stopAt = at;
          this.matched = stop;
        }
      }
      if (stopAt >= 0) {
        this.held = '';
        return { release: pending.slice(0, this.includeStop ? stopAt + this.matched!.length : stopAt), stopped: true };
      }
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
      for (const stop of this.stops) if (len < stop.length && StopMatcher.endsWithStart(text, stop, len)) return len;
    }
    return 0;
  }

  /** Whether `text` ends in the first `len` characters of `stop` (compared in place: no string is cut per token). */
  private static endsWithStart(text: string, stop: string, len: number): boolean {
    const from = text.length - len;
    for (let i = 0; i < len; i++) if (text.charCodeAt(from + i) !== stop.charCodeAt(i)) return false;
    return true;
  }
}
