import { describe, expect, it } from 'vitest';
import { countingTable } from './counting-table';
import { createDraftTree, validateDraftTree } from '../../../shared/drafting/draft-tree';
import { MAX_CHAIN, draftTableChain } from '../../../shared/drafting/table-chain';
import { GumbelNoise } from '../../../shared/sampling/gumbel-noise';

describe('draftTableChain', () => {
  it("greedy: follows the table's best token from the context, one node per depth", () => {
    const table = countingTable();
    const tree = createDraftTree(MAX_CHAIN + 1);
    const n = draftTableChain(table, [7, 1, 2], 3, 40, 8, tree);
    // 3 4 5 6, then the table knows nothing after 5 6.
    expect(n).toBe(4);
    expect(validateDraftTree(tree)).toBeNull();
    expect(Array.from(tree.tokens.subarray(0, tree.size))).toEqual([2, 3, 4, 5, 6]);
    for (let d = 1; d < tree.size; d++) {
      expect(tree.parents[d]).toBe(d - 1);
      expect(tree.depths[d]).toBe(d);
      // Path products of the best candidate's mean probability.
      expect(tree.probs[d]).toBeCloseTo(0.7 ** d, 4);
    }
  });

  it('stops at the nodes asked for, and drafts nothing for a context the table does not hold', () => {
    const table = countingTable();
    const tree = createDraftTree(MAX_CHAIN + 1);
    expect(draftTableChain(table, [1, 2], 2, 2, 2, tree)).toBe(2);
    expect(Array.from(tree.tokens.subarray(1, tree.size))).toEqual([3, 4]);
    expect(draftTableChain(table, [11, 12], 2, 2, 4, tree)).toBe(0);
    expect(tree.size).toBe(1);
    expect(tree.tokens[0]).toBe(12);
    expect(draftTableChain(table, [1, 2], 2, 2, 0, tree)).toBe(0);
    expect(draftTableChain(table, [], 0, 0, 4, tree)).toBe(0);
  });

  it("coupled: each node is the candidate with the best log q / T + g at its sequence index, the verifier's sample where q is the model's", () => {
    const table = countingTable();
    const tree = createDraftTree(MAX_CHAIN + 1);
    let runnerUps = 0;
    for (let seed = 0; seed < 200; seed++) {
      const noise = new GumbelNoise(seed);
      const T = 0.9;
      const position = 30 + (seed % 7);
      const n = draftTableChain(table, [1, 2], 2, position, 4, tree, { noise, temperature: T });
      expect(n).toBeGreaterThanOrEqual(1);
      // Depth 1 continues 1 2: candidates 3 (0.7) and 9 (0.3), drawn at index `position`.
      const score = (t: number, q: number): number => Math.log(q) / T + noise.gumbel(position, t);
      const want = score(3, 0.7) >= score(9, 0.3) ? 3 : 9;
      expect(tree.tokens[1], `seed ${seed}`).toBe(want);
      if (want === 9) runnerUps++;
      // The estimate is the entry's largest q, whichever candidate was picked.
      expect(tree.probs[1]).toBeCloseTo(0.7, 4);
    }
    // The noise does pick the runner-up now and then (~30% of draws at T near 1).
    expect(runnerUps).toBeGreaterThan(20);
    expect(runnerUps).toBeLessThan(120);
  });
});
