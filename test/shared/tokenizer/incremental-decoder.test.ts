import { describe, expect, it } from 'vitest';
import { Llama2cTokenizer } from '../../../shared/tokenizer/llama2c-tokenizer';
import type { IncrementalDecoder, Tokenizer } from '../../../shared/tokenizer/tokenizer';
import { printedIds, randomText, readFixtures, seededRandom, tokenizerBytes } from './tokenizer-fixtures';

const tok512 = Llama2cTokenizer.fromBytes(tokenizerBytes('stories260K'));
const tok105 = Llama2cTokenizer.fromBytes(tokenizerBytes('babyllama105'));

function streamPieces(decoder: IncrementalDecoder, ids: ArrayLike<number>): string[] {
  const pieces: string[] = [];
  for (let i = 0; i < ids.length; i++) pieces.push(decoder.push(ids[i]));
  pieces.push(decoder.flush());
  return pieces;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function expectWellFormed(pieces: string[]): void {
  for (const p of pieces) {
    expect(LONE_SURROGATE.test(p), JSON.stringify(p)).toBe(false);
    expect(p.includes('\ufffd'), JSON.stringify(p)).toBe(false);
  }
}

describe('incremental decoder', () => {
  for (const [model, tok] of [['stories260K', tok512], ['llama2xs', tok512], ['babyllama105', tok105]] as [
    'stories260K' | 'llama2xs' | 'babyllama105',
    Tokenizer,
  ][]) {
    it(`${model}: token-by-token pushes concatenate to run.c's stdout`, () => {
      for (const f of readFixtures(model)) {
        expect(streamPieces(tok.createDecoder(), printedIds(f)).join('')).toBe(f.stdout);
      }
    });
  }

  it('emits a multi-byte character split across byte-fallback pieces only once it is complete', () => {
    const text = ' 😀é日本“x”👍🏽ñ';
    const ids = tok512.encode(text, { bos: false });
    expect(ids.filter((id) => id >= 3 && id <= 258).length).toBeGreaterThan(8); // really goes through byte fallback
    const pieces = streamPieces(tok512.createDecoder(), ids);
    expectWellFormed(pieces);
    expect(pieces.join('')).toBe(text.replace(/^ /, '  '));
    // The four bytes of 😀 produce '', '', '', then the whole emoji.
    const emoji = tok512.encode('😀', { bos: false }).slice(1);
    expect(streamPieces(tok512.createDecoder(), emoji)).toEqual(['', '', '', '😀', '']);
  });

  it('agrees with whole-sequence decode on random text, and never emits broken characters', () => {
    const rand = seededRandom(7);
    for (let i = 0; i < 200; i++) {
      const text = randomText(rand);
      const ids = tok512.encode(text);
      const pieces = streamPieces(tok512.createDecoder(), ids);
      expectWellFormed(pieces);
      expect(pieces.join('')).toBe(tok512.decode(ids));
      expect(pieces.join('')).toBe(text); // BOS + dummy space round-trips exactly
    }
  });

  it('continues after a prompt: previousId = BOS drops the first leading space, as run.c prints it', () => {
    const ids = tok512.encode('Once upon a time', { bos: false });
    expect(streamPieces(tok512.createDecoder({ previousId: 1 }), ids).join('')).toBe('Once upon a time');
    expect(streamPieces(tok512.createDecoder({ previousId: 407 }), ids).join('')).toBe(' Once upon a time');
  });

  it('flush() turns an unfinished character into U+FFFD and resets', () => {
    const d = tok512.createDecoder();
    expect(d.push(0xf0 + 3)).toBe('');
    expect(d.push(0x9f + 3)).toBe('');
    expect(d.flush()).toBe('\ufffd');
    expect(d.flush()).toBe('');
    expect(d.push(0x41 + 3)).toBe('A');
  });

  it('turns an unfinished character interrupted by BOS or EOS into U+FFFD there, and resets', () => {
    for (const silent of [1, 2]) {
      const d = tok512.createDecoder();
      expect(d.push(0xc3 + 3)).toBe('');
      expect(d.push(silent), String(silent)).toBe('\ufffd');
      expect(d.flush()).toBe('');
      expect(tok512.decode([0xe2 + 3, 0x82 + 3, silent, 0x41 + 3])).toBe('\ufffdA');
    }
  });

  it('replaces invalid byte sequences like TextDecoder does', () => {
    const sequences = [
      [0xff],
      [0xc3, 0x41],
      [0xe2, 0x82],
      [0xed, 0xa0, 0x80], // encoded surrogate
      [0xc0, 0xaf], // overlong
      [0xf0, 0x9f, 0x98, 0x80, 0x80],
      [0xe2, 0x82, 0xac, 0xf4, 0x90, 0x80, 0x80],
    ];
    for (const bytes of sequences) {
      const expected = new TextDecoder().decode(new Uint8Array(bytes));
      expect(streamPieces(tok512.createDecoder(), bytes.map((b) => b + 3)).join(''), bytes.join(',')).toBe(expected);
    }
    // A text piece interrupting an unfinished character.
    const once = tok512.encode('Once', { bos: false });
    expect(tok512.decode([0xc3 + 3, ...once])).toBe('\ufffd Once');
  });
});
