import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { choiceSeed, echoText, type ParsedRequest } from '../../edge/completion-handler';
import type { CompletionRequest } from '../../edge/request-schema';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import { models } from '../support/shared-data';

describe("a choice's seed", () => {
  it('is seed + i for the seeds people send', () => {
    expect([0, 1, 2].map((i) => choiceSeed(5, i))).toEqual([5, 6, 7]);
  });

  it('differs per choice past 2^53, where seed + i in floats is seed again', () => {
    const seeds = [0, 1, 2].map((i) => choiceSeed(1e17, i));
    expect(new Set(seeds).size).toBe(3);
    expect(seeds[1] - seeds[0]).toBe(1);
  });

  it('keeps every seed within the pool\'s range, and tells -s from s', () => {
    for (const seed of [-1, -(2 ** 62), 2 ** 63, 9.2e18, 2 ** 53 - 1, 1e30]) {
      for (const i of [0, 7]) {
        const s = choiceSeed(seed, i);
        expect(Number.isSafeInteger(s) && s >= 0 && s < 2 ** 53).toBe(true);
      }
    }
    expect(choiceSeed(-5, 0)).not.toBe(choiceSeed(5, 0));
    expect(choiceSeed(2 ** 53 - 1, 1)).toBe(0);
  });
});

describe('the echoed prompt', () => {
  const baby = loadTokenizer(new Uint8Array(readFileSync(models.babyllama105.tokenizer)), 'llama2c');
  const completion = (prompt: string): ParsedRequest => ({ kind: 'completion', body: { model: 'default', prompt } as CompletionRequest });

  it('is the prompt as given, unless its listed tokens do not join to it: then as the model saw it, so text_offset indexes it', () => {
    // babyllama105 has no newline nor emoji: each is <unk>, whose text is not the character.
    const prompt = 'Hi 😀\nthere';
    const ids = baby.encode(prompt, { bos: true });
    expect(echoText(completion(prompt), ids, baby, false)).toBe(prompt);
    const seen = echoText(completion(prompt), ids, baby, true);
    const decoder = baby.createDecoder();
    expect(ids.map((id) => decoder.push(id)).join('')).toBe(seen);
    expect(seen).not.toBe(prompt);
    // A prompt the tokenizer round-trips comes back as given either way.
    expect(echoText(completion('Hi there'), baby.encode('Hi there', { bos: true }), baby, true)).toBe('Hi there');
  });
});
