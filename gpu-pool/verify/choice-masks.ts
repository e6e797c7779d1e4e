/**
 * vLLM's `structured_outputs.choice` (and `guided_choice`): the output's text
 * must be one of the request's choices. vLLM compiles them into the grammar
 * `root ::= "a" | "b"` (vllm/v1/structured_output/utils.py, choice_as_grammar)
 * and masks every token the grammar cannot take next; the end token only
 * where the text is a whole choice.
 *
 * Here: a byte trie of the choices (UTF-8). The output's text is a state, a
 * trie node (or DEAD, outside every choice); a token moves it by the bytes it
 * prints. Allowed at a state: the tokens whose bytes stay inside the trie, and
 * the ids that end the generation where the state is a whole choice. The
 * bytes are what the edge prints (shared/tokenizer/incremental-decoder.ts):
 * so the client's text is a choice, not just the tokens' own spelling.
 */
import type { Tokenizer } from '../../shared/tokenizer/tokenizer';

/** The state outside every choice (a token left the trie). */
export const DEAD = -1;

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
 * byte for a byte-fallback piece (part of a character: the trie holds whole
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

/** The choices as a byte trie: node 0 the empty text; a node per prefix of a choice's UTF-8 bytes. */
export class ChoiceTrie {
  /** node * 256 + byte → child node. */
  private readonly edges = new Map<number, number>();
  /** Per node: 1 where its text is a whole choice. */
  readonly whole: Uint8Array;
  /** Per node: the bytes that go on from it. */
  readonly childBytes: readonly (readonly number[])[];

  constructor(choices: readonly string[]) {
    const whole: number[] = [0];
    const childBytes: number[][] = [[]];
    for (const choice of choices) {
      let node = 0;
      for (const byte of utf8.encode(choice)) {
        const key = node * 256 + byte;
        let child = this.edges.get(key);
        if (child === undefined) {
          child = whole.length;
          whole.push(0);
          childBytes.push([]);
          childBytes[node].push(byte);
          this.edges.set(key, child);
        }
        node = child;
      }
      whole[node] = 1;
    }
    this.whole = Uint8Array.from(whole);
    this.childBytes = childBytes;
  }

  get nodes(): number {
    return this.whole.length;
  }

  /** The node after `table[start..end)` from `node`; DEAD where the bytes leave the trie. */
  follow(node: number, table: Uint8Array, start: number, end: number): number {
    for (let i = start; i < end && node !== DEAD; i++) node = this.edges.get(node * 256 + table[i]) ?? DEAD;
    return node;
  }
}

/** Most states whose allowed ids are kept; past it the cache starts over (a walk of one output's text visits far fewer). */
const MAX_CACHED_STATES = 4096;

/**
 * One generation's choice masks: the state of its output (observe), a node's
 * state (the output's, then the draft tokens on its path), and the ids allowed
 * at a state, computed once per state visited.
 */
export class ChoiceMasks {
  private readonly trie: ChoiceTrie;
  private readonly endIds: Int32Array;
  /** State of the output so far. */
  private outputState = 0;
  private outputLength = 0;
  private readonly allowedByState = new Map<number, Int32Array>();

  /**
   * `firstAfterBos`: the token before the output (the prompt's last, before
   * any resumed output) is BOS, so the output's first token prints without its
   * leading space. `endIds`: the ids that end the generation (allowed where
   * the text is a whole choice).
   */
  constructor(
    choices: readonly string[],
    private readonly texts: TokenTexts,
    endIds: readonly number[],
    private readonly firstAfterBos: boolean,
  ) {
    this.trie = new ChoiceTrie(choices);
    this.endIds = Int32Array.from(endIds);
  }

  /** One emitted token joins the output. */
  observe(token: number): void {
    this.outputState = this.next(this.outputState, token, this.outputLength === 0);
    this.outputLength++;
  }

  /** The state at a node whose path from the root carries `rowTokens[path[0..depth)]`. */
  stateAt(rowTokens: ArrayLike<number>, path: ArrayLike<number>, depth: number): number {
    let state = this.outputState;
    for (let i = 0; i < depth && state !== DEAD; i++) state = this.next(state, rowTokens[path[i]], this.outputLength + i === 0);
    return state;
  }

  /** The state after `ids` from the output's (nothing is observed). */
  stateAfter(ids: ArrayLike<number>): number {
    let state = this.outputState;
    for (let i = 0; i < ids.length && state !== DEAD; i++) state = this.next(state, ids[i], this.outputLength + i === 0);
    return state;
  }

  /** The state after `token` from `state` (`first`: the output's first token). */
  private next(state: number, token: number, first: boolean): number {
    if (state === DEAD || token < 0 || token >= this.texts.vocabSize) return DEAD;
    const afterBos = first && this.firstAfterBos;
    const start = this.texts.start(token, afterBos);
    const end = this.texts.end(token, afterBos);
    // A token that prints nothing moves no text: not one the masks allow, so none a path holds.
    if (start === end) return DEAD;
    return this.trie.follow(state, this.texts.table(afterBos), start, end);
  }

  /**
   * The ids allowed at `state`, ascending (owned by this object, not to be
   * modified). DEAD, where no accepted path leads (its token was masked at the
   * node above): the end ids, so it masks like a finished choice.
   */
  allowedAt(state: number): Int32Array {
    const cached = this.allowedByState.get(state);
    if (cached) return cached;
    const out: number[] = [];
    const whole = state === DEAD || this.trie.whole[state] === 1;
    // The root is the state of an output of nothing written (the trie has no way back to it): its tokens are the first.
    const afterBos = state === 0 && this.outputLength === 0 && this.firstAfterBos;
    if (state !== DEAD) {
      const { texts, trie } = this;
      const table = texts.table(afterBos);
      // Only ids starting with a byte that goes on from the state can stay inside: the rest are never looked at.
      for (const byte of trie.childBytes[state]) {
        const { ids, from, to } = texts.startingWith(byte, afterBos);
        for (let i = from; i < to; i++) {
          const id = ids[i];
          if (trie.follow(state, table, texts.start(id, afterBos), texts.end(id, afterBos)) !== DEAD) out.push(id);
        }
      }
    }
    if (whole) for (const id of this.endIds) if (!out.includes(id)) out.push(id);
    out.sort((a, b) => a - b);
    const allowed = Int32Array.from(out);
    if (this.allowedByState.size >= MAX_CACHED_STATES) this.allowedByState.clear();
    this.allowedByState.set(state, allowed);
    return allowed;
  }

  /**
   * Masks in `out` every id not allowed at `state`: `kept` (vocabulary-sized
   * scratch) holds the allowed ids' values meanwhile. No allocation once the
   * state's ids are known.
   */
  mask(out: Float32Array, state: number, kept: Float32Array): void {
    const allowed = this.allowedAt(state);
    for (let i = 0; i < allowed.length; i++) kept[i] = out[allowed[i]];
    out.fill(-Infinity);
    for (let i = 0; i < allowed.length; i++) out[allowed[i]] = kept[i];
  }
}
