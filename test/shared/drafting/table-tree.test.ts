import { describe, expect, it } from 'vitest';
import { countingTable } from './counting-table';
import { COUPLED_SPREAD } from '../../../shared/drafting/coupled-rank';
import { createDraftTree, pathTokens, validateDraftTree } from '../../../shared/drafting/draft-tree';
import { MAX_TREE_DEPTH, draftTableTree } from '../../../shared/drafting/table-tree';
import { GumbelNoise } from '../../../shared/sampling/gumbel-noise';

/** The chance the softmax over the spread gives the first of two scores (the table's q sums to 1 here: no rest). */
const shareOf = (a: number, b: number): number => 1 / (1 + Math.exp((b - a) / COUPLED_SPREAD));

describe('draftTableTree', () => {
  it('drafts best first: a valid tree, no node likelier than its parent or than any node before it, no deeper than the table keys', () => {
    const table = countingTable();
    const tree = createDraftTree(64);
    for (let seed = 0; seed < 50; seed++) {
      const n = draftTableTree(table, [7, 1, 2], 3, 40, 6, tree, { noise: new GumbelNoise(seed), temperature: 1 });
      expect(n).toBe(tree.size - 1);
      expect(n).toBeLessThanOrEqual(6);
      expect(validateDraftTree(tree)).toBeNull();
      expect(tree.tokens[0]).toBe(2);
      for (let i = 1; i < tree.size; i++) {
        expect(tree.probs[i]).toBeLessThanOrEqual(tree.probs[tree.parents[i]] + 1e-9);
        expect(tree.probs[i]).toBeLessThanOrEqual(tree.probs[i - 1] + 1e-9);
        expect(tree.depths[i]).toBeLessThanOrEqual(MAX_TREE_DEPTH);
        // Every path is the text or the runner-up 9 after some prefix of it (9 has no continuation in the table).
        const path = pathTokens(tree, i);
        const nines = path.filter((t) => t === 9).length;
        expect(nines === 0 ? path : path.slice(0, -1)).toEqual([3, 4, 5, 6].slice(0, path.length - nines));
      }
    }
    // With room for everything: the four text tokens and a 9 beside each (nothing follows 5 6).
    expect(draftTableTree(table, [1, 2], 2, 10, 20, tree, { noise: new GumbelNoise(1), temperature: 1 })).toBe(8);
    expect(draftTableTree(table, [11, 12], 2, 2, 4, tree, { noise: new GumbelNoise(1), temperature: 1 })).toBe(0);
    expect(draftTableTree(table, [1, 2], 2, 2, 0, tree, { noise: new GumbelNoise(1), temperature: 1 })).toBe(0);
  });

  it("puts first the candidate with the best log q / T + g at its index (the verifier's sample where q is the model's), with the chance its lead earns", () => {
    const table = countingTable();
    const tree = createDraftTree(64);
    let close = 0;
    let far = 0;
    for (let seed = 0; seed < 300; seed++) {
      const noise = new GumbelNoise(seed);
      const T = 0.9;
      const position = 30 + (seed % 7);
      draftTableTree(table, [1, 2], 2, position, 8, tree, { noise, temperature: T });
      // Depth 1 continues 1 2: candidates 3 (0.7) and 9 (0.3), drawn at index `position`.
      const s3 = Math.log(0.7) / T + noise.gumbel(position, 3);
      const s9 = Math.log(0.3) / T + noise.gumbel(position, 9);
      const [best, other] = s3 >= s9 ? [3, 9] : [9, 3];
      expect(tree.tokens[1], `seed ${seed}`).toBe(best);
      expect(tree.depths[1]).toBe(1);
      expect(tree.probs[1]).toBeCloseTo(shareOf(Math.max(s3, s9), Math.min(s3, s9)), 5);
      const lead = Math.abs(s3 - s9);
      const runnerUp = Array.from({ length: tree.size - 1 }, (_, i) => i + 1).find((i) => tree.depths[i] === 1 && tree.tokens[i] === other);
      if (lead < 0.2) {
        // Nearly a coin toss: the runner-up is drafted too, with the rest of the chance.
        close++;
        expect(runnerUp, `seed ${seed}`).toBeDefined();
        expect(tree.probs[1]).toBeLessThan(0.6);
        expect(tree.probs[runnerUp!]).toBeGreaterThan(0.4);
        expect(tree.probs[runnerUp!]).toBeCloseTo(1 - tree.probs[1], 5);
      } else if (lead > 5) {
        // A pick this sure is trusted: the tree goes down the text first.
        far++;
        expect(tree.probs[1]).toBeGreaterThan(0.99);
        expect(tree.depths[2]).toBe(2);
      }
    }
    expect(close).toBeGreaterThan(5);
    expect(far).toBeGreaterThan(5);
  });
});
