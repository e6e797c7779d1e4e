import { describe, expect, it } from 'vitest';
import { logSumExp, rankOf, topLogprobs } from '../../../gpu-pool/runtime/logprobs';

describe('log-probabilities of a position', () => {
  it('normalise the logits, and list the most likely tokens first (ties: lower id first)', () => {
    const logits = Float32Array.from([1, 3, 2, 3, -1, 0.5]);
    const lse = logSumExp(logits);
    expect([...logits].reduce((s, x) => s + Math.exp(x - lse), 0)).toBeCloseTo(1, 12);
    const top = topLogprobs(logits, lse, 3);
    expect(top.map(([id]) => id)).toEqual([1, 3, 2]);
    expect(top[0][1]).toBeCloseTo(3 - lse, 6);
    expect(topLogprobs(logits, lse, 0)).toEqual([]);
    expect(topLogprobs(logits, lse, 10).map(([id]) => id)).toEqual([1, 3, 2, 0, 5, 4]);
  });

  it("rank a token as vLLM does: how many are at least as likely, itself and its ties included", () => {
    const logits = Float32Array.from([1, 3, 2, 3, -1, 0.5]);
    expect([0, 1, 2, 3, 4, 5].map((t) => rankOf(logits, t))).toEqual([4, 2, 3, 2, 6, 5]);
    expect(rankOf(Float32Array.from([7]), 0)).toBe(1);
  });

  it('stay finite for extreme logits', () => {
    const logits = Float32Array.from([1000, -1000, 999]);
    const lse = logSumExp(logits);
    expect(Number.isFinite(lse)).toBe(true);
    expect(logits[0] - lse).toBeCloseTo(-Math.log(1 + Math.exp(-1)), 6);
  });
});
