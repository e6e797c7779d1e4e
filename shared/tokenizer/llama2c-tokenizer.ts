// The llama2.c tokenizer (tokenizer.bin as written by Karpathy's tokenizer.py):
// int32 max_token_length, then per token float32 score, int32 byte length,
// bytes. Encoding reproduces run.c's encode() exactly (same merges, same tie
// breaking) in O(n log n) with a heap over a linked list of symbols instead of
// run.c's rescan of all pairs after every merge.
//
// Conventions (llama2.c): id 0 <unk>, id 1 BOS, id 2 EOS; BOS also ends a
// generation (stories are delimited by BOS), so eosIds = [1]. Ids 1 and 2
// print nothing. Characters the vocabulary lacks use byte fallback <0xNN>
// when the vocabulary has those pieces; otherwise (e.g. babyllama105's
// character-level vocabulary) each unknown character becomes one <unk> (id 0)
// -- run.c would emit byte+3, which is a wrong or out-of-range id there.
// The text `<unk>` is id 0, the text id 0 decodes to (run.c would spell it
// out in five pieces): babyllama105 writes its paragraph breaks as <unk>, and
// a reply sent back in the next turn must reach the model as it wrote it.
import { PieceDecoder, SILENT_PIECE, TEXT_PIECE, decodeWithTable, pieceBytes, type PieceTable } from './incremental-decoder';
import {
  TokenizerFormatError,
  type DecoderOptions,
  type EncodeOptions,
  type IncrementalDecoder,
  type Tokenizer,
} from './tokenizer';

export const LLAMA2C_UNK_ID = 0;
export const LLAMA2C_BOS_ID = 1;
export const LLAMA2C_EOS_ID = 2;

/** run.c starts best_score at -1e10: pairs scoring at or below it never merge. */
const MIN_MERGE_SCORE = -1e10;
const MAX_PLAUSIBLE_TOKEN_LENGTH = 1 << 16;
const MAX_CACHED_MERGES = 1 << 20;
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;
/** SentencePiece's names of the llama2.c special ids: BOS's and EOS's where a file's pieces for them are blank, and tokenizer.json's specials. */
export const LLAMA2C_SPECIAL_NAMES: Readonly<Record<number, string>> = { [LLAMA2C_UNK_ID]: '<unk>', [LLAMA2C_BOS_ID]: '<s>', [LLAMA2C_EOS_ID]: '</s>' };

export interface Llama2cVocabulary {
  readonly maxTokenLength: number;
  /** Raw bytes of each piece. */
  readonly pieces: readonly Uint8Array[];
  readonly scores: Float32Array;
}

/** Parse tokenizer.bin; throws TokenizerFormatError with a clear message when it is not one. */
export function parseLlama2cTokenizer(bytes: Uint8Array): Llama2cVocabulary {
  if (bytes.byteLength < 4) {
    throw new TokenizerFormatError(`not a llama2.c tokenizer: ${bytes.byteLength} bytes is too short for the header`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const maxTokenLength = view.getInt32(0, true);
  if (maxTokenLength <= 0 || maxTokenLength > MAX_PLAUSIBLE_TOKEN_LENGTH) {
    throw new TokenizerFormatError(`not a llama2.c tokenizer: implausible max_token_length ${maxTokenLength}`);
  }
  const pieces: Uint8Array[] = [];
  const scores: number[] = [];
  let offset = 4;
  while (offset < bytes.byteLength) {
    const id = pieces.length;
    if (offset + 8 > bytes.byteLength) {
      throw new TokenizerFormatError(`corrupt llama2.c tokenizer: token ${id} header truncated at byte ${offset}`);
    }
    const score = view.getFloat32(offset, true);
    const length = view.getInt32(offset + 4, true);
    offset += 8;
    if (Number.isNaN(score)) {
      throw new TokenizerFormatError(`corrupt llama2.c tokenizer: token ${id} has a NaN score`);
    }
    if (length < 0 || length > MAX_PLAUSIBLE_TOKEN_LENGTH || offset + length > bytes.byteLength) {
      throw new TokenizerFormatError(
        `corrupt llama2.c tokenizer: token ${id} claims ${length} bytes at byte ${offset} of ${bytes.byteLength}`,
      );
    }
    pieces.push(bytes.slice(offset, offset + length));
    scores.push(score);
    offset += length;
  }
  if (pieces.length <= LLAMA2C_EOS_ID) {
    throw new TokenizerFormatError(`not a llama2.c tokenizer: only ${pieces.length} tokens (need <unk>, BOS, EOS)`);
  }
  return { maxTokenLength, pieces, scores: Float32Array.from(scores) };
}

function binaryKey(bytes: Uint8Array): string {
  let key = '';
  for (let i = 0; i < bytes.length; i++) key += String.fromCharCode(bytes[i]);
  return key;
}

export class Llama2cTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId = LLAMA2C_BOS_ID;
  readonly eosIds: readonly number[] = [LLAMA2C_BOS_ID];
  readonly vocabulary: Llama2cVocabulary;
  /** Byte-fallback id of each byte value, -1 where the vocabulary lacks it. */
  readonly byteIds: Int32Array;
  readonly hasByteFallback: boolean;

  private readonly scores: Float32Array;
  /** Exact piece bytes as a binary string -> id, for merge lookups (like run.c's str_lookup). */
  private readonly idOfKey = new Map<string, number>();
  private readonly keys: string[];
  /** Single-codepoint pieces: codepoint -> id. */
  private readonly idOfCodePoint = new Map<number, number>();
  /** (left * vocabSize + right) -> merged id or -1; filled lazily. */
  private readonly mergeCache = new Map<number, number>();
  private readonly spaceId: number;
  /** The text id 0 decodes to (`<unk>`), read back as id 0; null where it prints as nothing or as one character. */
  private readonly unkText: string | null;
  private readonly table: PieceTable;
  /** BOS's and EOS's names: their pieces less the newlines llama2.c's export puts around them (`\n<s>\n` is SentencePiece's `<s>`). */
  private readonly specialNames = new Map<number, string>();

  constructor(vocabulary: Llama2cVocabulary) {
    this.vocabulary = vocabulary;
    this.vocabSize = vocabulary.pieces.length;
    this.scores = vocabulary.scores;
    this.byteIds = new Int32Array(256).fill(-1);
    const utf8 = new TextDecoder('utf-8');
    const texts: string[] = new Array(this.vocabSize);
    const textsAfterBos: string[] = new Array(this.vocabSize);
    const kinds = new Int16Array(this.vocabSize).fill(TEXT_PIECE);
    this.keys = new Array(this.vocabSize);
    for (let id = 0; id < this.vocabSize; id++) {
      const bytes = vocabulary.pieces[id];
      const key = binaryKey(bytes);
      this.keys[id] = key;
      // First id wins on duplicates (run.c's bsearch would pick an arbitrary one).
      if (!this.idOfKey.has(key)) this.idOfKey.set(key, id);
      const text = utf8.decode(bytes);
      texts[id] = text;
      textsAfterBos[id] = text.startsWith(' ') ? text.slice(1) : text;
      const byteMatch = BYTE_PIECE.exec(key);
      if (byteMatch) {
        const byte = parseInt(byteMatch[1], 16);
        kinds[id] = byte;
        if (this.byteIds[byte] < 0) this.byteIds[byte] = id;
      } else if (id === LLAMA2C_BOS_ID || id === LLAMA2C_EOS_ID) {
        kinds[id] = SILENT_PIECE;
        this.specialNames.set(id, text.trim() || LLAMA2C_SPECIAL_NAMES[id]);
      } else {
        const cp = text.codePointAt(0);
        if (cp !== undefined && cp !== 0xfffd && text.length === (cp > 0xffff ? 2 : 1) && !this.idOfCodePoint.has(cp)) {
          this.idOfCodePoint.set(cp, id);
        }
      }
    }
    this.hasByteFallback = this.byteIds.every((id) => id >= 0);
    this.spaceId = this.idOfCodePoint.get(0x20) ?? -1;
    this.unkText = kinds[LLAMA2C_UNK_ID] === TEXT_PIECE && texts[LLAMA2C_UNK_ID].length > 1 ? texts[LLAMA2C_UNK_ID] : null;
    this.table = { texts, textsAfterBos, kinds, bosId: LLAMA2C_BOS_ID };
  }

  static fromBytes(bytes: Uint8Array): Llama2cTokenizer {
    return new Llama2cTokenizer(parseLlama2cTokenizer(bytes));
  }

  tokenBytes(id: number): Uint8Array {
    // A text piece's own bytes, as the file holds them.
    return this.table.kinds[id] === TEXT_PIECE ? this.vocabulary.pieces[id] : pieceBytes(this.table, id);
  }

  specialName(id: number): string | null {
    return this.specialNames.get(id) ?? null;
  }

  /** The piece of an id as text (byte pieces as their `<0xNN>` spelling). */
  piece(id: number): string {
    return this.table.texts[id];
  }

  encode(text: string, opts?: EncodeOptions): number[] {
    const bos = opts?.bos ?? true;
    // Upper bound: dummy prefix + 4 byte-fallback ids per UTF-16 unit.
    const capacity = 1 + text.length * 4;
    const tokens = new Int32Array(capacity);
    let n = 0;
    if (text.length > 0) n = this.pushSymbol(tokens, n, 0x20, this.spaceId);
    for (let i = 0; i < text.length; i++) {
      let cp = text.codePointAt(i) as number;
      if (this.unkText !== null && cp === this.unkText.charCodeAt(0) && text.startsWith(this.unkText, i)) {
        tokens[n++] = LLAMA2C_UNK_ID;
        i += this.unkText.length - 1;
        continue;
      }
      if (cp > 0xffff) i++;
      else if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd; // lone surrogate: as TextEncoder would
      n = this.pushSymbol(tokens, n, cp, this.idOfCodePoint.get(cp) ?? -1);
    }
    const merged = this.mergeSymbols(tokens, n);
    const out: number[] = bos ? [LLAMA2C_BOS_ID] : [];
    for (let i = 0; i < merged.length; i++) out.push(merged[i]);
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    return decodeWithTable(this.table, ids);
  }

  createDecoder(opts?: DecoderOptions): IncrementalDecoder {
    return new PieceDecoder(this.table, opts);
  }

  /** Append the id of one character, or its byte fallback, or <unk>. */
  private pushSymbol(tokens: Int32Array, n: number, cp: number, id: number): number {
    if (id >= 0) {
      tokens[n] = id;
      return n + 1;
    }
    if (!this.hasByteFallback) {
      tokens[n] = LLAMA2C_UNK_ID;
      return n + 1;
    }
    const b = this.byteIds;
    if (cp < 0x80) {
      tokens[n++] = b[cp];
    } else if (cp < 0x800) {
      tokens[n++] = b[0xc0 | (cp >> 6)];
      tokens[n++] = b[0x80 | (cp & 0x3f)];
    } else if (cp < 0x10000) {
      tokens[n++] = b[0xe0 | (cp >> 12)];
      tokens[n++] = b[0x80 | ((cp >> 6) & 0x3f)];
      tokens[n++] = b[0x80 | (cp & 0x3f)];
    } else {
      tokens[n++] = b[0xf0 | (cp >> 18)];
      tokens[n++] = b[0x80 | ((cp >> 12) & 0x3f)];
      tokens[n++] = b[0x80 | ((cp >> 6) & 0x3f)];
      tokens[n++] = b[0x80 | (cp & 0x3f)];
    }
    return n;
  }

  /** Merged id of two adjacent ids, or -1. */
  private mergeOf(left: number, right: number): number {
    const cacheKey = left * this.vocabSize + right;
    const cached = this.mergeCache.get(cacheKey);
    if (cached !== undefined) return cached;
    const id = this.idOfKey.get(this.keys[left] + this.keys[right]) ?? -1;
    const merged = id >= 0 && this.scores[id] > MIN_MERGE_SCORE ? id : -1;
    // Bounded: a large vocabulary fed adversarial text must not grow it forever.
    if (this.mergeCache.size >= MAX_CACHED_MERGES) this.mergeCache.clear();
    this.mergeCache.set(cacheKey, merged);
    return merged;
  }

  /**
   * run.c merges, repeatedly, the adjacent pair whose merge scores highest,
   * the leftmost on ties. Symbols never reorder and a merge keeps the left
   * node, so "leftmost" is "smallest left node index": a max-heap on
   * (score, -left) with lazy invalidation gives the same merge sequence.
   */
  private mergeSymbols(tokens: Int32Array, n: number): Int32Array {
    if (n < 2) return tokens.subarray(0, n);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new PairHeap(3 * n);
    for (let i = 0; i + 1 < n; i++) this.offerPair(heap, tokens, i, i + 1);
    while (heap.size > 0) {
      const e = heap.pop();
      const left = heap.leftOf[e];
      const right = next[left];
      // Stale: the pair no longer exists with these tokens.
      if (right < 0 || right !== heap.rightOf[e]) continue;
      if (tokens[left] !== heap.leftToken[e] || tokens[right] !== heap.rightToken[e]) continue;
      if (prev[left] === -2) continue;
      tokens[left] = heap.merged[e];
      const after = next[right];
      next[left] = after;
      if (after >= 0) prev[after] = left;
      prev[right] = -2; // removed
      if (prev[left] >= 0) this.offerPair(heap, tokens, prev[left], left);
      if (after >= 0) this.offerPair(heap, tokens, left, after);
    }
    let count = 0;
    for (let i = 0; i >= 0; i = next[i]) tokens[count++] = tokens[i];
    return tokens.subarray(0, count);
  }

  private offerPair(heap: PairHeap, tokens: Int32Array, left: number, right: number): void {
    const merged = this.mergeOf(tokens[left], tokens[right]);
    if (merged >= 0) heap.push(this.scores[merged], left, right, tokens[left], tokens[right], merged);
  }
}

/** Binary max-heap of candidate merges, struct-of-typed-arrays. */
class PairHeap {
  readonly score: Float64Array;
  readonly leftOf: Int32Array;
  readonly rightOf: Int32Array;
  readonly leftToken: Int32Array;
  readonly rightToken: Int32Array;
  readonly merged: Int32Array;
  private readonly order: Int32Array;
  private entries = 0;
  size = 0;

  constructor(capacity: number) {
    this.score = new Float64Array(capacity);
    this.leftOf = new Int32Array(capacity);
    this.rightOf = new Int32Array(capacity);
    this.leftToken = new Int32Array(capacity);
    this.rightToken = new Int32Array(capacity);
    this.merged = new Int32Array(capacity);
    this.order = new Int32Array(capacity);
  }

  push(score: number, left: number, right: number, leftToken: number, rightToken: number, merged: number): void {
    const e = this.entries++;
    this.score[e] = score;
    this.leftOf[e] = left;
    this.rightOf[e] = right;
    this.leftToken[e] = leftToken;
    this.rightToken[e] = rightToken;
    this.merged[e] = merged;
    let i = this.size++;
    const order = this.order;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(e, order[parent])) break;
      order[i] = order[parent];
      i = parent;
    }
    order[i] = e;
  }

  pop(): number {
    const order = this.order;
    const top = order[0];
    const last = order[--this.size];
    let i = 0;
    const size = this.size;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= size) break;
      if (child + 1 < size && this.before(order[child + 1], order[child])) child++;
      if (!this.before(order[child], last)) break;
      order[i] = order[child];
      i = child;
    }
    if (size > 0) order[i] = last;
    return top;
  }

  /** Higher score first; leftmost first on equal scores. */
  private before(a: number, b: number): boolean {
    const sa = this.score[a];
    const sb = this.score[b];
    return sa > sb || (sa === sb && this.leftOf[a] < this.leftOf[b]);
  }
}
