// Convert a llama2.c tokenizer into an equivalent Hugging Face tokenizer.json
// (the shape transformers' LlamaConverter gives a sentencepiece BPE model):
// vocabulary with ▁ for spaces, merges derived from the scores (every split
// a+b of a piece into two vocabulary pieces, ranked by the merged piece's
// score, highest first), byte fallback, normalizer Prepend ▁ + Replace " ",
// decoder Replace/ByteFallback/Fuse/Strip, post-processor adding <s>.
//
// Differences from Meta's Llama files, chosen to encode exactly like
// llama2.c: fuse_unk is false (llama2c-tokenizer.ts emits one <unk> per
// unknown character). Known divergences, in text read with special tokens
// (HfTokenizer's default, a completion's prompt): as with every HF tokenizer,
// the literal text "<unk>", "<s>" or "</s>" encodes to the special id, and
// the text after one is normalized on its own, so it gains the Prepend's "▁"
// (Llama's "legacy" reading). Read with `specialTokens: false` (chat text),
// HfTokenizer encodes as llama2.c does, those two included.
import {
  LLAMA2C_BOS_ID,
  LLAMA2C_EOS_ID,
  LLAMA2C_SPECIAL_NAMES,
  LLAMA2C_UNK_ID,
  parseLlama2cTokenizer,
  type Llama2cVocabulary,
} from './llama2c-tokenizer';

export const SPACE_MARK = '\u2581'; // ▁

export interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

export interface BpeModelJson {
  type: 'BPE';
  dropout: null;
  unk_token: string | null;
  continuing_subword_prefix: null;
  end_of_word_suffix: null;
  fuse_unk: boolean;
  byte_fallback: boolean;
  ignore_merges: boolean;
  vocab: Record<string, number>;
  merges: [string, string][];
}

/** The parts of tokenizer.json this project writes; other components pass through as JSON values. */
export interface TokenizerJson {
  version: string;
  truncation: null;
  padding: null;
  added_tokens: AddedTokenJson[];
  normalizer: JsonValue;
  pre_tokenizer: JsonValue;
  model: BpeModelJson;
  post_processor: JsonValue;
  decoder: JsonValue;
}

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

const BYTE_PIECE = /^<0x[0-9A-Fa-f]{2}>$/;

/** Build tokenizer.json for a llama2.c vocabulary; `JSON.stringify` the result to write the file. */
export function llama2cToTokenizerJson(vocabulary: Llama2cVocabulary): TokenizerJson {
  const utf8 = new TextDecoder('utf-8');
  const size = vocabulary.pieces.length;
  const names: string[] = new Array(size);
  const vocab: Record<string, number> = Object.create(null) as Record<string, number>;
  const idOf = new Map<string, number>();
  let hasByteFallback = true;
  const byteSeen = new Set<string>();
  for (let id = 0; id < size; id++) {
    const special = LLAMA2C_SPECIAL_NAMES[id];
    const name = special ?? utf8.decode(vocabulary.pieces[id]).replaceAll(' ', SPACE_MARK);
    names[id] = name;
    if (!idOf.has(name)) {
      idOf.set(name, id);
      vocab[name] = id;
    }
    if (special === undefined && BYTE_PIECE.test(name)) byteSeen.add(name.toUpperCase());
  }
  if (byteSeen.size < 256) hasByteFallback = false;

  // Merges: (left, right) for every split of a mergeable piece into two mergeable pieces.
  const mergeable = (id: number | undefined): id is number =>
    id !== undefined && LLAMA2C_SPECIAL_NAMES[id] === undefined && !BYTE_PIECE.test(names[id]);
  const found: { left: number; right: number; merged: number }[] = [];
  for (let merged = 0; merged < size; merged++) {
    if (!mergeable(merged) || idOf.get(names[merged]) !== merged) continue;
    const chars = Array.from(names[merged]);
    let prefix = '';
    for (let k = 1; k < chars.length; k++) {
      prefix += chars[k - 1];
      const left = idOf.get(prefix);
      const right = idOf.get(names[merged].slice(prefix.length));
      if (mergeable(left) && mergeable(right)) found.push({ left, right, merged });
    }
  }
  const scores = vocabulary.scores;
  found.sort(
    (a, b) => scores[b.merged] - scores[a.merged] || a.merged - b.merged || a.left - b.left || a.right - b.right,
  );
  const merges = found.map((m): [string, string] => [names[m.left], names[m.right]]);

  const added_tokens: AddedTokenJson[] = [LLAMA2C_UNK_ID, LLAMA2C_BOS_ID, LLAMA2C_EOS_ID].map((id) => ({
    id,
    content: names[id],
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const bos = names[LLAMA2C_BOS_ID];
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens,
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: SPACE_MARK },
        { type: 'Replace', pattern: { String: ' ' }, content: SPACE_MARK },
      ],
    },
    pre_tokenizer: null,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: names[LLAMA2C_UNK_ID],
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: hasByteFallback,
      ignore_merges: false,
      vocab,
      merges,
    },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: bos, type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: bos, type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { [bos]: { id: bos, ids: [LLAMA2C_BOS_ID], tokens: [bos] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE_MARK }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
  };
}

/** tokenizer.json text for llama2.c tokenizer.bin bytes (what an HF model directory holds). */
export function tokenizerJsonFromLlama2c(bytes: Uint8Array): string {
  return JSON.stringify(llama2cToTokenizerJson(parseLlama2cTokenizer(bytes)));
}
