/**
 * What each token prints, as the edge prints it: the bytes a structured
 * output's masks follow (text-masks.ts), so the client's text is in the
 * language, not just the tokens' own spelling
 * (shared/tokenizer/incremental-decoder.ts).
 */
import type { Tokenizer } from '../../shared/tokenizer/tokenizer';
import { complementSet, hasCodePoint, normalizeSet, type CodePointSet } from '../../shared/structured/code-point-set';

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
    /**
     * The characters some sequence of tokens prints, or null where that is
     * every one (a byte-fallback vocabulary): a structured output's automaton
     * is cut to them (byte-nfa.ts), so the masks never let the text reach a
     * state whose every way on needs a character no token prints.
     */
    readonly printable: CodePointSet | null,
    /**
     * Whether each of those characters is printed alone: by a token whose
     * text is just that character, or by byte pieces. Then a text of
     * printable characters is always some tokens' texts end to end, and an
     * automaton cut to them is exact at the token level: every text the
     * masks let through can be finished by tokens (text-masks.ts). Not so
     * where a character is printed only inside a longer token.
     */
    readonly printsEachAlone: boolean,
  ) {}

  static of(tokenizer: TextsTokenizer): TokenTexts {
    const { vocabSize, bosId } = tokenizer;
    const lead = leadByteId(tokenizer);
    const [bytes, starts] = packed(vocabSize, (id) => printedBytes(tokenizer, id, undefined, lead));
    const [bytesAfterBos, startsAfterBos] = packed(vocabSize, (id) => printedBytes(tokenizer, id, bosId, lead));
    const { printable, printsEachAlone } = printableCharacters(bytes, starts);
    return new TokenTexts(vocabSize, bosId, bytes, starts, bytesAfterBos, startsAfterBos, firstByteIndex(bytes, starts), firstByteIndex(bytesAfterBos, startsAfterBos), printable, printsEachAlone);
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

const ALL_CHARACTERS = complementSet([]);
const utf8Decoder = new TextDecoder();

/**
 * The characters the tokens print (null: all), and whether each is printed
 * alone, from their texts (after BOS a token prints the same or its text
 * less a leading space: nothing new). A text piece prints whole characters;
 * a one-byte piece of 0x80 or more is part of one, so the characters byte
 * pieces spell are those whose every byte one prints.
 */
function printableCharacters(bytes: Uint8Array, starts: Int32Array): { printable: CodePointSet | null; printsEachAlone: boolean } {
  const pieceBytes = new Uint8Array(256);
  const inTexts = new Set<number>();
  const alone = new Set<number>();
  for (let id = 0; id + 1 < starts.length; id++) {
    const from = starts[id];
    const to = starts[id + 1];
    if (to === from) continue;
    if (to - from === 1 && bytes[from] >= 0x80) {
      pieceBytes[bytes[from]] = 1;
      continue;
    }
    const text = utf8Decoder.decode(bytes.subarray(from, to));
    let count = 0;
    let only = 0;
    for (const char of text) {
      only = char.codePointAt(0)!;
      inTexts.add(only);
      count++;
    }
    if (count === 1) alone.add(only);
  }
  const spelled = spelledByBytes(pieceBytes);
  const pairs: number[] = [...spelled];
  for (const cp of inTexts) pairs.push(cp, cp);
  const printable = normalizeSet(pairs);
  const everyOne = printable.length === ALL_CHARACTERS.length && printable.every((v, i) => v === ALL_CHARACTERS[i]);
  const spelledSet = normalizeSet(spelled);
  let printsEachAlone = true;
  for (const cp of inTexts) {
    if (!alone.has(cp) && !hasCodePoint(spelledSet, cp)) {
      printsEachAlone = false;
      break;
    }
  }
  return { printable: everyOne ? null : printable, printsEachAlone };
}

/**
 * The code points whose UTF-8 bytes are each printed by a byte piece
 * (`printed[b]`), as `[lo, hi]` pairs (not merged): blocks of 64 where
 * every continuation byte is printed, so a byte-fallback vocabulary's is a
 * few thousand pairs, not a million.
 */
function spelledByBytes(printed: Uint8Array): number[] {
  const continuations: number[] = [];
  for (let b = 0x80; b <= 0xbf; b++) if (printed[b]) continuations.push(b & 0x3f);
  const every = continuations.length === 64;
  const pairs: number[] = [];
  // Code points `prefix` followed by `left` continuation bytes, kept within the length's own range (no overlong, none past U+10FFFF).
  const spell = (prefix: number, left: number, min: number, max: number): void => {
    if (left === 0 || every) {
      const span = 2 ** (6 * left);
      const lo = Math.max(prefix * span, min);
      const hi = Math.min(prefix * span + span - 1, max);
      if (lo <= hi) pairs.push(lo, hi);
      return;
    }
    for (const c of continuations) spell(prefix * 64 + c, left - 1, min, max);
  };
  for (let lead = 0xc2; lead <= 0xf4; lead++) {
    if (!printed[lead]) continue;
    if (lead <= 0xdf) spell(lead & 0x1f, 1, 0x80, 0x7ff);
    else if (lead <= 0xef) spell(lead & 0x0f, 2, 0x800, 0xffff);
    else spell(lead & 0x07, 3, 0x10000, 0x10ffff);
  }
  return pairs;
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
