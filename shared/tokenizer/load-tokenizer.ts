// One entry point for tokenizer files: llama2.c tokenizer.bin or Hugging Face
// tokenizer.json, told apart by content (a JSON object starts with '{' after
// optional whitespace/BOM; a llama2.c file starts with a small int32).
import { HfTokenizer } from './hf-tokenizer';
import { Llama2cTokenizer } from './llama2c-tokenizer';
import type { Tokenizer } from './tokenizer';

export type TokenizerFormat = 'llama2c' | 'hf-json';

export function detectTokenizerFormat(bytes: Uint8Array): TokenizerFormat {
  let i = 0;
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) i = 3; // UTF-8 BOM
  while (i < bytes.length && (bytes[i] === 0x20 || bytes[i] === 0x09 || bytes[i] === 0x0a || bytes[i] === 0x0d)) i++;
  return bytes[i] === 0x7b /* { */ ? 'hf-json' : 'llama2c';
}

/** Throws TokenizerFormatError (a plain Error with a clear message) for unreadable bytes. */
export function loadTokenizer(bytes: Uint8Array, hint?: TokenizerFormat): Tokenizer {
  const format = hint ?? detectTokenizerFormat(bytes);
  return format === 'hf-json' ? new HfTokenizer(bytes) : Llama2cTokenizer.fromBytes(bytes);
}
