import { describe, expect, it } from 'vitest';
import { pathTokens } from '../../../shared/drafting/draft-tree';
import { PldProposer } from '../../../shared/drafting/pld-proposer';
import { TokenBuffer } from '../../../shared/drafting/token-buffer';
import { seededRandom, tokenStream } from './random-tokens';

/** Reference: vLLM-style prompt lookup, written the obvious way. */
function referencePld(tokens: number[], budget: number, maxN = 4, minN = 1): number[] {
  const L = tokens.length;
  for (let n = Math.min(maxN, L - 1); n >= minN; n--) {
    const suffix = tokens.slice(L - n).join(',');
    for (let i = L - n - 1; i >= 0; i--) {
      if (tokens.slice(i, i + n).join(',') === suffix) return tokens.slice(i + n, Math.min(L, i + n + budget));
    }
  }
  return [];
}

describe('PldProposer', () => {
  it('proposes the chain after the last occurrence of the longest suffix n-gram, like the reference', () => {
    const rand = seededRandom(21);
    const p = new PldProposer();
    for (let trial = 0; trial < 300; trial++) {
      const tokens = tokenStream(rand, 1 + Math.floor(rand() * 120), 2 + Math.floor(rand() * 12));
      const budget = Math.floor(rand() * 12);
      const tree = p.propose(new TokenBuffer(tokens), budget);
      const chain = tree.size > 1 ? pathTokens(tree, tree.size - 1) : [];
      expect(chain).toEqual(referencePld(tokens, budget));
      expect(tree.size - 1).toBeLessThanOrEqual(budget);
      expect(tree.tokens[0]).toBe(tokens[tokens.length - 1]);
    }
  });

  it('prefers the longest n-gram over a later shorter one', () => {
    const tree = new PldProposer().propose(new TokenBuffer([1, 2, 3, 9, 8, 3, 7, 1, 2, 3]), 3);
    expect(pathTokens(tree, tree.size - 1)).toEqual([9, 8, 3]);
  });
});
