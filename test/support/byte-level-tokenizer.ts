// A GPT-2-style byte-level tokenizer (Llama 3's kind of vocabulary) for tests
// of the paths that have no piece table: every byte a token, no merges, two
// special tokens (256, 257).
import { HfTokenizer } from '../../shared/tokenizer/hf-tokenizer';

/** A GPT-2-style byte-level tokenizer.json: every byte a token (no merges), two special tokens. */
export function byteLevelTokenizer(): HfTokenizer {
  const bytes: number[] = [];
  for (let b = 33; b <= 126; b++) bytes.push(b);
  for (let b = 161; b <= 172; b++) bytes.push(b);
  for (let b = 174; b <= 255; b++) bytes.push(b);
  const chars = bytes.slice();
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + shifted++);
    }
  }
  const vocab: Record<string, number> = {};
  bytes.forEach((b, i) => (vocab[String.fromCodePoint(chars[i])] = b));
  vocab['<|begin_of_text|>'] = 256;
  vocab['<|end_of_text|>'] = 257;
  const special = (id: number, content: string) => ({ id, content, special: true, single_word: false, lstrip: false, rstrip: false, normalized: false });
  return new HfTokenizer({
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(256, '<|begin_of_text|>'), special(257, '<|end_of_text|>')],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  });
}

