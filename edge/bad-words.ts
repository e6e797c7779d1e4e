/**
 * vLLM's `bad_words`: each word as the token-id sequences the pool masks
 * (vllm/sampling_params.py, SamplingParams.update_from_tokenizer). A word,
 * its leading whitespace stripped, is tokenized without special tokens, and
 * again after one space (the word in the middle of a text, where the
 * tokenizer adds no space of its own); the spaced form is kept only where it
 * differs in its first token and matches in length. At most MAX_BAD_WORDS
 * sequences and MAX_BAD_WORDS_TOKENS ids in all, as vLLM's limits.
 */
import { MAX_BAD_WORDS, MAX_BAD_WORDS_TOKENS } from '../shared/protocol';
import type { Tokenizer } from '../shared/tokenizer/tokenizer';
import { badRequest } from './api-error';

/** Python's str.lstrip(): the characters its str.isspace() takes (JS's trimStart differs: it strips U+FEFF, not U+001C..U+001F or U+0085). */
const LEADING_PYTHON_WHITESPACE = /^[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;

export function badWordsTokenIds(words: readonly string[], tokenizer: Tokenizer): number[][] {
  const sequences: number[][] = [];
  let total = 0;
  for (let i = 0; i < words.length; i++) {
    const word = words[i].replace(LEADING_PYTHON_WHITESPACE, '');
    const plain = tokenizer.encode(word, { bos: false });
    if (plain.length === 0) throw badRequest(`bad_words[${i}]: a bad word must tokenize to at least one token.`, 'bad_words', 'invalid_value');
    const spaced = tokenizer.encode(` ${word}`, { bos: false });
    const kept = spaced.length === plain.length && spaced[0] !== plain[0] ? [plain, spaced] : [plain];
    for (const ids of kept) {
      sequences.push(ids);
      total += ids.length;
    }
    if (sequences.length > MAX_BAD_WORDS) throw badRequest(`bad_words: too many bad words after tokenization (more than ${MAX_BAD_WORDS} token sequences).`, 'bad_words', 'invalid_value');
    if (total > MAX_BAD_WORDS_TOKENS) throw badRequest(`bad_words: more than ${MAX_BAD_WORDS_TOKENS} tokens in all after tokenization.`, 'bad_words', 'invalid_value');
  }
  return sequences;
}
