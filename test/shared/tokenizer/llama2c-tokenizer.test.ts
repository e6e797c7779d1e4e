import { describe, expect, it } from 'vitest';
import { Llama2cTokenizer, parseLlama2cTokenizer, type Llama2cVocabulary } from '../../../shared/tokenizer/llama2c-tokenizer';
import { TokenizerFormatError } from '../../../shared/tokenizer/tokenizer';
import { printedIds, randomText, readFixtures, seededRandom, tokenizerBytes } from './tokenizer-fixtures';

const tok512 = Llama2cTokenizer.fromBytes(tokenizerBytes('stories260K'));
const tok105 = Llama2cTokenizer.fromBytes(tokenizerBytes('babyllama105'));

/** run.c's encode() transcribed literally (O(n^2) rescans) as the oracle for the heap version. */
function runCEncode(vocab: Llama2cVocabulary, text: string, bos: boolean): number[] {
  const key = (b: Uint8Array) => String.fromCharCode(...b);
  const lookup = new Map<string, number>();
  vocab.pieces.forEach((p, id) => lookup.has(key(p)) || lookup.set(key(p), id));
  const tokens: number[] = [];
  if (bos) tokens.push(1);
  const bytes = new TextEncoder().encode(text);
  if (bytes.length > 0) tokens.push(lookup.get(' ') ?? -1);
  let buf: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    if ((bytes[i] & 0xc0) !== 0x80) buf = [];
    buf.push(bytes[i]);
    if (i + 1 < bytes.length && (bytes[i + 1] & 0xc0) === 0x80 && buf.length < 4) continue;
    const id = lookup.get(String.fromCharCode(...buf));
    if (id !== undefined) tokens.push(id);
    else for (const b of buf) tokens.push(b + 3);
    buf = [];
  }
  const start = bos ? 1 : 0;
  for (;;) {
    let bestScore = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let i = start; i < tokens.length - 1; i++) {
      const id = lookup.get(key(vocab.pieces[tokens[i]]) + key(vocab.pieces[tokens[i + 1]]));
      if (id !== undefined && vocab.scores[id] > bestScore) {
        bestScore = vocab.scores[id];
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  return tokens;
}

describe('llama2.c tokenizer against run.c fixtures', () => {
  for (const model of ['stories260K', 'llama2xs', 'babyllama105'] as const) {
    const tok = model === 'babyllama105' ? tok105 : tok512;
    it(`${model}: encode(prompt) gives prompt_ids and decode reproduces run.c's stdout`, () => {
      const fixtures = readFixtures(model);
      expect(fixtures.length).toBeGreaterThan(0);
      for (const f of fixtures) {
        expect(tok.encode(f.prompt), f.prompt).toEqual(f.promptIds);
        expect(tok.decode(printedIds(f)), f.prompt).toBe(f.stdout);
      }
    });
  }

  it('reports vocabulary size and the llama2.c BOS/EOS convention', () => {
    expect(tok512.vocabSize).toBe(512);
    expect(tok105.vocabSize).toBe(105);
    expect(tok512.bosId).toBe(1);
    expect(tok512.eosIds).toEqual([1]);
    expect(tok512.hasByteFallback).toBe(true);
    expect(tok105.hasByteFallback).toBe(false);
  });

  it("names BOS and EOS as SentencePiece does (<s>, </s>), not by their pieces' newlines; other ids are not special", () => {
    for (const tok of [tok512, tok105]) {
      // The files' pieces, as llama2.c's export wrote them.
      expect(new TextDecoder().decode(tok.vocabulary.pieces[1])).toBe('\n<s>\n');
      expect(tok.specialName(1)).toBe('<s>');
      expect(tok.specialName(2)).toBe('</s>');
      // <unk> prints as itself: not special here.
      for (const id of [0, 3, tok.vocabSize - 1]) expect(tok.specialName(id)).toBeNull();
    }
  });
});

describe('llama2.c encode', () => {
  it('omits BOS on request and gives nothing (not even the dummy space) for empty text', () => {
    expect(tok512.encode('')).toEqual([1]);
    expect(tok512.encode('', { bos: false })).toEqual([]);
    expect(tok512.encode('Once upon a time', { bos: false })).toEqual(tok512.encode('Once upon a time').slice(1));
  });

  it('matches a literal transcription of run.c on hundreds of random strings', () => {
    const rand = seededRandom(512);
    const vocab = tok512.vocabulary;
    for (let i = 0; i < 300; i++) {
      const text = randomText(rand);
      expect(tok512.encode(text), JSON.stringify(text)).toEqual(runCEncode(vocab, text, true));
    }
  });

  it('uses byte fallback <0xNN> (id byte+3) for characters outside the vocabulary', () => {
    // '😀' is F0 9F 98 80; '\n' is 0A.
    expect(tok512.encode('😀\n', { bos: false })).toEqual([410, 0xf0 + 3, 0x9f + 3, 0x98 + 3, 0x80 + 3, 0x0a + 3]);
  });

  it('maps characters unknown to a vocabulary without byte fallback to one <unk> each, without crashing', () => {
    const ids = tok105.encode('a😀b\n', { bos: false });
    const a = tok105.encode('a', { bos: false })[1];
    const b = tok105.encode('b', { bos: false })[1];
    expect(ids).toEqual([3, a, 0, b, 0]);
    for (const id of tok105.encode('日本語 ñ ü\t', { bos: true })) expect(id).toBeLessThan(tok105.vocabSize);
  });

  it("reads the text `<unk>` back as id 0, the text id 0 decodes to: a reply's paragraph break (babyllama105 writes it so) reaches the model as written", () => {
    // From babyllama105's own greedy output: `…the bird too.<unk>Tom said…`.
    for (const tok of [tok105, tok512]) {
      const written = [...tok.encode('the bird too.', { bos: true }), 0, ...tok.encode('Tom said', { bos: false }).slice(1)];
      const text = tok.decode(written);
      expect(text).toContain('<unk>');
      expect(tok.encode(text, { bos: true })).toContain(0);
      expect(tok.decode(tok.encode(text, { bos: true }))).toBe(text);
    }
    expect(tok105.encode('<unk>', { bos: false })).toEqual([3, 0]);
  });

  it('treats a lone surrogate like U+FFFD instead of throwing', () => {
    expect(tok512.encode('a\ud800b')).toEqual(tok512.encode('a\ufffdb'));
  });

  it('encodes a 50,000-character prompt in O(n log n) time (far below a quadratic rescan)', () => {
    const text = 'Once upon a time, there was a little girl named Lily. “Hé” 😀\n'.repeat(900).slice(0, 50_000);
    tok512.encode(text);
    const t0 = performance.now();
    const ids = tok512.encode(text);
    const ms = performance.now() - t0;
    expect(ids.length).toBeGreaterThan(10_000);
    expect(tok512.decode(ids)).toBe(text);
    expect(ms).toBeLessThan(2000); // measured ~10-30 ms; a quadratic encode takes many seconds
  });
});

describe('llama2.c decode', () => {
  it('drops the leading space of the piece after BOS only, prints nothing for BOS/EOS', () => {
    const once = tok512.encode('Once', { bos: false });
    expect(tok512.decode([1, ...once])).toBe('Once');
    expect(tok512.decode(once)).toBe(' Once');
    expect(tok512.decode([...once, 1, ...once, 2])).toBe(' OnceOnce');
  });

  it('decodes byte pieces as raw UTF-8 bytes', () => {
    for (const text of ['😀 naïve “quotes” 日本語', 'ünïcödé\n\ttabs']) {
      expect(tok512.decode(tok512.encode(text))).toBe(text);
    }
  });

  it('rejects ids outside the vocabulary with a clear error', () => {
    expect(() => tok512.decode([512])).toThrow(/outside the vocabulary/);
  });
});

describe('llama2.c tokenizer file validation', () => {
  const good = tokenizerBytes('stories260K');
  const cases: [string, Uint8Array][] = [
    ['empty', new Uint8Array(0)],
    ['truncated header', good.slice(0, 2)],
    ['cut mid-token', good.slice(0, 1001)],
    ['cut mid-header', good.slice(0, 4 + 8 + 5 + 3)],
    ['text file', new TextEncoder().encode('hello world, not a tokenizer')],
    ['huge length', (() => { const b = good.slice(); new DataView(b.buffer).setInt32(4 + 4, 1 << 30, true); return b; })()],
    ['negative length', (() => { const b = good.slice(); new DataView(b.buffer).setInt32(4 + 4, -5, true); return b; })()],
  ];
  for (const [name, bytes] of cases) {
    it(`gives a TokenizerFormatError, not a RangeError, for ${name}`, () => {
      let caught: unknown;
      try {
        parseLlama2cTokenizer(bytes);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(TokenizerFormatError);
      expect((caught as Error).message).toMatch(/llama2\.c tokenizer/);
    });
  }
});
