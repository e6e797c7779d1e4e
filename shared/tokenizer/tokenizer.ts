// The tokenizer contract shared by the edge, the pool, the model CLI and the
// evaluator. Implementations: llama2.c binary (llama2c-tokenizer.ts) and
// Hugging Face tokenizer.json (hf-tokenizer.ts); loadTokenizer() picks one.

/** The largest vocabulary this server takes, from a tokenizer or a checkpoint: past it a table by token id would not fit in memory. */
export const MAX_VOCAB_SIZE = 1 << 22;

export interface EncodeOptions {
  /** Prepend the BOS id (default true), as llama2.c's run.c does for prompts. */
  bos?: boolean;
  /**
   * Whether text that spells a special token (`<s>`, `</s>`, `<|eot_id|>`...)
   * becomes its special id (default true: a completion's text prompt, as HF's
   * tokenizers read it). False for text that is not the caller's to give
   * structure to (chat messages, tool outputs): it is encoded as the plain
   * characters, so untrusted text cannot end a document or start one. The
   * unknown token's spelling (`<unk>`, id 0) is content either way: the text
   * a reply's id 0 prints as, so a reply sent back reaches the model as
   * written. The llama2.c tokenizer reads `<s>` and `</s>` as plain
   * characters whatever this says.
   */
  specialTokens?: boolean;
}

export interface DecoderOptions {
  /**
   * The id that precedes the first pushed id (e.g. the last prompt id when
   * streaming a completion). Only matters when it is BOS: a piece right after
   * BOS drops its leading space, as run.c prints it. Default: none.
   */
  previousId?: number;
}

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  /** Ids that end a generation. llama2.c convention: [1], BOS delimits stories. */
  readonly eosIds: readonly number[];
  encode(text: string, opts?: EncodeOptions): number[];
  /** Whole-sequence decode, as run.c prints it (BOS/EOS print nothing). */
  decode(ids: ArrayLike<number>): string;
  /** A streaming decoder; its pushes concatenated equal decode() of the same ids. */
  createDecoder(opts?: DecoderOptions): IncrementalDecoder;
  /**
   * The bytes an id adds to decoded text: one byte for a byte-fallback piece
   * (a character split over several ids), none for ids that print nothing.
   * What OpenAI's log-probabilities carry as `bytes`.
   */
  tokenBytes(id: number): Uint8Array;
  /**
   * A special id's name (`<s>`, `</s>`, `<|eot_id|>`): what vLLM shows for
   * such an id where a token is listed by itself (`/tokenize`'s
   * `token_strs`, `prompt_logprobs`' `decoded_token`), though it prints
   * nothing in decoded text. Null for an id that is not special.
   */
  specialName(id: number): string | null;
}

export interface IncrementalDecoder {
  /** Text that became valid UTF-8 with this id (often '' inside a multi-byte character). */
  push(id: number): string;
  /** The rest: bytes of an unfinished character become U+FFFD. Resets the decoder. */
  flush(): string;
  /** Whether ids pushed are held, unprinted (bytes of an unfinished character): flush() would print them. */
  holding(): boolean;
}

/** Thrown for unreadable tokenizer files: callers show the message as is. */
export class TokenizerFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenizerFormatError';
  }
}
