// Streaming decode for vocabularies without a piece table (byte-level BPE,
// as Llama 3's and GPT-2's): the pushes join to decode()'s text, and cost
// does not grow with the length of the stream.
import { describe, expect, it } from 'vitest';
import { HfTokenizer } from '../../../shared/tokenizer/hf-tokenizer';
import { randomText, seededRandom } from './tokenizer-fixtures';

/** A GPT-2-style byte-level tokenizer.json: every byte a token (no merges), two special tokens. */
function byteLevelTokenizer(): HfTokenizer {
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

const tok = byteLevelTokenizer();

function streamed(ids: readonly number[]): string[] {
  const decoder = tok.createDecoder();
  const pieces = ids.map((id) => decoder.push(id));
  pieces.push(decoder.flush());
  return pieces;
}

describe('streaming decode of a byte-level vocabulary', () => {
  it('joins to the whole text, a character split over byte tokens coming once it is whole', () => {
    const rand = seededRandom(11);
    for (let i = 0; i < 200; i++) {
      const ids = tok.encode(randomText(rand) + ' 中文 😀 ', { bos: false });
      expect(streamed(ids).join('')).toBe(tok.decode(ids));
    }
    // 😀 is four bytes: nothing until the fourth; special tokens print nothing.
    expect(streamed([...tok.encode('a😀', { bos: false }), 257])).toEqual(['a', '', '', '', '😀', '', '']);
    // A character never finished comes out at the flush, as decode() has it.
    expect(streamed([97, 0xf0, 0x9f]).join('')).toBe(tok.decode([97, 0xf0, 0x9f]));
  });

  it('costs the same per token however long the stream (it decoded every id so far at each push: 8,000 tokens took 3-6 s)', () => {
    const ids = tok.encode('Once upon a time, 中文 😀 there was a little girl. '.repeat(200), { bos: false });
    const time = (n: number): number => {
      const decoder = tok.createDecoder();
      const t0 = performance.now();
      for (let i = 0; i < n; i++) decoder.push(ids[i % ids.length]);
      decoder.flush();
      return performance.now() - t0;
    };
    time(500); // warm
    expect(time(8000)).toBeLessThan(1000);
  });
});
