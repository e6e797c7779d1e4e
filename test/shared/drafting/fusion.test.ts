import { describe, expect, it } from 'vitest';
import { pathTokens, validateDraftTree } from '../../../shared/drafting/draft-tree';
import { addDatastoreCandidates } from '../../../shared/drafting/datastore-source';
import { TreeFuser, defaultFusionWeights } from '../../../shared/drafting/fusion';
import { seededRandom } from './random-tokens';
import { GumbelNoise } from '../../../shared/sampling/gumbel-noise';

describe('TreeFuser', () => {
  it('never exceeds the budget or the per-node cap, and every path is a candidate path of some source', () => {
    const rand = seededRandom(31);
    const fuser = new TreeFuser(4096);
    for (let trial = 0; trial < 200; trial++) {
      fuser.begin();
      // Each source proposes random paths with probabilities shrinking along them.
      const candidates = new Set<string>();
      const nSources = 1 + Math.floor(rand() * 3);
      for (let s = 1; s <= nSources; s++) {
        for (let p = 0; p < 1 + Math.floor(rand() * 12); p++) {
          let node = 0;
          let prob = rand();
          const path: number[] = [];
          for (let d = 0; d < 1 + Math.floor(rand() * 6); d++) {
            const tok = Math.floor(rand() * 5);
            path.push(tok);
            candidates.add(path.join(','));
            node = fuser.add(node, tok, prob, s);
            prob *= rand();
          }
        }
      }
      const budget = Math.floor(rand() * 20);
      const maxChildren = 1 + Math.floor(rand() * 4);
      const tree = fuser.build(77, budget, { ...defaultFusionWeights, maxChildren, combine: rand() < 0.5 ? 'max' : 'noisy-or' });
      expect(validateDraftTree(tree)).toBeNull();
      expect(tree.size - 1).toBeLessThanOrEqual(budget);
      expect(tree.tokens[0]).toBe(77);
      const kids = new Map<number, number>();
      for (let i = 1; i < tree.size; i++) {
        kids.set(tree.parents[i], (kids.get(tree.parents[i]) ?? 0) + 1);
        expect(candidates.has(pathTokens(tree, i).join(','))).toBe(true);
        expect(tree.probs[i]).toBeLessThanOrEqual(tree.probs[tree.parents[i]] + 1e-6);
      }
      for (const n of kids.values()) expect(n).toBeLessThanOrEqual(maxChildren);
      // Identical tokens under one parent are merged.
      const seen = new Set<string>();
      for (let i = 1; i < tree.size; i++) {
        const key = `${tree.parents[i]}:${tree.tokens[i]}`;
        expect(seen.has(key)).toBe(false);
        seen.add(key);
      }
      // The budget is used when the candidates allow it (before the cap bites).
      if (maxChildren >= 5) expect(tree.size - 1).toBe(Math.min(budget, candidates.size));
    }
  });

  it('picks the most probable nodes and combines agreeing sources', () => {
    const fuser = new TreeFuser(64);
    fuser.begin();
    const a = fuser.add(0, 10, 0.5, 2);
    fuser.add(a, 11, 0.4, 2);
    fuser.add(0, 20, 0.45, 3);
    fuser.add(0, 10, 0.3, 3); // a second source agrees on 10
    const tree = fuser.build(1, 2, { ...defaultFusionWeights, combine: 'noisy-or' });
    expect(tree.size).toBe(3);
    expect(pathTokens(tree, 1)).toEqual([10]);
    expect(tree.probs[1]).toBeCloseTo(1 - 0.5 * 0.7, 5);
    expect(pathTokens(tree, 2)).toEqual([20]);
    expect(tree.sources[1]).toBe(2);
    const maxTree = fuser.build(1, 2, { ...defaultFusionWeights, combine: 'max' });
    expect(pathTokens(maxTree, 2)).toEqual([20]);
    expect(maxTree.probs[1]).toBeCloseTo(0.5, 5);
  });
  it('builds the same datastore candidates whatever the order of the matches', () => {
    // The datastore source reuses the previous match's trie path for a shared
    // prefix; shuffled matches (little sharing) must give the same candidates.
    const rand = seededRandom(47);
    const fuser = new TreeFuser(2048);
    const candidates = (order: number[], found: { count: number; width: number; tokens: Int32Array; matchLengths: Uint8Array }): string[] => {
      const tokens = new Int32Array(found.tokens.length);
      const lengths = new Uint8Array(found.count);
      order.forEach((m, i) => {
        tokens.set(found.tokens.subarray(m * found.width, (m + 1) * found.width), i * found.width);
        lengths[i] = found.matchLengths[m];
      });
      fuser.begin();
      addDatastoreCandidates(fuser, { ...found, tokens, matchLengths: lengths }, defaultFusionWeights, 1000);
      const tree = fuser.build(0, 1000, { ...defaultFusionWeights, maxChildren: 1000 });
      const out: string[] = [];
      for (let i = 1; i < tree.size; i++) out.push(`${pathTokens(tree, i).join(',')}@${tree.probs[i].toFixed(5)}`);
      return out.sort();
    };
    for (let trial = 0; trial < 50; trial++) {
      const width = 1 + Math.floor(rand() * 8);
      const count = 1 + Math.floor(rand() * 100);
      const tokens = new Int32Array(count * width);
      for (let m = 0; m < count; m++) {
        let end = width;
        if (rand() < 0.2) end = Math.floor(rand() * width);
        for (let j = 0; j < width; j++) tokens[m * width + j] = j < end ? Math.floor(rand() * 3) : -1;
      }
      const found = { count, width, tokens, matchLengths: Uint8Array.from({ length: count }, () => 1 + Math.floor(rand() * 8)) };
      const identity = Array.from({ length: count }, (_, i) => i);
      const sorted = [...identity].sort((a, b) => {
        for (let j = 0; j < width; j++) if (tokens[a * width + j] !== tokens[b * width + j]) return tokens[a * width + j] - tokens[b * width + j];
        return 0;
      });
      const shuffled = [...identity].sort(() => rand() - 0.5);
      const want = candidates(identity, found);
      expect(candidates(sorted, found)).toEqual(want);
      expect(candidates(shuffled, found)).toEqual(want);
    }
  });

  it('for a sampled request, puts its most trusted node where the sampling noise says the model will go', () => {
    const fuser = new TreeFuser(256);
    // One source, root children: token 10 (q 0.5), 11 (0.3), 12 (0.2).
    const q = new Map([[10, 0.5], [11, 0.3], [12, 0.2]]);
    const winners = new Set<number>();
    for (let seed = 0; seed < 40; seed++) {
      fuser.begin();
      for (const [tok, p] of q) fuser.add(0, tok, p, 1);
      const noise = new GumbelNoise(seed);
      const tree = fuser.build(7, 3, defaultFusionWeights, undefined, { noise, temperature: 1, firstIndex: 20 });
      expect(validateDraftTree(tree)).toBeNull();
      // The node with the largest estimate (0.5) is the Gumbel-max winner of log q + g at index 20.
      let top = 1;
      for (let i = 2; i < tree.size; i++) if (tree.probs[i] > tree.probs[top]) top = i;
      expect(tree.probs[top]).toBeCloseTo(0.5, 5);
      let want = -1;
      let best = -Infinity;
      for (const [tok, p] of q) {
        const score = Math.log(p) + noise.gumbel(20, tok);
        if (score > best) [best, want] = [score, tok];
      }
      expect(tree.tokens[top]).toBe(want);
      winners.add(want);
      // The estimates themselves are the uncoupled ones, handed out in a new order.
      expect([...tree.probs.subarray(1, tree.size)].map((x) => +x.toFixed(3)).sort()).toEqual([0.2, 0.3, 0.5]);
    }
    // Not always the most frequent token: that is the point.
    expect(winners.size).toBeGreaterThan(1);
  });
});
