// vLLM's truncate_prompt_tokens: which tokens of a prompt are kept, and which values are refused.
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { promptTokensKept, truncatedPrompt } from '../../edge/prompt-truncation';

describe('truncate_prompt_tokens', () => {
  const BOS = 1;
  const ids = [BOS, 10, 11, 12, 13, 14];

  it('keeps the last k tokens; a text prompt keeps its BOS first (BOS and the last k - 1), as HF\'s left truncation keeps the special tokens it adds', () => {
    expect(truncatedPrompt(ids, 3, false)).toEqual([12, 13, 14]);
    expect(truncatedPrompt(ids, 3, true)).toEqual([BOS, 13, 14]);
    expect(truncatedPrompt(ids, 1, true)).toEqual([BOS]);
    expect(truncatedPrompt(ids, 1, false)).toEqual([14]);
    // A prompt of k tokens or fewer, or no k: whole.
    for (const keep of [6, 7, null]) for (const first of [true, false]) expect(truncatedPrompt(ids, keep, first)).toEqual(ids);
  });

  it('takes k up to the context less max_tokens, and -1 as that many; more is a 400 naming it', () => {
    expect(promptTokensKept(null, 512, 16, 'max_tokens')).toBeNull();
    expect(promptTokensKept(undefined, 512, 16, 'max_tokens')).toBeNull();
    expect(promptTokensKept(496, 512, 16, 'max_tokens')).toBe(496);
    expect(promptTokensKept(-1, 512, 16, 'max_tokens')).toBe(496);
    // No max_tokens (the rest of the context): none reserved, as vLLM's chat counts it.
    expect(promptTokensKept(-1, 512, null, 'max_tokens')).toBe(512);
    expect(promptTokensKept(512, 512, null, 'max_tokens')).toBe(512);
    // A reply of the whole context or more leaves no prompt: refused naming the reply's bound (as vLLM checks
    // max_tokens first), never an empty prompt, a truncation of "at most -88", nor the uncut prompt's length (review h156).
    for (const [asked, maxTokens] of [[-1, 512], [5, 600]]) {
      const refused = (): number | null => promptTokensKept(asked, 512, maxTokens, 'max_completion_tokens');
      expect(refused).toThrow(ApiError);
      try {
        refused();
      } catch (e) {
        expect((e as ApiError).toBody().error).toMatchObject({ param: 'max_completion_tokens', code: 'context_length_exceeded', message: expect.stringContaining(`is 512 tokens, and ${maxTokens} are asked for the reply (max_completion_tokens), which leaves no room for a prompt`) });
      }
    }
    let err: unknown;
    try {
      promptTokensKept(497, 512, 16, 'max_completion_tokens');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).toBody().error).toMatchObject({ param: 'truncate_prompt_tokens', code: 'invalid_value', message: expect.stringMatching(/less max_completion_tokens \(16\): at most 496/) });
  });
});

describe('truncation_side', () => {
  const BOS = 1;
  const ids = [BOS, 10, 11, 12, 13, 14];

  it('"right" keeps the first k tokens (BOS and the k - 1 after it, whoever added it); "left", the default, the last', () => {
    for (const keepFirst of [true, false]) {
      expect(truncatedPrompt(ids, 3, keepFirst, 'right')).toEqual([BOS, 10, 11]);
      expect(truncatedPrompt(ids, 6, keepFirst, 'right')).toEqual(ids);
      expect(truncatedPrompt(ids, null, keepFirst, 'right')).toEqual(ids);
    }
    expect(truncatedPrompt([20, 21, 22, 23], 2, false, 'right')).toEqual([20, 21]);
    expect(truncatedPrompt(ids, 3, true, 'left')).toEqual(truncatedPrompt(ids, 3, true));
  });
});
