// vLLM's bad_words at the edge: each word as the token sequences vLLM makes of it.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { ApiError } from '../../edge/api-error';
import { badWordsTokenIds } from '../../edge/bad-words';
import { MAX_BAD_WORDS, MAX_BAD_WORDS_TOKENS } from '../../shared/protocol';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import type { Tokenizer } from '../../shared/tokenizer/tokenizer';
import { models } from '../support/shared-data';
import { refusalOf } from '../support/refusal';

/** A tokenizer of one id per character (its code), no space of its own in front: as GPT-2's byte-level BPE. */
const perCharacter = {
  vocabSize: 1 << 16,
  encode: (text: string) => [...text].map((c) => c.charCodeAt(0)),
} as unknown as Tokenizer;

/** Where a leading space merges into the word's first token: ' dog' is one token, 'dog' another. */
const wordPieces = {
  vocabSize: 100,
  encode: (text: string) => ({ dog: [10], ' dog': [11], 'hot dog': [12, 11], ' hot dog': [13, 11], '': [], ' ': [1] })[text] ?? [99],
} as unknown as Tokenizer;

const refusal = (words: string[], tokenizer: Tokenizer): ApiError => refusalOf(() => badWordsTokenIds(words, tokenizer));

describe("bad_words tokenized as vLLM's SamplingParams.update_from_tokenizer does", () => {
  it('keeps the word with a space in front where that changes its first token and not its length', () => {
    expect(badWordsTokenIds(['dog', 'hot dog'], wordPieces)).toEqual([[10], [11], [12, 11], [13, 11]]);
    // Leading whitespace is stripped first: ' dog' is the word 'dog'.
    expect(badWordsTokenIds([' \tdog'], wordPieces)).toEqual([[10], [11]]);
    // One more token with the space (a space token of its own): the spaced form is dropped.
    expect(badWordsTokenIds(['ab'], perCharacter)).toEqual([[97, 98]]);
  });

  it("with the served model's tokenizer (llama2.c's, a space in front of every text): the word alone", () => {
    const tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)), 'llama2c');
    const dog = tokenizer.encode('dog', { bos: false });
    expect(dog.length).toBeGreaterThan(0);
    expect(tokenizer.encode(' dog', { bos: false }).length).toBe(dog.length + 1);
    expect(badWordsTokenIds(['dog', ' dog'], tokenizer)).toEqual([dog, dog]);
  });

  it('refuses a word of no tokens, and more sequences or tokens than vLLM takes', () => {
    const empty = refusal(['dog', ''], wordPieces);
    expect(empty.status).toBe(400);
    expect(empty.toBody().error).toMatchObject({ message: expect.stringContaining('bad_words[1]'), param: 'bad_words', code: 'invalid_value' });
    expect(refusal(['   '], wordPieces).toBody().error.message).toContain('at least one token');
    // Each word two sequences: half the limit fills it, one more passes it.
    const words = Array.from({ length: MAX_BAD_WORDS / 2 + 1 }, () => 'dog');
    expect(badWordsTokenIds(words.slice(1), wordPieces)).toHaveLength(MAX_BAD_WORDS);
    expect(refusal(words, wordPieces).toBody().error.message).toContain(`more than ${MAX_BAD_WORDS} token sequences`);
    expect(refusal(['x'.repeat(MAX_BAD_WORDS_TOKENS + 1)], perCharacter).toBody().error.message).toContain(`more than ${MAX_BAD_WORDS_TOKENS} tokens`);
  });
});
