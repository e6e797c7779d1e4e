import { describe, expect, it } from 'vitest';
import { COUPLED_SPREAD, coupledShares, rankByScore, topCoupled } from '../../../shared/drafting/coupled-rank';
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

describe('coupledShares', () => {
  it('gives a pick that leads by much nearly all the chance and two close picks about half each', () => {
    const share = new Float64Array(4);
    coupledShares(Float64Array.from([4, -2]), 2, 0, 1, share);
    expect(share[0]).toBeGreaterThan(0.99);
    coupledShares(Float64Array.from([1.1, 1]), 2, 0, 1, share);
    expect(share[0]).toBeGreaterThan(0.5);
    expect(share[0]).toBeLessThan(0.6);
    expect(share[0] + share[1]).toBeCloseTo(1, 9);
    // A softmax of the scores over the spread.
    coupledShares(Float64Array.from([2, 1, 0.5]), 3, 0, 1, share);
    const w = [2, 1, 0.5].map((x) => Math.exp(x / COUPLED_SPREAD));
    const z = w[0] + w[1] + w[2];
    for (let r = 0; r < 3; r++) expect(share[r]).toBeCloseTo(w[r] / z, 9);
  });

  it('lets the mass outside the ranked candidates compete, at the best score its tokens reach on average', () => {
    const share = new Float64Array(2);
    const score = Float64Array.from([Math.log(0.5) + 1, Math.log(0.2) - 1]);
    coupledShares(score, 2, 0, 1, share);
    const without = share[0] + share[1];
    coupledShares(score, 2, 0.3, 1, share);
    expect(without).toBeCloseTo(1, 9);
    // The rest (0.3) takes its share: every ranked one gets less, in the same proportion.
    const rest = Math.exp((Math.log(0.3) + 0.5772156649) / COUPLED_SPREAD);
    const z = Math.exp(score[0] / COUPLED_SPREAD) + Math.exp(score[1] / COUPLED_SPREAD) + rest;
    expect(share[0]).toBeCloseTo(Math.exp(score[0] / COUPLED_SPREAD) / z, 9);
    expect(share[1]).toBeCloseTo(Math.exp(score[1] / COUPLED_SPREAD) / z, 9);
    // At a lower temperature the rest's score scales as the candidates' log q / T do.
    coupledShares(score, 2, 0.3, 2, share);
    const zCold = Math.exp(score[0] / COUPLED_SPREAD) + Math.exp(score[1] / COUPLED_SPREAD) + Math.exp((2 * Math.log(0.3) + 0.5772156649) / COUPLED_SPREAD);
    expect(share[0]).toBeCloseTo(Math.exp(score[0] / COUPLED_SPREAD) / zCold, 9);
  });
});
