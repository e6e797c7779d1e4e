import { describe, expect, it } from 'vitest';
import { MAX_BAD_WORDS, MAX_BAD_WORDS_TOKENS, MAX_LOGIT_BIAS, MAX_PROMPT_IDS, PREDICTION_TOKENS, generateRequestSchema } from '../../shared/protocol';

const base = { id: 'g', promptIds: [1, 2], maxTokens: 4 };

function issue(body: unknown): string {
  const parsed = generateRequestSchema.safeParse(body);
  expect(parsed.success).toBe(false);
  return parsed.success ? '' : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
}

describe('the generate request', () => {
  it('refuses too many logitBias tokens by their count, before checking each, in milliseconds', () => {
    const ok = Object.fromEntries(Array.from({ length: MAX_LOGIT_BIAS }, (_, i) => [String(i), 1]));
    expect(generateRequestSchema.parse({ ...base, sampling: { logitBias: ok } }).sampling.logitBias).toEqual(ok);
    // A body of 580k keys held the pool's one thread for seconds while each key was checked.
    const huge = Object.fromEntries(Array.from({ length: 400_000 }, (_, i) => [String(100_000_000 + i), 1]));
    const started = performance.now();
    expect(issue({ ...base, sampling: { logitBias: huge } })).toMatch(/sampling\.logitBias: logitBias holds at most 1024 tokens/);
    expect(performance.now() - started).toBeLessThan(1000); // checked key by key: over 3 s here
    expect(issue({ ...base, sampling: { logitBias: { '01': 1 } } })).toMatch(/sampling\.logitBias\.01/);
    expect(issue({ ...base, sampling: { logitBias: [1] } })).toMatch(/sampling\.logitBias/);
    // A `__proto__` key (an own one, as JSON.parse makes it) is refused as any other key that is no token id, not dropped.
    expect(issue({ ...base, sampling: JSON.parse('{"logitBias": {"__proto__": 5}}') as object })).toMatch(/sampling\.logitBias: logitBias keys are token ids/);
  });

  it('names a bad token id briefly, whatever it is: a deeply nested array is a 400, not a stack overflow', () => {
    let deep: unknown = [1];
    for (let i = 0; i < 20_000; i++) deep = [deep];
    expect(issue({ ...base, promptIds: [1, deep] })).toMatch(/\[1\] = an array is not a token id/);
    expect(issue({ ...base, predictionIds: [{ a: 1 }] })).toMatch(/\[0\] = an object/);
    expect(issue({ ...base, promptIds: ['x'.repeat(100)] })).toMatch(/\[0\] = "x{40}" is not/);
    expect(issue({ ...base, promptIds: [-1] })).toMatch(/\[0\] = -1 is not/);
  });

  it('bounds the prompt and the predicted tokens by their count, before an id is read', () => {
    expect(issue({ ...base, promptIds: new Array(MAX_PROMPT_IDS + 1).fill('x') })).toBe(`promptIds: at most ${MAX_PROMPT_IDS} token ids, got ${MAX_PROMPT_IDS + 1}`);
    // Drafts read the first 8,192 predicted tokens: more is refused (review h174: 1M were checked one by one, then dropped).
    expect(generateRequestSchema.parse({ ...base, predictionIds: new Array(PREDICTION_TOKENS).fill(5) }).predictionIds).toHaveLength(PREDICTION_TOKENS);
    expect(issue({ ...base, predictionIds: new Array(PREDICTION_TOKENS + 1).fill('x') })).toBe(`predictionIds: at most ${PREDICTION_TOKENS} token ids, got ${PREDICTION_TOKENS + 1}`);
  });

  it("takes vLLM's bad words as token-id sequences, bounded in count and in ids, each id named where it is bad", () => {
    expect(generateRequestSchema.parse({ ...base, badWords: [[5], [6, 7]] }).badWords).toEqual([[5], [6, 7]]);
    expect(generateRequestSchema.parse(base).badWords).toBeUndefined();
    expect(issue({ ...base, badWords: Array.from({ length: MAX_BAD_WORDS + 1 }, () => [1]) })).toMatch(new RegExp(`badWords: at most ${MAX_BAD_WORDS} sequences`));
    expect(issue({ ...base, badWords: [new Array(MAX_BAD_WORDS_TOKENS).fill(1), [2]] })).toMatch(new RegExp(`badWords: at most ${MAX_BAD_WORDS_TOKENS} token ids in all`));
    expect(issue({ ...base, badWords: [[1], []] })).toMatch(/badWords: \[1\] = an array is not a non-empty array/);
    expect(issue({ ...base, badWords: [[1, -2]] })).toMatch(/badWords: \[0\]\[1\] = -2 is not a token id/);
    expect(issue({ ...base, badWords: [5] })).toMatch(/badWords: \[0\] = 5 is not/);
  });
});
