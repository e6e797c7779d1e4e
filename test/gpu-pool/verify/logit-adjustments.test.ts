import { describe, expect, it } from 'vitest';
import { hasLogitAdjustments, LogitAdjustments } from '../../../gpu-pool/verify/logit-adjustments';

const V = 8;
const logits = Float32Array.from([2, -1, 0.5, 3, -2, 1, 0, 4]);

describe('logit adjustments', () => {
  it("follow OpenAI's frequency and presence rules and vLLM's repetition rule", () => {
    const p = new LogitAdjustments({ frequencyPenalty: 0.5, presencePenalty: 0.25, repetitionPenalty: 2 }, V, [1, 3]);
    p.observe(3);
    p.observe(3);
    p.observe(4);
    const out = p.apply(logits, [], [], 0);
    // Token 3: in the prompt and generated twice: 3 / 2 - 0.5·2 - 0.25.
    expect(out[3]).toBeCloseTo(3 / 2 - 1 - 0.25, 6);
    // Token 1: prompt only, negative: × 2, no frequency or presence.
    expect(out[1]).toBeCloseTo(-2, 6);
    // Token 4: generated once, negative: -2 · 2 - 0.5 - 0.25.
    expect(out[4]).toBeCloseTo(-4.75, 6);
    // Untouched tokens, and the input left as it was.
    for (const t of [0, 2, 5, 6, 7]) expect(out[t]).toBe(logits[t]);
    expect(logits[3]).toBe(3);
  });

  it("score a node from its path exactly as if the path's tokens had been generated", () => {
    const settings = { frequencyPenalty: 0.7, presencePenalty: -0.3, repetitionPenalty: 1.3 };
    const prompt = [2, 5];
    const output = [5, 7, 7];
    // A row: root, then tree nodes; the path to the node under test goes through rows 2, 3 and 5.
    const rowTokens = [0, 6, 7, 6, 1, 2];
    const path = Int32Array.from([2, 3, 5, 0]);
    const viaPath = new LogitAdjustments(settings, V, prompt);
    for (const t of output) viaPath.observe(t);
    const sequential = new LogitAdjustments(settings, V, prompt);
    for (const t of [...output, 7, 6, 2]) sequential.observe(t);
    const a = Array.from(viaPath.apply(logits, rowTokens, path, 3));
    const b = Array.from(sequential.apply(logits, rowTokens, path, 0));
    a.forEach((x, i) => expect(x).toBeCloseTo(b[i], 6));
    // And the path's tokens are not kept: the next node starts from the output again.
    const again = Array.from(viaPath.apply(logits, rowTokens, path, 0));
    const fresh = new LogitAdjustments(settings, V, prompt);
    for (const t of output) fresh.observe(t);
    expect(again).toEqual(Array.from(fresh.apply(logits, rowTokens, path, 0)));
  });

  it('add the logit bias first, then penalise', () => {
    const p = new LogitAdjustments({ frequencyPenalty: 0, presencePenalty: 0, repetitionPenalty: 2, logitBias: { '3': -1, '6': 5 } }, V, [3]);
    const out = p.apply(logits, [], [], 0);
    // Token 3: (3 - 1) / 2, in the prompt; token 6: 0 + 5, no penalty.
    expect(out[3]).toBeCloseTo(1, 6);
    expect(out[6]).toBeCloseTo(5, 6);
    expect(() => new LogitAdjustments({ frequencyPenalty: 0, presencePenalty: 0, repetitionPenalty: 1, logitBias: { '8': 1 } }, V, [])).toThrow(/outside the vocabulary/);
  });

  it('are off at their neutral values', () => {
    expect(hasLogitAdjustments({ frequencyPenalty: 0, presencePenalty: 0, repetitionPenalty: 1 })).toBe(false);
    expect(hasLogitAdjustments({ frequencyPenalty: 0, presencePenalty: 0.1, repetitionPenalty: 1 })).toBe(true);
    expect(hasLogitAdjustments({ frequencyPenalty: 0, presencePenalty: 0, repetitionPenalty: 1, logitBias: {} })).toBe(false);
    expect(hasLogitAdjustments({ frequencyPenalty: 0, presencePenalty: 0, repetitionPenalty: 1, logitBias: { '2': 1 } })).toBe(true);
  });

  describe("vLLM's bad words", () => {
    const neutral = { frequencyPenalty: 0, presencePenalty: 0, repetitionPenalty: 1 };
    const masked = (out: Float32Array) => [...out.keys()].filter((t) => out[t] === -Infinity);
    const banning = (badWords: number[][], output: number[]) => {
      const a = new LogitAdjustments(neutral, V, [], { ids: [], minTokens: 0, badWords });
      for (const t of output) a.observe(t);
      return a;
    };

    it('turn the adjustments on', () => {
      expect(hasLogitAdjustments(neutral, { ids: [], minTokens: 0, badWords: [[3]] })).toBe(true);
      expect(hasLogitAdjustments(neutral, { ids: [], minTokens: 0, badWords: [] })).toBe(false);
    });

    it('mask a one-token word at every node, and a longer one only after its other tokens', () => {
      const a = banning([[6], [2, 5, 7]], [1, 2]);
      // The output ends in 2, not 2 5: only the one-token word.
      expect(masked(a.apply(logits, [], [], 0))).toEqual([6]);
      a.observe(5);
      expect(masked(a.apply(logits, [], [], 0))).toEqual([6, 7]);
      a.observe(4);
      expect(masked(a.apply(logits, [], [], 0))).toEqual([6]);
      expect(logits[7]).toBe(4);
    });

    it('match the output, never the prompt', () => {
      const a = new LogitAdjustments(neutral, V, [2, 5], { ids: [], minTokens: 0, badWords: [[2, 5, 7]] });
      // No copy where no word matches: the logits themselves.
      expect(a.apply(logits, [], [], 0)).toBe(logits);
      a.observe(2);
      expect(a.apply(logits, [], [], 0)).toBe(logits);
      a.observe(5);
      expect(masked(a.apply(logits, [], [], 0))).toEqual([7]);
    });

    it("read a node's history as the output then the draft tokens on its path", () => {
      // Row: root, then drafts; the node under test follows rows 3 then 1 (tokens 2, then 5).
      const rowTokens = [0, 5, 9, 2];
      const path = Int32Array.from([3, 1]);
      const a = banning([[1, 2, 5, 7], [2, 6]], [4, 1]);
      // History 4 1 | 2 5: ends in 1 2 5, so 7 is masked; at depth 1 (history 4 1 2) word [2, 6] bans 6.
      expect(masked(a.apply(logits, rowTokens, path, 2))).toEqual([7]);
      expect(masked(a.apply(logits, rowTokens, path, 1))).toEqual([6]);
      expect(a.apply(logits, rowTokens, path, 0)).toBe(logits);
      // The same as the drafted tokens generated, node by node.
      const sequential = banning([[1, 2, 5, 7], [2, 6]], [4, 1, 2, 5]);
      expect(masked(sequential.apply(logits, [], [], 0))).toEqual([7]);
    });

    it("skip a word longer than the history and the next token, and keep only its longest word's worth of output", () => {
      const a = banning([[3, 3, 3, 5]], [3, 3]);
      expect(a.apply(logits, [], [], 0)).toBe(logits);
      a.observe(3);
      expect(masked(a.apply(logits, [], [], 0))).toEqual([5]);
      for (const t of [3, 3, 4, 3, 3, 3]) a.observe(t);
      expect(masked(a.apply(logits, [], [], 0))).toEqual([5]);
      a.observe(4);
      expect(a.apply(logits, [], [], 0)).toBe(logits);
      expect(() => banning([[2, V]], [])).toThrow(/outside the vocabulary/);
    });

    it('combine with the other adjustments', () => {
      const a = new LogitAdjustments({ ...neutral, logitBias: { '6': 100 } }, V, [], { ids: [], minTokens: 0, badWords: [[6]] });
      expect(a.apply(logits, [], [], 0)[6]).toBe(-Infinity);
    });
  });
});
