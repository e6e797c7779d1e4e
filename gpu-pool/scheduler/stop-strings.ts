/**
 * A generation's stop strings at the pool: its output ids decoded as the
 * edge decodes them, and the step ended at the token whose text completes a
 * stop string, as the edge would find it (edge/token-text.ts,
 * edge/stop-matcher.ts). Before this the edge found the stop and cancelled,
 * and meanwhile the pool had generated on (to the end, for a short one).
 *
 * Never earlier than the edge: a stop string counts only where it ends in the
 * text of a token past `minTokens` (it may start before), the ids that print
 * nothing at the edge (the model's end ids) add no text, and a resumed
 * generation's earlier output is text already searched. Per stop string a
 * Knuth-Morris-Pratt state (how many of its leading characters the text ends
 * in): the text is never kept, and each character costs a comparison or a
 * few per stop string, whatever the lengths; a token's text is the decoder's
 * own string (with a llama2.c table decoder no allocation; a byte-level
 * Hugging Face decoder allocates in its library, ~2-3 µs a token).
 */
import type { IncrementalDecoder, Tokenizer } from '../../shared/tokenizer/tokenizer';

export class StopStrings {
  /**
   * The stop strings of a generation whose prompt ends in `resumed` tokens
   * of its earlier output (a resume): decoded after the token before the
   * output, as the edge's decoder is. Of the earlier output only the tail
   * that can hold a stop string's start is decoded (the whole of it ran on
   * the pool's one thread; review h122): a character is at most 4 tokens
   * (byte pieces), and more let a decoder started mid-character settle
   * before the text that counts.
   */
  static forGeneration(stops: readonly string[], tokenizer: Pick<Tokenizer, 'createDecoder'>, silentIds: ReadonlySet<number>, minTokens: number, prompt: readonly number[], resumed: number): StopStrings {
    const first = prompt.length - resumed;
    const longest = stops.reduce((n, stop) => Math.max(n, stop.length), 0);
    const from = Math.max(first, prompt.length - (4 * longest + 64));
    const watch = new StopStrings(stops, tokenizer.createDecoder({ previousId: prompt[from - 1] }), silentIds, minTokens);
    watch.skip(from - first);
    if (from < prompt.length) watch.follow(prompt.slice(from));
    return watch;
  }

  /** Per stop string, its border table: borders[i] = the longest proper prefix of stop[0..i] that is also a suffix of it. */
  private readonly borders: Int32Array[];
  /** Per stop string, how many of its leading characters the output's text ends in. */
  private readonly matched: Int32Array;
  /** Output tokens so far (a resumed generation's earlier ones included), those that print nothing too. */
  private tokens = 0;

  /**
   * `decoder`: the tokenizer's, created after the token before the output
   * (its leading space after BOS). `silentIds`: ids that add no text at the
   * edge (the model's end ids, under ignoreEos too); they count as tokens.
   */
  constructor(
    private readonly stops: readonly string[],
    private readonly decoder: IncrementalDecoder,
    private readonly silentIds: ReadonlySet<number>,
    private readonly minTokens: number,
  ) {
    this.borders = stops.map(borderTable);
    this.matched = new Int32Array(stops.length);
  }

  /** Output tokens before those followed (a resumed generation's, too early to hold a stop string's start): counted only. */
  skip(count: number): void {
    this.tokens += count;
  }

  /** A resumed generation's earlier output: its text is followed, not searched (the edge found no stop string ending in it). */
  follow(ids: ArrayLike<number>): void {
    for (let i = 0; i < ids.length; i++) this.take(ids[i], false);
  }

  /** Takes the next output token: true when a stop string ends in its text (the generation ends with it). */
  push(id: number): boolean {
    return this.take(id, true);
  }

  private take(id: number, search: boolean): boolean {
    this.tokens++;
    if (this.silentIds.has(id)) return false;
    const text = this.decoder.push(id);
    if (text.length === 0) return false;
    return this.scan(text, search && this.tokens > this.minTokens);
  }

  /** Moves every stop string's state over `text`; true when one is completed and `search` lets it count. */
  private scan(text: string, search: boolean): boolean {
    const { stops, borders, matched } = this;
    for (let s = 0; s < stops.length; s++) {
      const stop = stops[s];
      const border = borders[s];
      let m = matched[s];
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        while (m > 0 && stop.charCodeAt(m) !== c) m = border[m - 1];
        if (stop.charCodeAt(m) === c) m++;
        if (m === stop.length) {
          // The generation ends here; the states need not be kept.
          if (search) return true;
          // In text not searched (min_tokens): goes on from its longest border, as a stop string may start there.
          m = border[m - 1];
        }
      }
      matched[s] = m;
    }
    return false;
  }
}

/** Knuth-Morris-Pratt's failure function of `stop`, over UTF-16 code units (the edge matches those). */
function borderTable(stop: string): Int32Array {
  const border = new Int32Array(stop.length);
  let k = 0;
  for (let i = 1; i < stop.length; i++) {
    const c = stop.charCodeAt(i);
    while (k > 0 && stop.charCodeAt(k) !== c) k = border[k - 1];
    if (stop.charCodeAt(k) === c) k++;
    border[i] = k;
  }
  return border;
}
