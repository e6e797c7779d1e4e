/**
 * Accepted token ids → client text, keeping each piece's draft source. Tokens
 * go through the incremental decoder (text appears once it is valid UTF-8) and
 * the stop matcher (text that may start a stop string waits); what is released
 * is handed out as segments `{text, source}` whose texts concatenate to the
 * released text exactly.
 */
import type { TokenSource } from '../shared/protocol';
import type { IncrementalDecoder } from '../shared/tokenizer/tokenizer';
import { StopMatcher } from './stop-matcher';

export interface SourcedText {
  text: string;
  source: TokenSource;
  /**
   * With log-probabilities asked: the tokens whose text ends in this segment
   * (a token whose text is held back, by the decoder or a possible stop
   * string, comes with the segment that releases its last character; tokens
   * of text never sent, after a stop, never come).
   */
  tokens?: TokenLogprob[];
}

/**
 * One token's log-probability, and the most likely tokens' at its position
 * ([id, logprob], most likely first). Null for an echoed prompt's first token,
 * which nothing precedes.
 */
export interface TokenLogprob {
  id: number;
  logprob: number | null;
  top: Array<[number, number]> | null;
  /**
   * The text this token added to what was sent ('' for a byte of a character
   * a later token completes, which then carries the whole character). Set as
   * the token is decoded; the token texts of a response join to its text
   * (up to a token a stop string began inside: see stop()).
   */
  text?: string;
}

export interface AssembledText {
  segments: SourcedText[];
  /** A stop string was reached: nothing after it is sent. */
  stopped: boolean;
  /** Tokens consumed from this push (all of them unless stopped: up to the one completing the stop). */
  consumed: number;
}

export class TokenTextAssembler {
  private readonly matcher: StopMatcher;
  /** Decoded text not yet released, by source, in order. */
  private readonly pending: SourcedText[] = [];
  private stoppedAlready = false;
  /** Characters ever added to `pending`, and ever released from it. */
  private appended = 0;
  private released = 0;
  /** Tokens not released yet, with the character count (`appended`) at which their text ends. */
  private readonly heldTokens: Array<{ token: TokenLogprob; end: number }> = [];
  /** The last token, while the decoder holds bytes after it (its end is not known until the next piece, or the flush). */
  private holder: { token: TokenLogprob; end: number } | null = null;

  /** Tokens pushed so far (a stop string must end in the text of those past `minTokens`). */
  private tokens = 0;
  private readonly minTokens: number;

  /**
   * `stopOptions`: `includeStop` sends the stop string with the text before
   * it; a stop string counts only where it ends in the text of a token after
   * the first `minTokens`, though it may start before (vLLM's
   * include_stop_str_in_output and min_tokens).
   */
  constructor(
    private readonly decoder: IncrementalDecoder,
    stops: readonly string[],
    private readonly skipIds: ReadonlySet<number> = new Set(),
    stopOptions: { includeStop?: boolean; minTokens?: number } = {},
  ) {
    this.matcher = new StopMatcher(stops, stopOptions.includeStop ?? false);
    this.minTokens = stopOptions.minTokens ?? 0;
  }

  get stopped(): boolean {
    return this.stoppedAlready;
  }

  /** The stop string that ended the text; null while none has (vLLM's `stop_reason`). */
  get stopString(): string | null {
    return this.matcher.matched;
  }

  /** `logprobs[i]` (when given) travels with the text of `ids[i]`. */
  push(ids: ArrayLike<number>, sources: ArrayLike<TokenSource>, logprobs?: readonly TokenLogprob[]): AssembledText {
    const segments: SourcedText[] = [];
    if (this.stoppedAlready) return { segments, stopped: true, consumed: 0 };
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      this.tokens++;
      if (this.skipIds.has(id)) {
        // The end token adds no text, but is counted in the usage and listed with its log-probability (vLLM does
        // the same): the entries then number the completion's tokens. It goes with the text before it.
        const token = logprobs?.[i];
        if (token) {
          token.text = '';
          this.heldTokens.push({ token, end: this.holder ? Infinity : this.appended });
        }
        continue;
      }
      const piece = this.decoder.push(id);
      this.appended += piece.length;
      // The token before, held while the decoder held its bytes, is done with: its text ends here.
      if (this.holder) {
        this.holder.end = this.appended - piece.length;
        this.holder = null;
      }
      const token = logprobs?.[i];
      if (token) {
        token.text = piece;
        const held = { token, end: this.appended };
        this.heldTokens.push(held);
        // Bytes the decoder still holds may come out only at the end (flush): their text is then this token's, so it waits.
        if (this.decoder.holding()) {
          held.end = Infinity;
          this.holder = held;
        }
      }
      if (piece.length === 0) continue;
      this.pending.push({ text: piece, source: sources[i] ?? 'model' });
      // No stop string may end in the first minTokens tokens' text, but one may start there (its start is held).
      const { release, stopped } = this.matcher.push(piece, this.tokens > this.minTokens);
      this.take(release.length, segments);
      if (stopped) {
        this.stop();
        return { segments, stopped: true, consumed: i + 1 };
      }
    }
    return { segments, stopped: false, consumed: ids.length };
  }

  /** End of generation: release what the decoder and the stop matcher still hold. */
  finish(): SourcedText[] {
    const segments: SourcedText[] = [];
    if (this.stoppedAlready) return segments;
    const tail = this.decoder.flush();
    // Held for bytes that printed nothing after all (a special token the decoder skips): its text ends where it is.
    if (tail.length === 0 && this.holder) {
      this.holder.end = this.appended;
      this.holder = null;
    }
    if (tail.length > 0) {
      this.appended += tail.length;
      // The bytes the decoder held (U+FFFD for an unfinished character) are the text of the last token, held for them.
      if (this.holder) {
        this.holder.token.text = (this.holder.token.text ?? '') + tail;
        this.holder.end = this.appended;
        this.holder = null;
      }
      this.pending.push({ text: tail, source: 'model' });
      const { release, stopped } = this.matcher.push(tail, this.tokens > this.minTokens);
      this.take(release.length, segments);
      if (stopped) {
        this.stop();
        return segments;
      }
    }
    this.take(this.matcher.flush().length, segments);
    this.take(Infinity, segments);
    // Tokens that printed nothing after the last text (a special token the decoder skips) go with it, or alone.
    if (this.heldTokens.length > 0) {
      const rest = this.heldTokens.splice(0).map((h) => h.token);
      const last = segments.at(-1);
      if (last) last.tokens = last.tokens ? last.tokens.concat(rest) : rest;
      else segments.push({ text: '', source: 'model', tokens: rest });
    }
    return segments;
  }

  /**
   * A stop string was reached: nothing after what was released is sent, nor
   * any token whose text is not wholly in it. The one token a stop string
   * began inside is left out too (its leading characters were sent): the
   * tokens' texts join to the text up to that token's first character.
   */
  private stop(): void {
    this.stoppedAlready = true;
    this.pending.length = 0;
    this.heldTokens.length = 0;
    this.holder = null;
  }

  /** Move `chars` characters from the front of `pending` to `out`, splitting a segment if needed. */
  private take(chars: number, out: SourcedText[]): void {
    let left = chars;
    while (left > 0 && this.pending.length > 0) {
      const head = this.pending[0];
      if (head.text.length <= left) {
        out.push(head);
        this.pending.shift();
        left -= head.text.length;
        this.released += head.text.length;
      } else {
        out.push({ text: head.text.slice(0, left), source: head.source });
        head.text = head.text.slice(left);
        this.released += left;
        left = 0;
      }
      this.attachReleased(out[out.length - 1]);
    }
  }

  /** Hands the held tokens whose text has now been released wholly to `segment`. */
  private attachReleased(segment: SourcedText): void {
    const held = this.heldTokens;
    let n = 0;
    while (n < held.length && held[n].end <= this.released) n++;
    if (n === 0) return;
    const tokens = held.splice(0, n).map((h) => h.token);
    segment.tokens = segment.tokens ? segment.tokens.concat(tokens) : tokens;
  }
}
