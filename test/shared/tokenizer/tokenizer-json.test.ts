import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HfTokenizer } from '../../../shared/tokenizer/hf-tokenizer';
import { Llama2cTokenizer } from '../../../shared/tokenizer/llama2c-tokenizer';
import { loadTokenizer } from '../../../shared/tokenizer/load-tokenizer';
import { llama2cToTokenizerJson, tokenizerJsonFromLlama2c } from '../../../shared/tokenizer/tokenizer-json';
import { byteLevelTokenizer } from '../../support/byte-level-tokenizer';
import { workloads } from '../../support/shared-data';
import { printedIds, randomText, readFixtures, seededRandom, tokenizerBytes } from './tokenizer-fixtures';

const tok512 = Llama2cTokenizer.fromBytes(tokenizerBytes('stories260K'));
const tok105 = Llama2cTokenizer.fromBytes(tokenizerBytes('babyllama105'));
const json512 = JSON.stringify(llama2cToTokenizerJson(tok512.vocabulary));
const json105 = JSON.stringify(llama2cToTokenizerJson(tok105.vocabulary));
const hf512 = new HfTokenizer(json512);
const hf105 = new HfTokenizer(json105);

describe('tokenizer.json converted from llama2.c', () => {
  it('has the Llama layout: ▁ vocabulary, merges by score, byte fallback, Llama decoder', () => {
    const json = JSON.parse(json512) as ReturnType<typeof llama2cToTokenizerJson>;
    expect(json.model.type).toBe('BPE');
    expect(json.model.byte_fallback).toBe(true);
    expect(json.model.vocab['▁the']).toBe(tok512.encode('the', { bos: false })[0]);
    expect(json.model.vocab['<0x0A>']).toBe(13);
    expect(json.model.vocab['<s>']).toBe(1);
    // The highest-scoring piece (' t', id 259) is the first merge.
    expect(json.model.merges[0]).toEqual(['▁', 't']);
    expect(json.added_tokens.map((t) => t.content)).toEqual(['<unk>', '<s>', '</s>']);
    expect(JSON.stringify(json.decoder)).toContain('ByteFallback');
    expect((JSON.parse(json105) as typeof json).model.byte_fallback).toBe(false);
  });

  for (const model of ['stories260K', 'llama2xs', 'babyllama105'] as const) {
    it(`${model}: the HF tokenizer encodes fixture prompts to prompt_ids and decodes run.c's stdout`, () => {
      const hf = model === 'babyllama105' ? hf105 : hf512;
      for (const f of readFixtures(model)) {
        expect(hf.encode(f.prompt), f.prompt).toEqual(f.promptIds);
        expect(hf.decode(printedIds(f))).toBe(f.stdout);
        const d = hf.createDecoder();
        let streamed = '';
        for (const id of printedIds(f)) streamed += d.push(id);
        expect(streamed + d.flush()).toBe(f.stdout);
      }
    });
  }

  it('encodes random strings exactly like the llama2.c tokenizer (tok512, with byte fallback)', () => {
    const rand = seededRandom(2024);
    for (let i = 0; i < 300; i++) {
      const text = randomText(rand);
      const ids = tok512.encode(text);
      expect(hf512.encode(text), JSON.stringify(text)).toEqual(ids);
      expect(hf512.decode(ids)).toBe(tok512.decode(ids));
    }
  });

  it("gives each id's bytes as the llama2.c tokenizer does: byte pieces one byte, BOS none; they join to the text's UTF-8", () => {
    const rand = seededRandom(7);
    for (let i = 0; i < 100; i++) {
      const ids = tok512.encode(randomText(rand), { bos: false });
      for (const id of ids) expect(hf512.tokenBytes(id)).toEqual(tok512.tokenBytes(id));
      // Not after BOS: the first piece keeps its leading space, in decode() too.
      expect(Buffer.concat(ids.map((id) => tok512.tokenBytes(id))).toString('utf8')).toBe(tok512.decode(ids));
    }
    expect(tok512.tokenBytes(1)).toHaveLength(0);
  });

  it('encodes random strings exactly like the llama2.c tokenizer (tok105, unknown characters as <unk>)', () => {
    const rand = seededRandom(105);
    for (let i = 0; i < 100; i++) {
      const text = randomText(rand);
      expect(hf105.encode(text, { bos: false }), JSON.stringify(text)).toEqual(tok105.encode(text, { bos: false }));
    }
  });

  it('exposes vocabulary size, BOS, and EOS (</s> plus BOS, which ends llama2.c stories)', () => {
    expect(hf512.vocabSize).toBe(512);
    expect(hf512.bosId).toBe(1);
    expect(hf512.eosIds).toEqual([2, 1]);
    expect(hf512.encode('', { bos: false })).toEqual([]);
    expect(new HfTokenizer(json512, { bosId: 1, eosIds: [1] }).eosIds).toEqual([1]);
  });

  it("names special ids by their added tokens' contents, as the llama2.c tokenizer names BOS and EOS", () => {
    for (const id of [1, 2]) expect(hf512.specialName(id)).toBe(tok512.specialName(id));
    expect(hf512.specialName(0)).toBe('<unk>');
    expect(hf512.specialName(300)).toBeNull();
    // A vocabulary with no piece table (byte-level): its specials too.
    const byteLevel = byteLevelTokenizer();
    expect(byteLevel.specialName(256)).toBe('<|begin_of_text|>');
    expect(byteLevel.specialName(257)).toBe('<|end_of_text|>');
    expect(byteLevel.specialName(65)).toBeNull();
  });

  it('is what loadTokenizer returns for JSON bytes, and llama2.c for binary bytes', () => {
    const viaJson = loadTokenizer(new TextEncoder().encode(`\n ${json512}`));
    expect(viaJson).toBeInstanceOf(HfTokenizer);
    expect(viaJson.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
    const viaBin = loadTokenizer(tokenizerBytes('stories260K'));
    expect(viaBin).toBeInstanceOf(Llama2cTokenizer);
    expect(loadTokenizer(new TextEncoder().encode(json512), 'hf-json').vocabSize).toBe(512);
  });

  it('converts tokenizer.bin bytes straight to tokenizer.json text', () => {
    expect(tokenizerJsonFromLlama2c(tokenizerBytes('stories260K'))).toBe(json512);
  });

  it('gives clear errors for broken JSON', () => {
    expect(() => loadTokenizer(new TextEncoder().encode('{"model": '))).toThrow(/not a tokenizer\.json/);
    expect(() => loadTokenizer(new TextEncoder().encode('{"version": "1.0"}'))).toThrow(/no "model" object/);
    expect(() => loadTokenizer(new TextEncoder().encode('{"model": {"type": "BPE"}}'))).toThrow(/model\.vocab/);
  });

  it('refuses token ids no vocabulary has, before building tables by them (one id of 2^31 ran the pool out of memory)', () => {
    const base = JSON.parse(json512) as { added_tokens: Array<Record<string, unknown>>; model: { vocab: unknown }; post_processor?: unknown };
    const variant = (change: (j: typeof base) => void): Uint8Array => {
      const j = JSON.parse(json512) as typeof base;
      change(j);
      return new TextEncoder().encode(JSON.stringify(j));
    };
    const cases: Array<[(j: typeof base) => void, RegExp]> = [
      [(j) => j.added_tokens.push({ id: 2 ** 31, content: '<x>', special: true }), /added_tokens\[\d+\] has id 2147483648, not an integer/],
      [(j) => j.added_tokens.push({ content: '<y>', special: true }), /added_tokens\[\d+\] has id undefined/],
      [(j) => j.added_tokens.push({ id: 2.5, content: '<z>', special: true }), /has id 2\.5/],
    ];
    for (const [change, said] of cases) {
      const t0 = performance.now();
      expect(() => loadTokenizer(variant(change))).toThrow(said);
      expect(performance.now() - t0).toBeLessThan(2000);
    }
    // A post-processor naming a BOS id past the vocabulary began every prompt with it.
    const vocab = JSON.parse(json512) as { post_processor?: unknown };
    if (vocab.post_processor) {
      const outside = JSON.stringify(vocab).replace(/"ids":\[1\]/g, '"ids":[1000000000]');
      expect(() => loadTokenizer(new TextEncoder().encode(outside))).toThrow(/BOS id 1000000000 is outside its 512 tokens/);
    }
  });
});

describe('special spellings in text (EncodeOptions.specialTokens)', () => {
  // The file the stack serves with SSSD_TOKENIZER, as tokenizerJsonFromLlama2c writes it.
  const hf = new HfTokenizer(tokenizerJsonFromLlama2c(tokenizerBytes('stories260K')));
  const plain = { bos: true, specialTokens: false } as const;

  it('reads </s> and <s> as special ids by default (a completion prompt), and as plain characters with false, as llama2.c does', () => {
    const text = 'Once upon a time</s><s>There was a dog';
    const special = hf.encode(text);
    expect(special.slice(1)).toContain(2);
    expect(special.slice(1)).toContain(1);
    const ids = hf.encode(text, plain);
    expect(ids.slice(1).filter((id) => id === 1 || id === 2)).toEqual([]);
    expect(ids).toEqual(tok512.encode(text));
    expect(hf.decode(ids)).toBe(text);
    // Formed across two messages' text (concat joins an assistant's reply with no separator).
    expect(hf.encode('A </s> B', plain)).toEqual(tok512.encode('A </s> B'));
    expect(hf.encode('A </s> B')).toContain(2);
  });

  it('keeps <unk> as id 0 both ways, with false without the "▁" the text after it gained', () => {
    for (const text of ['Once<unk> upon a', '<unk> upon', 'There was<unk> a dog<unk>']) {
      expect(hf.encode(text)).toContain(0);
      expect(hf.encode(text, plain), text).toEqual(tok512.encode(text));
    }
    expect(hf.encode('Once<unk> upon a', plain)).toContain(0);
  });

  it('gives the ids it gave before to text that spells no special token: fixtures, workloads, random text', () => {
    const texts = [...readFixtures('stories260K').map((f) => f.prompt)];
    // Every workload prompt, and the first 300 corpus stories (~1 KB each; all 1,500 take seconds).
    for (const [file, rows] of [[workloads.devSessions, Infinity], [workloads.datastoreCorpus, 300]] as const) {
      const lines = readFileSync(file, 'utf8').split('\n').filter((line) => line.trim() !== '');
      for (const line of lines.slice(0, rows)) {
        const row = JSON.parse(line) as { prompt?: string; text?: string };
        texts.push(row.prompt ?? row.text ?? '');
      }
    }
    const rand = seededRandom(171);
    for (let i = 0; i < 300; i++) texts.push(randomText(rand));
    expect(texts.length).toBeGreaterThan(700);
    for (const text of texts) {
      const ids = hf.encode(text, { bos: false, specialTokens: false });
      expect(ids, JSON.stringify(text.slice(0, 80))).toEqual(hf.encode(text, { bos: false }));
    }
  });

  it('encodes random text holding special spellings exactly as the llama2.c tokenizer, with false', () => {
    const rand = seededRandom(172);
    const spellings = ['<s>', '</s>', '<unk>', '</', 's>', '<'];
    for (let i = 0; i < 300; i++) {
      let text = '';
      for (let part = 0; part < 4; part++) text += randomText(rand, 6) + spellings[Math.floor(rand() * spellings.length)];
      expect(hf.encode(text, { bos: false, specialTokens: false }), JSON.stringify(text)).toEqual(tok512.encode(text, { bos: false }));
    }
  });

  it("reads a byte-level tokenizer's special spellings as their bytes with false", () => {
    const byteLevel = byteLevelTokenizer();
    const text = 'Hi<|end_of_text|><|begin_of_text|>there';
    expect(byteLevel.encode(text, { bos: false })).toContain(257);
    const ids = byteLevel.encode(text, { bos: false, specialTokens: false });
    expect(ids.every((id) => id < 256)).toBe(true);
    expect(ids).toEqual([...new TextEncoder().encode(text)]);
  });

  it('llama2.c reads the spellings the same either way: </s> and <s> plain, <unk> id 0', () => {
    const text = 'A</s>B<s>C<unk>D';
    expect(tok512.encode(text, { specialTokens: false })).toEqual(tok512.encode(text));
    expect(tok512.encode(text).slice(1).filter((id) => id === 1 || id === 2)).toEqual([]);
    expect(tok512.encode(text)).toContain(0);
  });
});
