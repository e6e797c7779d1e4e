// Tokens of a text that continues a sequence (a predicted reply), without the
// dummy-prefix space that SentencePiece-style tokenizers put in front of a
// text of their own: ", there was" alone is [' ', ',', ' there', ' was'],
// while the model, going on from "Once upon a time", writes [',', ' there',
// ' was'], and the extra token misaligned every prediction by one.
import type { EncodeOptions, Tokenizer } from './tokenizer';

/** A text no merge crosses: its tokens, in front of the text's, are cut off again. */
const ANCHOR = '\n';

/** A reply's text: the model's special ids print nothing in it, so `</s>` there is the characters the model wrote. */
const REPLY_TEXT: EncodeOptions = { bos: false, specialTokens: false };

/** Each tokenizer's tokens of ANCHOR, made once (this runs on the edge's per-request path). */
const anchors = new WeakMap<Tokenizer, number[]>();

export function encodeContinuation(tokenizer: Tokenizer, text: string): number[] {
  let anchor = anchors.get(tokenizer);
  if (!anchor) anchors.set(tokenizer, (anchor = tokenizer.encode(ANCHOR, REPLY_TEXT)));
  const both = tokenizer.encode(ANCHOR + text, REPLY_TEXT);
  const anchored = anchor.length > 0 && anchor.length <= both.length && anchor.every((id, i) => both[i] === id);
  // A tokenizer that merged across the anchor after all: the text alone, as before.
  return anchored ? both.slice(anchor.length) : tokenizer.encode(text, REPLY_TEXT);
}
