import { describe, expect, it } from 'vitest';
import { rankByScore, topCoupled } from '../../../shared/drafting/coupled-rank';
import { GumbelNoise } from '../../../shared/sampling/gumbel-noise';

describe('topCoupled', () => {
  it('picks the same best m, in the same order, as ranking every candidate by log q / T + g', () => {
    let x = 99;
    const rnd = (): number => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const rank = new Int32Array(16);
    const score = new Float64Array(16);
    const fullRank = new Int32Array(16);
    const fullScore = new Float64Array(16);
    let skippedSome = false;
    for (let trial = 0; trial < 3000; trial++) {
      const n = 1 + Math.floor(rnd() * 12);
      const offset = Math.floor(rnd() * 5);
      const tokens = new Int32Array(offset + n);
      const probs = new Float32Array(offset + n);
      // Probabilities largest first, some entries with a steep head (where draws get skipped), a few ties.
      let p = 0.3 + 0.7 * rnd();
      for (let c = 0; c < n; c++) {
        tokens[offset + c] = Math.floor(rnd() * 512);
        probs[offset + c] = p;
        if (rnd() > 0.1) p *= trial % 2 === 0 ? 0.2 * rnd() : rnd();
      }
      const noise = new GumbelNoise(trial);
      const invT = 1 / [0.3, 0.7, 1, 1.5][trial % 4];
      const index = trial % 37;
      const m = 1 + Math.floor(rnd() * n);
      for (let c = 0; c < n; c++) {
        fullScore[c] = Math.log(probs[offset + c]) * invT + noise.gumbel(index, tokens[offset + c]);
        fullRank[c] = c;
      }
      rankByScore(fullScore, fullRank, n);
      let drawn = 0;
      const counting = {
        uniform: (i: number, t: number) => {
          drawn++;
          return noise.uniform(i, t);
        },
        gumbel: (i: number, t: number) => {
          drawn++;
          return noise.gumbel(i, t);
        },
      } as unknown as GumbelNoise;
      topCoupled(tokens, probs, offset, n, m, invT, counting, index, rank, score);
      expect(Array.from(rank.subarray(0, m))).toEqual(Array.from(fullRank.subarray(0, m)));
      if (drawn < n) skippedSome = true;
    }
    // The point of it: some candidates' noise was never looked up.
    expect(skippedSome).toBe(true);
  });
});
