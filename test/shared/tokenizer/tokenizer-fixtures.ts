// Fixture access for the tokenizer tests: run.c's greedy generations and the
// tokenizer files they were made with (read from ../shared at run time).
import { readFileSync } from 'node:fs';
import { models } from '../../support/shared-data';
export { seededRandom } from '../../support/seeded-random';

export interface RunCFixture {
  model: keyof typeof models;
  prompt: string;
  promptIds: number[];
  outputIds: number[];
  stdout: string;
}

export function tokenizerBytes(model: keyof typeof models): Uint8Array {
  return new Uint8Array(readFileSync(models[model].tokenizer));
}

export function readFixtures(model: keyof typeof models): RunCFixture[] {
  return readFileSync(models[model].fixtures, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const d = JSON.parse(line) as { prompt: string; prompt_ids: number[]; output_ids: number[]; run_c_stdout: string };
      return { model, prompt: d.prompt, promptIds: d.prompt_ids, outputIds: d.output_ids, stdout: d.run_c_stdout };
    });
}

/** The ids run.c printed: the prompt, then the output up to (not including) the first BOS that ended the story. */
export function printedIds(f: RunCFixture): number[] {
  const end = f.outputIds.indexOf(1);
  return [...f.promptIds, ...(end >= 0 ? f.outputIds.slice(0, end) : f.outputIds)];
}


const WORDS = ['Once', 'upon', 'a', 'time', 'Lily', 'the', 'little', 'happy', 'played', 'said', 'friend', 'Tim', 'mom', 'They'];
const CHARS = [
  ...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789',
  ...' .,!?"\'-:;()[]{}<>/\\|~`@#$%^&*+=_',
  ' ', ' ', ' ', '  ', '\n', '\t', '\r\n',
  'é', 'ñ', 'ü', 'ø', 'ß', 'Ω', '“', '”', '’', '…', '€', '™', '日本', '한', '😀', '🐶', '👍🏽', '\u00a0', '\u200a',
];

/** Random text mixing story words, ASCII, whitespace runs and multi-byte characters. */
export function randomText(rand: () => number, maxParts = 24): string {
  const parts = 1 + Math.floor(rand() * maxParts);
  let s = '';
  for (let i = 0; i < parts; i++) {
    const r = rand();
    if (r < 0.4) s += (rand() < 0.7 ? ' ' : '') + WORDS[Math.floor(rand() * WORDS.length)];
    else s += CHARS[Math.floor(rand() * CHARS.length)];
  }
  // Literal special-token spellings encode to special ids in HF tokenizers (documented divergence).
  return s.replace(/<\/?s>|<unk>/g, '');
}
