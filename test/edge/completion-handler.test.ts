import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { echoText, type ParsedRequest } from '../../edge/completion-handler';
import type { CompletionRequest } from '../../edge/request-schema';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import { models } from '../support/shared-data';

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
