// Hugging Face tokenizer.json through @huggingface/tokenizers (pure JS: no
// eval/new Function, no node: imports, so it runs in workerd). Encoding is the
// library's; decoding of Llama-style vocabularies (▁ for spaces, <0xNN> byte
// fallback) goes through the same piece table and UTF-8 state machine as the
// llama2.c tokenizer, so decode() and the streaming decoder agree with run.c
// (a piece right after BOS drops its leading space). Other vocabularies
// (e.g. byte-level BPE) decode through the library; their streaming decoder
// decodes a short window of the latest ids (LibraryStreamDecoder).
// Text whose special spellings must stay plain characters (chat messages:
// `specialTokens: false`) goes through a second library tokenizer made
// without the special added tokens (plainJson).
import { Tokenizer as LibraryTokenizer } from '@huggingface/tokenizers';
import { PieceDecoder, SILENT_PIECE, TEXT_PIECE, decodeWithTable, pieceBytes, type PieceTable } from './incremental-decoder';
import {
  MAX_VOCAB_SIZE,
  TokenizerFormatError,
  type DecoderOptions,
  type EncodeOptions,
  type IncrementalDecoder,
  type Tokenizer,
} from './tokenizer';
import { SPACE_MARK, type JsonValue } from './tokenizer-json';

export interface HfTokenizerOptions {
  /** Override the BOS id (default: the post-processor's first special token, else <s>/<|begin_of_text|>/<bos>). */
  bosId?: number;
  /** Override the ids that end a generation (default: the JSON's EOS token, and BOS as llama2.c models end stories with it). */
  eosIds?: readonly number[];
}

const BOS_NAMES = ['<s>', '<|begin_of_text|>', '<bos>', '<|startoftext|>'];
const EOS_NAMES = ['</s>', '<|end_of_text|>', '<eos>', '<|endoftext|>', '<|eot_id|>'];
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

interface ParsedJson {
  model: { type?: string; vocab?: Record<string, number> | [string, number][]; byte_fallback?: boolean; unk_token?: string | null; unk_id?: number | null };
  added_tokens?: { id: number; content: string; special?: boolean }[];
  normalizer?: JsonValue;
  post_processor?: JsonValue;
  decoder?: JsonValue;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseJson(source: string | Uint8Array | object): ParsedJson {
  let value: unknown = source;
  if (typeof source === 'string' || source instanceof Uint8Array) {
    const text = typeof source === 'string' ? source : new TextDecoder('utf-8').decode(source);
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new TokenizerFormatError(`not a tokenizer.json: ${(err as Error).message}`);
    }
  }
  if (!isRecord(value) || !isRecord(value.model)) {
    throw new TokenizerFormatError('not a tokenizer.json: no "model" object');
  }
  const vocab = value.model.vocab;
  if (!isRecord(vocab) && !Array.isArray(vocab)) {
    throw new TokenizerFormatError('not a tokenizer.json: "model.vocab" is missing');
  }
  return value as unknown as ParsedJson;
}

/** First special token id of a TemplateProcessing post-processor, if any (also inside a Sequence). */
function templateBosId(processor: JsonValue | undefined): number | undefined {
  if (!isRecord(processor)) return undefined;
  if (processor.type === 'Sequence' && Array.isArray(processor.processors)) {
    for (const p of processor.processors) {
      const id = templateBosId(p);
      if (id !== undefined) return id;
    }
    return undefined;
  }
  if (processor.type !== 'TemplateProcessing' || !Array.isArray(processor.single)) return undefined;
  const first = processor.single[0];
  if (!isRecord(first) || !isRecord(first.SpecialToken)) return undefined;
  const name = first.SpecialToken.id;
  const specials = processor.special_tokens;
  if (typeof name !== 'string' || !isRecord(specials)) return undefined;
  const entry = specials[name];
  const ids = isRecord(entry) ? entry.ids : undefined;
  return Array.isArray(ids) && typeof ids[0] === 'number' ? ids[0] : undefined;
}

/** The unknown token's text (BPE and WordPiece name it, Unigram gives its id), if the model has one. */
function unkContent(json: ParsedJson): string | undefined {
  const model = json.model;
  if (typeof model.unk_token === 'string') return model.unk_token;
  const entry = Array.isArray(model.vocab) && typeof model.unk_id === 'number' ? model.vocab[model.unk_id] : undefined;
  return entry?.[0];
}

/**
 * A normalizer that begins with a Prepend (Llama's "legacy" one: Prepend "▁",
 * Replace " " → "▁") without it, and what it prepended: the caller puts that
 * in front of the whole text instead. Same ids for a text with no added token
 * in it; after one (`<unk>`), the library normalizes the rest of the text on
 * its own and gave it a "▁" the text does not have, which llama2.c (one dummy
 * prefix a text) does not. Only where what follows the Prepend leaves it as it
 * is: Replace normalizers whose patterns share no character with it.
 */
function withoutPrepend(normalizer: JsonValue | undefined): { normalizer: JsonValue | undefined; prefix: string } {
  const unchanged = { normalizer, prefix: '' };
  if (!isRecord(normalizer)) return unchanged;
  if (normalizer.type === 'Prepend') return typeof normalizer.prepend === 'string' ? { normalizer: null, prefix: normalizer.prepend } : unchanged;
  if (normalizer.type !== 'Sequence' || !Array.isArray(normalizer.normalizers)) return unchanged;
  const [first, ...rest] = normalizer.normalizers;
  if (!isRecord(first) || first.type !== 'Prepend' || typeof first.prepend !== 'string') return unchanged;
  const prefix = first.prepend;
  const keepsPrefix = rest.every((n) => {
    const pattern = isRecord(n) && n.type === 'Replace' && isRecord(n.pattern) ? n.pattern.String : undefined;
    return typeof pattern === 'string' && pattern !== '' && ![...pattern].some((c) => prefix.includes(c));
  });
  if (!keepsPrefix) return unchanged;
  return { normalizer: rest.length === 0 ? null : { ...normalizer, normalizers: rest }, prefix };
}

/**
 * The tokenizer.json for text whose special spellings are plain characters
 * (HF's tokenizers split them out of any text, `add_special_tokens: false`
 * too, and @huggingface/tokenizers has no `split_special_tokens`): its
 * `special` added tokens removed, but for the unknown token, which is content
 * (the text id 0 prints as, so a reply sent back reaches the model as
 * written), and their names out of a BPE or WordPiece vocabulary, where a
 * model that takes a whole word from the vocabulary would find them. With the
 * text to put in front (withoutPrepend). Null: it would be the same file.
 */
function plainJson(json: ParsedJson): { json: ParsedJson; prefix: string } | null {
  const unk = unkContent(json);
  const added = json.added_tokens ?? [];
  const removed = new Map(added.filter((t) => t.special && t.content !== unk).map((t) => [t.content, t.id]));
  const { normalizer, prefix } = withoutPrepend(json.normalizer);
  if (removed.size === 0 && prefix === '') return null;
  const vocab = json.model.vocab;
  // A Unigram vocabulary is a list by id, nothing can be taken out of it: such a model (T5's kind, not Llama's) may still find a special piece in text.
  const model =
    removed.size > 0 && vocab !== undefined && !Array.isArray(vocab)
      ? { ...json.model, vocab: Object.fromEntries(Object.entries(vocab).filter(([name, id]) => removed.get(name) !== id)) }
      : json.model;
  return { json: { ...json, added_tokens: added.filter((t) => !removed.has(t.content)), normalizer, model }, prefix };
}

/** A library tokenizer that reads special spellings as plain text, and the text it is given in front of each text (plainJson). */
interface PlainEncoder {
  library: LibraryTokenizer;
  prefix: string;
}

/** Most token ids a tokenizer.json may name: the vocabulary a checkpoint may have too. */
const MAX_TOKEN_ID = MAX_VOCAB_SIZE;

/** Every id `model.vocab` and `added_tokens` give is an integer in [0, 2^22), and a vocab list holds [piece, score] pairs. */
function checkTokenIds(json: ParsedJson): void {
  const bad = (what: string, id: unknown): TokenizerFormatError =>
    new TokenizerFormatError(`tokenizer.json: ${what} has id ${JSON.stringify(id) ?? String(id)}, not an integer in [0, ${MAX_TOKEN_ID})`);
  const isId = (id: unknown): boolean => typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < MAX_TOKEN_ID;
  const vocab: unknown = json.model?.vocab ?? {};
  if (Array.isArray(vocab)) {
    if (vocab.length > MAX_TOKEN_ID) throw new TokenizerFormatError(`tokenizer.json: model.vocab holds ${vocab.length} pieces, more than ${MAX_TOKEN_ID}`);
    vocab.forEach((entry: unknown, i) => {
      if (!Array.isArray(entry) || typeof entry[0] !== 'string') throw new TokenizerFormatError(`tokenizer.json: model.vocab[${i}] is not a [piece, score] pair`);
    });
  } else if (typeof vocab === 'object' && vocab !== null) {
    for (const [name, id] of Object.entries(vocab)) if (!isId(id)) throw bad(`model.vocab's ${JSON.stringify(name.slice(0, 40))}`, id);
  }
  const added: unknown = json.added_tokens ?? [];
  if (!Array.isArray(added)) throw new TokenizerFormatError('tokenizer.json: added_tokens is not a list');
  added.forEach((t: unknown, i) => {
    const id = typeof t === 'object' && t !== null ? (t as { id?: unknown }).id : undefined;
    if (!isId(id)) throw bad(`added_tokens[${i}]`, id);
  });
}

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosIds: readonly number[];
  private readonly library: LibraryTokenizer;
  /** Null when the vocabulary is not Llama-style: decode through the library then. */
  private readonly table: PieceTable | null;
  /** The file, for the plain encoder (the library holds it anyway). */
  private readonly json: ParsedJson;
  /** The special added tokens' contents by id (`<s>`, `<|eot_id|>`). */
  private readonly specialNames = new Map<number, string>();
  /** Made when first asked for: only chat text needs it, and a large vocabulary takes a while to build. */
  private plain: PlainEncoder | null = null;

  constructor(source: string | Uint8Array | object, opts?: HfTokenizerOptions) {
    const json = parseJson(source);
    // Before anything is built by id: one id of 2^31 made the tables below run the process out of memory.
    checkTokenIds(json);
    this.json = json;
    try {
      this.library = new LibraryTokenizer(json, { clean_up_tokenization_spaces: false });
    } catch (err) {
      throw new TokenizerFormatError(`unsupported tokenizer.json: ${(err as Error).message}`);
    }
    const names = new Map<number, string>();
    const vocab = json.model.vocab ?? {};
    const entries: [string, number][] = Array.isArray(vocab) ? vocab.map(([t], i) => [t, i]) : Object.entries(vocab);
    for (const [name, id] of entries) names.set(id, name);
    const specialIds = new Set<number>();
    for (const t of json.added_tokens ?? []) {
      names.set(t.id, t.content);
      if (t.special) {
        specialIds.add(t.id);
        this.specialNames.set(t.id, t.content);
      }
    }
    let size = 0;
    for (const id of names.keys()) size = Math.max(size, id + 1);
    this.vocabSize = size;
    const idOfName = new Map<string, number>();
    for (const [id, name] of names) if (!idOfName.has(name)) idOfName.set(name, id);

    const findId = (candidates: readonly string[]): number | undefined => {
      for (const c of candidates) {
        const id = idOfName.get(c);
        if (id !== undefined) return id;
      }
      return undefined;
    };
    const bosId = opts?.bosId ?? templateBosId(json.post_processor) ?? findId(BOS_NAMES);
    if (bosId === undefined) {
      throw new TokenizerFormatError('tokenizer.json names no BOS token (<s>, <|begin_of_text|>, ...): pass bosId');
    }
    // A post-processor's id is the file's word too: outside the vocabulary, every prompt began with it.
    if (!Number.isInteger(bosId) || bosId < 0 || bosId >= size) throw new TokenizerFormatError(`tokenizer.json's BOS id ${bosId} is outside its ${size} tokens`);
    this.bosId = bosId;
    const eosId = findId(EOS_NAMES);
    this.eosIds = opts?.eosIds ?? (eosId === undefined || eosId === bosId ? [bosId] : [eosId, bosId]);

    const llamaStyle = json.model.type === 'BPE' && JSON.stringify(json.decoder ?? null).includes(SPACE_MARK);
    this.table = llamaStyle ? this.buildTable(names, specialIds, json.model.byte_fallback === true, json.model.unk_token) : null;
  }

  private buildTable(
    names: Map<number, string>,
    specialIds: Set<number>,
    byteFallback: boolean,
    unkToken: string | null | undefined,
  ): PieceTable {
    const texts: string[] = new Array(this.vocabSize).fill('');
    const textsAfterBos: string[] = new Array(this.vocabSize).fill('');
    const kinds = new Int16Array(this.vocabSize).fill(SILENT_PIECE);
    for (const [id, name] of names) {
      const byte = byteFallback ? BYTE_PIECE.exec(name) : null;
      if (byte) {
        kinds[id] = parseInt(byte[1], 16);
      } else if (!specialIds.has(id) || name === unkToken) {
        const text = name.replaceAll(SPACE_MARK, ' ');
        kinds[id] = TEXT_PIECE;
        texts[id] = text;
        textsAfterBos[id] = text.startsWith(' ') ? text.slice(1) : text;
      }
    }
    return { texts, textsAfterBos, kinds, bosId: this.bosId };
  }

  encode(text: string, opts?: EncodeOptions): number[] {
    const bos = opts?.bos ?? true;
    // The library's Prepend normalizer would turn '' into '▁'; llama2.c (and Rust tokenizers) give nothing.
    const ids = text === '' ? [] : opts?.specialTokens === false ? this.plainIds(text) : this.library.encode(text, { add_special_tokens: false }).ids;
    return bos ? [this.bosId, ...ids] : ids;
  }

  private plainIds(text: string): number[] {
    if (this.plain === null) {
      const made = plainJson(this.json);
      this.plain = made === null ? { library: this.library, prefix: '' } : { library: new LibraryTokenizer(made.json, { clean_up_tokenization_spaces: false }), prefix: made.prefix };
    }
    return this.plain.library.encode(this.plain.prefix + text, { add_special_tokens: false }).ids;
  }

  decode(ids: ArrayLike<number>): string {
    if (this.table) return decodeWithTable(this.table, ids);
    if (ids.length === 0) return '';
    return this.library.decode(Array.from(ids), { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  }

  createDecoder(opts?: DecoderOptions): IncrementalDecoder {
    if (this.table) return new PieceDecoder(this.table, opts);
    return new LibraryStreamDecoder(this.library);
  }

  specialName(id: number): string | null {
    return this.specialNames.get(id) ?? null;
  }

  tokenBytes(id: number): Uint8Array {
    if (this.table) return pieceBytes(this.table, id);
    // Other vocabularies: the id's text alone (a byte-level piece that is part of a character shows as U+FFFD).
    return new TextEncoder().encode(this.decode([id]));
  }
}

/**
 * Streaming decode for non-Llama vocabularies (byte-level BPE, WordPiece...),
 * as vLLM's incremental detokenizer does it: decode a window that starts a
 * token or more before what is new, and emit what the window's text gained
 * over its first tokens' text (the same decoder, so a space a decoder drops
 * at a sequence's start, or a `##` it joins, comes out as in the whole);
 * hold back while the text ends in U+FFFD (an unfinished character). Before,
 * every push decoded all the ids so far: 8,000 tokens of a byte-level
 * tokenizer took 3-6 s of edge CPU.
 */
class LibraryStreamDecoder implements IncrementalDecoder {
  /** The window: ids from the last emitted token's predecessors on. */
  private ids: number[] = [];
  /** ids[0, printed) have been emitted; their text is `printedText`. */
  private printed = 0;
  private printedText = '';

  constructor(private readonly library: LibraryTokenizer) {}

  private decode(ids: readonly number[]): string {
    return this.library.decode(ids as number[], { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  }

  push(id: number): string {
    this.ids.push(id);
    const text = this.decode(this.ids);
    if (text.endsWith('\uFFFD')) {
      // The bytes of a character still to come, or bytes that make none (a
      // run of invalid ones would grow the window, and the cost, without end):
      // past a character's worth, emit up to the last id whose text is final.
      return this.ids.length - this.printed > UTF8_MAX_BYTES ? this.emitFinalHead(text) : '';
    }
    if (text.length <= this.printedText.length) {
      // The new ids print nothing (special tokens, skipped): out of the window, which they would grow.
      this.ids.length = this.printed;
      return '';
    }
    return this.emit(this.ids.length, text);
  }

  /** Emits ids[printed, end) as text (`text`: the window's up to `end`), and starts the window at them. */
  private emit(end: number, text: string): string {
    const out = text.slice(this.printedText.length);
    const pending = this.ids.slice(end);
    this.ids = this.ids.slice(this.printed, end);
    this.printed = this.ids.length;
    this.printedText = this.decode(this.ids);
    for (const id of pending) this.ids.push(id);
    return out;
  }

  /**
   * Of the ids not printed, the first ones whose text is final: the window's
   * whole text begins with it and goes on past it (a U+FFFD at its end that
   * the bytes after did not complete is final too), not inside a surrogate pair.
   */
  private emitFinalHead(whole: string): string {
    for (let end = this.ids.length - (UTF8_MAX_BYTES - 1); end > this.printed; end--) {
      const text = this.decode(this.ids.slice(0, end));
      const last = text.charCodeAt(text.length - 1);
      const final = text.length > this.printedText.length && text.length < whole.length && whole.startsWith(text) && !(last >= 0xd800 && last <= 0xdbff);
      if (final) return this.emit(end, text);
    }
    return '';
  }

  holding(): boolean {
    return this.ids.length > this.printed;
  }

  flush(): string {
    const out = this.ids.length > this.printed ? this.decode(this.ids).slice(this.printedText.length) : '';
    this.ids = [];
    this.printed = 0;
    this.printedText = '';
    return out;
  }
}

/** The most bytes, so the most byte-level tokens, one character takes. */
const UTF8_MAX_BYTES = 4;
