// Streaming detokenizer over a table of pieces. Text pieces are precomputed
// strings (returned as is: no allocation on the common path); byte-fallback
// pieces (<0xNN>) go through a hand-rolled WHATWG UTF-8 state machine so a
// multi-byte character split over several byte pieces is emitted only once
// it is complete, and invalid bytes become U+FFFD exactly as TextDecoder would.
import type { DecoderOptions, IncrementalDecoder } from './tokenizer';

/** What each id prints. Shared by decode() and createDecoder() so they agree. */
export interface PieceTable {
  /** Text printed for an id (unused for byte and silent ids). */
  readonly texts: readonly string[];
  /** Text printed for an id right after BOS (leading space dropped, as run.c does). */
  readonly textsAfterBos: readonly string[];
  /** Per id: 0..255 for a byte-fallback piece, SILENT_PIECE for ids that print nothing, TEXT_PIECE otherwise. */
  readonly kinds: Int16Array;
  readonly bosId: number;
}

export const TEXT_PIECE = -1;
export const SILENT_PIECE = -2;

const REPLACEMENT = '\uFFFD';

export class PieceDecoder implements IncrementalDecoder {
  private afterBos: boolean;
  // UTF-8 decoder state (WHATWG "UTF-8 decoder" algorithm).
  private codePoint = 0;
  private needed = 0;
  private seen = 0;
  private lower = 0x80;
  private upper = 0xbf;

  constructor(
    private readonly table: PieceTable,
    opts?: DecoderOptions,
  ) {
    this.afterBos = opts?.previousId === table.bosId;
  }

  push(id: number): string {
    const kinds = this.table.kinds;
    if (!Number.isInteger(id) || id < 0 || id >= kinds.length) {
      throw new RangeError(`token id ${id} is outside the vocabulary (size ${kinds.length})`);
    }
    const kind = kinds[id];
    const afterBos = this.afterBos;
    this.afterBos = id === this.table.bosId;
    if (kind >= 0) return this.pushByte(kind);
    // A text or silent piece interrupts an unfinished character.
    const broken = this.needed !== 0 ? this.resetBroken() : '';
    if (kind === SILENT_PIECE) return broken;
    const text = afterBos ? this.table.textsAfterBos[id] : this.table.texts[id];
    return broken === '' ? text : broken + text;
  }

  holding(): boolean {
    return this.needed !== 0;
  }

  flush(): string {
    this.afterBos = false;
    return this.needed !== 0 ? this.resetBroken() : '';
  }

  private resetBroken(): string {
    this.needed = 0;
    this.seen = 0;
    this.codePoint = 0;
    this.lower = 0x80;
    this.upper = 0xbf;
    return REPLACEMENT;
  }

  private pushByte(byte: number): string {
    if (this.needed === 0) return this.startSequence(byte);
    if (byte < this.lower || byte > this.upper) {
      // The unfinished sequence is invalid; the byte starts afresh.
      this.resetBroken();
      return REPLACEMENT + this.startSequence(byte);
    }
    this.lower = 0x80;
    this.upper = 0xbf;
    this.codePoint = (this.codePoint << 6) | (byte & 0x3f);
    if (++this.seen !== this.needed) return '';
    const cp = this.codePoint;
    this.needed = 0;
    this.seen = 0;
    this.codePoint = 0;
    return String.fromCodePoint(cp);
  }

  private startSequence(byte: number): string {
    if (byte <= 0x7f) return String.fromCharCode(byte);
    if (byte >= 0xc2 && byte <= 0xdf) {
      this.needed = 1;
      this.codePoint = byte & 0x1f;
    } else if (byte >= 0xe0 && byte <= 0xef) {
      if (byte === 0xe0) this.lower = 0xa0;
      if (byte === 0xed) this.upper = 0x9f;
      this.needed = 2;
      this.codePoint = byte & 0x0f;
    } else if (byte >= 0xf0 && byte <= 0xf4) {
      if (byte === 0xf0) this.lower = 0x90;
      if (byte === 0xf4) this.upper = 0x8f;
      this.needed = 3;
      this.codePoint = byte & 0x07;
    } else {
      return REPLACEMENT;
    }
    return '';
  }
}

/** Whole-sequence decode through the same state machine as streaming. */
export function decodeWithTable(table: PieceTable, ids: ArrayLike<number>, opts?: DecoderOptions): string {
  const decoder = new PieceDecoder(table, opts);
  let out = '';
  for (let i = 0; i < ids.length; i++) out += decoder.push(ids[i]);
  return out + decoder.flush();
}

const utf8 = new TextEncoder();

/** The bytes an id of the table adds to decoded text (see Tokenizer.tokenBytes). */
export function pieceBytes(table: PieceTable, id: number): Uint8Array {
  const kind = table.kinds[id];
  if (kind === undefined) throw new RangeError(`token id ${id} is outside the vocabulary (size ${table.kinds.length})`);
  if (kind >= 0) return Uint8Array.of(kind);
  return kind === SILENT_PIECE ? new Uint8Array(0) : utf8.encode(table.texts[id]);
}
