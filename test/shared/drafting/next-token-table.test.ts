import { describe, expect, it } from 'vitest';
import { logitsOf as vocabLogits } from './logits-of';
import { Datastore } from '../../../gpu-pool/datastore/datastore';
import { validateDraftTree } from '../../../shared/drafting/draft-tree';
import { NEXT_TOKEN_CANDIDATES, NextTokenTable, NextTokenTableBuilder } from '../../../shared/drafting/next-token-table';
import { RequestDrafter } from '../../../shared/drafting/request-drafter';
import { GumbelNoise } from '../../../shared/sampling/gumbel-noise';

const V = 16;

const logitsOf = (probs: Record<number, number>): Float32Array => vocabLogits(probs, V);

describe('NextTokenTableBuilder', () => {
  it("averages the model's distributions over a context's positions, best candidates first", () => {
    const b = new NextTokenTableBuilder(V);
    b.add([1, 5, 6, 7], 4, logitsOf({ 3: 0.8, 4: 0.2 }));
    b.add([2, 5, 6, 7], 4, logitsOf({ 3: 0.4, 4: 0.6 }));
    const table = b.build();
    // The 3-token context 5,6,7 was seen twice: its entry is the mean.
    const e = table.lookup([9, 9, 5, 6, 7], 5);
    expect(e).toBeGreaterThanOrEqual(0);
    expect(table.tokenAt(e, 0)).toBe(3);
    expect(table.probAt(e, 0)).toBeCloseTo(0.6, 4);
    expect(table.tokenAt(e, 1)).toBe(4);
    expect(table.probAt(e, 1)).toBeCloseTo(0.4, 4);
    expect(b.added).toBe(2);
  });

  it('takes any starting size, growing as it fills (a size not a power of two once probed a few slots for ever)', () => {
    const seq = [1, 2, 0, 3, 4, 2, 5, 6, 7, 1, 2, 0];
    for (const initial of [0, 1, 5, 9, 10, 16]) {
      const b = new NextTokenTableBuilder(V, initial);
      for (let end = 1; end <= seq.length; end++) b.add(seq, end, logitsOf({ [seq[end] ?? 0]: 0.9 }));
      const table = b.build();
      expect(b.added, String(initial)).toBeGreaterThan(0);
      expect(table.tokenAt(table.lookup([1, 2], 2), 0), String(initial)).toBe(0);
    }
  });

  it('answers with the longest context kept, and leaves out 3+ token contexts seen once', () => {
    const b = new NextTokenTableBuilder(V);
    // 4-token context 1,5,6,7 twice (kept) → token 3; 2-token context 6,7 also from 2,8,6,7 once.
    b.add([1, 5, 6, 7], 4, logitsOf({ 3: 0.9, 4: 0.1 }));
    b.add([1, 5, 6, 7], 4, logitsOf({ 3: 0.9, 4: 0.1 }));
    b.add([2, 8, 6, 7], 4, logitsOf({ 10: 0.99 }));
    const table = b.build();
    const long = table.lookup([1, 5, 6, 7], 4);
    expect(table.tokenAt(long, 0)).toBe(3);
    expect(table.probAt(long, 0)).toBeCloseTo(0.9, 4);
    // 2,8,6,7 was seen once: its 3- and 4-token contexts are gone, so the 2-token one (6,7: all three positions) answers.
    const short = table.lookup([2, 8, 6, 7], 4);
    expect(short).toBeGreaterThanOrEqual(0);
    expect(short).not.toBe(long);
    expect(table.probAt(short, 0)).toBeCloseTo(0.6, 4); // token 3: (0.9 + 0.9 + 0) / 3
    expect(table.tokenAt(short, 1)).toBe(10);
    expect(table.lastOrder).toBe(2);
    expect(table.lookup([1, 5, 6, 7], 4)).toBe(long);
    expect(table.lastOrder).toBe(4);
    // Bounded (a child of a node matched at 2 tokens can match at most 3): the 3-token context 5,6,7.
    expect(table.orderAbove(2)).toBe(3);
    const bounded = table.lookup([1, 5, 6, 7], 4, table.orderAbove(2));
    expect(table.lastOrder).toBe(3);
    expect(bounded).not.toBe(long);
    expect(table.tokenAt(bounded, 0)).toBe(3);
    expect(table.orderAbove(8)).toBe(8);
    // A context never seen: none.
    expect(table.lookup([11, 12], 2)).toBe(-1);
    expect(table.lastOrder).toBe(0);
    // Too short a context for any order.
    expect(table.lookup([7], 1)).toBe(-1);
  });

  it('keeps at most NEXT_TOKEN_CANDIDATES tokens, the likeliest', () => {
    const b = new NextTokenTableBuilder(V);
    const probs: Record<number, number> = {};
    for (let t = 0; t < V; t++) probs[t] = (t + 1) / ((V * (V + 1)) / 2);
    b.add([4, 5], 2, logitsOf(probs));
    const table = b.build();
    const e = table.lookup([4, 5], 2);
    const got: number[] = [];
    for (let c = 0; c < table.candidates; c++) got.push(table.tokenAt(e, c));
    expect(table.candidates).toBe(NEXT_TOKEN_CANDIDATES);
    expect(got).toEqual(Array.from({ length: NEXT_TOKEN_CANDIDATES }, (_, i) => V - 1 - i));
  });

  it('grows past its initial size and still finds every context', () => {
    const b = new NextTokenTableBuilder(V, 4);
    for (let a = 0; a < V; a++) for (let c = 0; c < V; c++) b.add([a, c], 2, logitsOf({ [(a + c) % V]: 0.9 }));
    const table = b.build();
    expect(table.size).toBe(V * V);
    for (let a = 0; a < V; a++) for (let c = 0; c < V; c++) expect(table.tokenAt(table.lookup([a, c], 2), 0)).toBe((a + c) % V);
  });

  it('rejects logits shorter than the vocabulary, and arrays that disagree', () => {
    expect(() => new NextTokenTableBuilder(V).add([1, 2], 2, new Float32Array(3))).toThrow(RangeError);
    const t = new NextTokenTableBuilder(V).build();
    expect(() => new NextTokenTable({ ...t.arrays, keysB: new Uint32Array(1) })).toThrow(RangeError);
  });
});

describe('the next-token table as a draft source', () => {
  /** A table over tokens 2..15 where after any two tokens the model says 3 (0.5), 4 (0.3), 5 (0.2). */
  function table(): NextTokenTable {
    const b = new NextTokenTableBuilder(V);
    for (let a = 1; a < V; a++) for (let c = 1; c < V; c++) b.add([a, c], 2, logitsOf({ 3: 0.5, 4: 0.3, 5: 0.2 }));
    return b.build();
  }
  const datastore = Datastore.fromDocuments([[1, 2, 3, 4, 5, 6]], { indexer: 'inline' });

  it("puts the token the sampling noise favours first, and keeps every first-level candidate once the budget allows", () => {
    const nextTokens = table();
    for (let seed = 1; seed <= 30; seed++) {
      const prompt = [1, 7, 8];
      const d = new RequestDrafter({ method: 'sssd', promptIds: prompt, datastore, nextTokens, sampling: { seed, temperature: 1 } });
      const tree = d.draft(12);
      expect(validateDraftTree(tree)).toBeNull();
      // The model samples index 3 as argmax of log p + g; the drafter's first child is that token.
      const noise = new GumbelNoise(seed);
      const scores = [3, 4, 5].map((t, i) => Math.log([0.5, 0.3, 0.2][i]) + noise.gumbel(prompt.length, t));
      const sample = [3, 4, 5][scores.indexOf(Math.max(...scores))];
      const firstLevel: number[] = [];
      for (let i = 1; i < tree.size; i++) if (tree.parents[i] === 0) firstLevel.push(tree.tokens[i]);
      expect(firstLevel[0]).toBe(sample);
      expect([...firstLevel].sort()).toEqual([3, 4, 5]);
    }
  });

  it('follows the noise when it favours an unlikely token, instead of a deep chain under the likeliest', () => {
    // After any two tokens: 3 (0.9), 4 (0.06), 5 (0.04). A budget of 4 has room for the chain 3,3,3,3
    // (path probabilities 0.9 … 0.66, all above 0.06) and nothing else, unless the expansion is coupled.
    const b = new NextTokenTableBuilder(V);
    for (let a = 1; a < V; a++) for (let c = 1; c < V; c++) b.add([a, c], 2, logitsOf({ 3: 0.9, 4: 0.06, 5: 0.04 }));
    const nextTokens = b.build();
    const prompt = [1, 7, 8];
    let unlikely = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const noise = new GumbelNoise(seed);
      const scores = [0.9, 0.06, 0.04].map((p, i) => Math.log(p) + noise.gumbel(prompt.length, 3 + i));
      const sample = 3 + scores.indexOf(Math.max(...scores));
      if (sample === 3) continue;
      unlikely++;
      const d = new RequestDrafter({ method: 'sssd', promptIds: prompt, datastore, nextTokens, sampling: { seed, temperature: 1 } });
      const tree = d.draft(4);
      expect(tree.parents[1]).toBe(0);
      expect(tree.tokens[1]).toBe(sample);
    }
    expect(unlikely).toBeGreaterThan(10);
  });

  it('drafts for sampled requests only: a greedy request keeps the datastore', () => {
    const nextTokens = table();
    const greedy = new RequestDrafter({ method: 'sssd', promptIds: [1, 2, 3], datastore, nextTokens });
    const tree = greedy.draft(4);
    // The datastore continues 1,2,3 with 4,5,6; the table would have said 3 first.
    expect(tree.tokens[1]).toBe(4);
    const sampled = new RequestDrafter({ method: 'sssd', promptIds: [1, 2, 3], datastore, nextTokens, sampling: { seed: 5, temperature: 0.7 } });
    expect(sampled.draft(4).size).toBe(5);
  });
});
