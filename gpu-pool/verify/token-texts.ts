/**
 * What each token prints, as the edge prints it: the bytes a structured
 * output's masks follow (text-masks.ts), so the client's text is in the
 * language, not just the tokens' own spelling
 * (shared/tokenizer/incremental-decoder.ts).
 */
import type { Tokenizer } from '../../shared/tokenizer/tokenizer';

const utf8 = new TextEncoder();

/** What TokenTexts reads of a tokenizer. */
export type TextsTokenizer = Pick<Tokenizer, 'vocabSize' | 'bosId' | 'createDecoder' | 'tokenBytes'>;

/**
 * What each token id prints, as UTF-8 bytes: in the middle of the text, and
 * as the output's first token right after BOS (where the decoder drops a
 * piece's leading space, as run.c prints it). Ids that print nothing (the end
 * and special tokens), or whose text the masks cannot follow, have none: they
 * are never allowed as text. Built once per pool.
 */
export class TokenTexts {
  private constructor(
    readonly vocabSize: number,
    readonly bosId: number,
    /** Every id's bytes end to end; id i's are bytes[starts[i] .. starts[i + 1]). */
    private readonly bytes: Uint8Array,
    private readonly starts: Int32Array,
    /** The same after BOS. */
    private readonly bytesAfterBos: Uint8Array,
    private readonly startsAfterBos: Int32Array,
    /** The ids that print something, by their first byte: ids[offsets[b] .. offsets[b + 1]) start with byte b (elsewhere, and after BOS). */
    private readonly byFirst: FirstByteIndex,
    private readonly byFirstAfterBos: FirstByteIndex,
  ) {}

  static of(tokenizer: TextsTokenizer): TokenTexts {
    const { vocabSize, bosId } = tokenizer;
    const lead = leadByteId(tokenizer);
    const [bytes, starts] = packed(vocabSize, (id) => printedBytes(tokenizer, id, undefined, lead));
    const [bytesAfterBos, startsAfterBos] = packed(vocabSize, (id) => printedBytes(tokenizer, id, bosId, lead));
    return new TokenTexts(vocabSize, bosId, bytes, starts, bytesAfterBos, startsAfterBos, firstByteIndex(bytes, starts), firstByteIndex(bytesAfterBos, startsAfterBos));
  }

  /** The ids whose text starts with `byte` (elsewhere, or after BOS): a state's allowed ids are among those of its children's bytes. */
  startingWith(byte: number, afterBos: boolean): { ids: Int32Array; from: number; to: number } {
    const index = afterBos ? this.byFirstAfterBos : this.byFirst;
    return { ids: index.ids, from: index.offsets[byte], to: index.offsets[byte + 1] };
  }

  /** The bytes of every id, end to end (elsewhere, or after BOS): id's are table(afterBos)[start(id) .. end(id)). */
  table(afterBos: boolean): Uint8Array {
    return afterBos ? this.bytesAfterBos : this.bytes;
  }

  start(id: number, afterBos: boolean): number {
    return (afterBos ? this.startsAfterBos : this.starts)[id];
  }

  end(id: number, afterBos: boolean): number {
    return (afterBos ? this.startsAfterBos : this.starts)[id + 1];
  }
}

interface FirstByteIndex {
  ids: Int32Array;
  offsets: Int32Array;
}

function firstByteIndex(bytes: Uint8Array, starts: Int32Array): FirstByteIndex {
  const vocabSize = starts.length - 1;
  const offsets = new Int32Array(257);
  for (let id = 0; id < vocabSize; id++) if (starts[id] !== starts[id + 1]) offsets[bytes[starts[id]] + 1]++;
  for (let b = 0; b < 256; b++) offsets[b + 1] += offsets[b];
  const ids = new Int32Array(offsets[256]);
  const next = offsets.slice(0, 256);
  // Ascending ids within each byte.
  for (let id = 0; id < vocabSize; id++) if (starts[id] !== starts[id + 1]) ids[next[bytes[starts[id]]]++] = id;
  return { ids, offsets };
}

function packed(vocabSize: number, bytesOf: (id: number) => Uint8Array): [Uint8Array, Int32Array] {
  const parts: Uint8Array[] = [];
  const starts = new Int32Array(vocabSize + 1);
  for (let id = 0; id < vocabSize; id++) {
    const b = bytesOf(id);
    parts.push(b);
    starts[id + 1] = starts[id] + b.length;
  }
  const bytes = new Uint8Array(starts[vocabSize]);
  for (let id = 0; id < vocabSize; id++) bytes.set(parts[id], starts[id]);
  return [bytes, starts];
}

/**
 * The bytes id adds to the decoded text after `previousId`: a text piece's
 * text as the decoder prints it (after BOS without its leading space), one
 * byte for a byte-fallback piece (part of a character: a language holds whole
 * characters only, so a byte it takes is always completed before the text
 * ends or a text piece follows). A one-byte id the decoder does not read as
 * part of a character prints U+FFFD where it stands: none (never allowed).
 */
function printedBytes(tokenizer: TextsTokenizer, id: number, previousId: number | undefined, lead: number | null): Uint8Array {
  const raw = tokenizer.tokenBytes(id);
  const decoder = tokenizer.createDecoder(previousId === undefined ? undefined : { previousId });
  const text = decoder.push(id);
  if (raw.length === 1 && raw[0] >= 0x80) {
    // A character's first byte is held; a later byte alone is U+FFFD, and is part of a character only after one.
    if (decoder.holding()) return raw;
    return continuesCharacter(tokenizer, id, raw[0], lead) ? raw : new Uint8Array(0);
  }
  return text.includes('\uFFFD') ? new Uint8Array(0) : utf8.encode(text);
}

/** Whether the id of continuation byte `byte` completes a character after a byte piece that starts one (a byte-fallback piece, not a text piece of one invalid byte). */
function continuesCharacter(tokenizer: TextsTokenizer, id: number, byte: number, lead: number | null): boolean {
  if (byte > 0xbf || lead === null) return false;
  const decoder = tokenizer.createDecoder();
  decoder.push(lead);
  const text = decoder.push(id);
  return text.length === 1 && text !== '\uFFFD';
}

/** An id that prints byte 0xC3 alone as a character's start (held by the decoder), or null (no byte fallback). */
function leadByteId(tokenizer: TextsTokenizer): number | null {
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    const raw = tokenizer.tokenBytes(id);
    if (raw.length !== 1 || raw[0] !== 0xc3) continue;
    const decoder = tokenizer.createDecoder();
    decoder.push(id);
    if (decoder.holding()) return id;
  }
  return null;
}
