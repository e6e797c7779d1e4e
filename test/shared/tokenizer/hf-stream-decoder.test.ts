// Streaming decode for vocabularies without a piece table (byte-level BPE,
// as Llama 3's and GPT-2's): the pushes join to decode()'s text, and cost
// does not grow with the length of the stream.
import { describe, expect, it } from 'vitest';
import { byteLevelTokenizer } from '../../support/byte-level-tokenizer';
import { randomText, seededRandom } from './tokenizer-fixtures';

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

  it('joins to the whole text through invalid bytes, unfinished characters and special tokens in any mix', () => {
    const rand = seededRandom(23);
    const pieces = [...tok.encode('a 中😀é', { bos: false }), 0xf0, 0x9f, 0xe4, 0xb8, 0x80, 0xc3, 256, 257];
    for (let i = 0; i < 300; i++) {
      const ids = Array.from({ length: 1 + Math.floor(rand() * 40) }, () => pieces[Math.floor(rand() * pieces.length)]);
      expect(streamed(ids).join(''), ids.join(',')).toBe(tok.decode(ids));
    }
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
    // Nothing printed for long: bytes that never make a character (a logit bias on one), or special tokens (3 s and 0.5 s before).
    for (const id of [0xf0, 257]) {
      const decoder = tok.createDecoder();
      const t0 = performance.now();
      let text = '';
      for (let i = 0; i < 8000; i++) text += decoder.push(id);
      text += decoder.flush();
      expect(performance.now() - t0, `id ${id}`).toBeLessThan(1000);
      expect(text).toBe(tok.decode(new Array<number>(8000).fill(id)));
    }
  });
});
