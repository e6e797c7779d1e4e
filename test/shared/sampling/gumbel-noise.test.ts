import { describe, expect, it } from 'vitest';
import { GUMBEL_MAX, GumbelNoise } from '../../../shared/sampling/gumbel-noise';

describe('GumbelNoise', () => {
  it('is a function of (seed, index, token): the same draw however often it is asked', () => {
    const a = new GumbelNoise(42);
    const b = new GumbelNoise(42);
    const first = [0, 1, 2].map((i) => a.gumbel(i, 7));
    // Interleaved indices must not disturb the per-index cache.
    expect([2, 0, 1].map((i) => b.gumbel(i, 7))).toEqual([first[2], first[0], first[1]]);
    expect(a.gumbel(5, 3)).not.toBe(a.gumbel(5, 4));
    expect(a.gumbel(5, 3)).not.toBe(a.gumbel(6, 3));
    expect(new GumbelNoise(43).gumbel(5, 3)).not.toBe(a.gumbel(5, 3));
    // Seeds that differ only above 2^32 differ.
    expect(new GumbelNoise(2 ** 40 + 1).gumbel(0, 0)).not.toBe(new GumbelNoise(1).gumbel(0, 0));
  });

  it("gives seeds whose 32-bit keys meet their own noise (42, 4369077839 and 530243421733615 drew the same text), and kept the noise of seeds below 2^32", () => {
    const draws = (seed: number) => {
      const noise = new GumbelNoise(seed);
      return [0, 1, 7].flatMap((i) => [0, 5, 300].map((t) => noise.uniform(i, t)));
    };
    const colliding = [42, 4369077839, 530243421733615, 12345, 4369081948].map(draws);
    for (let a = 0; a < colliding.length; a++) {
      for (let b = a + 1; b < colliding.length; b++) expect(colliding[a].some((u, k) => u !== colliding[b][k]), `${a} ${b}`).toBe(true);
    }
    // Seeds below 2^32 draw what they drew before the high word was folded in (seeded outputs people kept stay the same).
    expect(colliding[0].slice(0, 3).map((u) => u.toFixed(8))).toEqual(['0.72674886', '0.56990639', '0.82214472']);
    expect(colliding[3].slice(0, 3).map((u) => u.toFixed(8))).toEqual(['0.76870098', '0.39826522', '0.77242716']);
  });

  it('gives uniforms in (0, 1) that pass a 20-bin chi-square test, and Gumbel draws below GUMBEL_MAX', () => {
    const noise = new GumbelNoise(7);
    const bins = new Array<number>(20).fill(0);
    let n = 0;
    let sumG = 0;
    for (let index = 0; index < 200; index++) {
      for (let token = 0; token < 500; token++) {
        const u = noise.uniform(index, token);
        expect(u).toBeGreaterThan(0);
        expect(u).toBeLessThan(1);
        bins[Math.floor(u * 20)]++;
        const g = noise.gumbel(index, token);
        expect(g).toBeLessThan(GUMBEL_MAX);
        sumG += g;
        n++;
      }
    }
    const expected = n / 20;
    const chi = bins.reduce((s, o) => s + (o - expected) ** 2 / expected, 0);
    expect(chi).toBeLessThan(43.8); // chi-square, 19 df, p = 0.001
    // Standard Gumbel mean: the Euler–Mascheroni constant.
    expect(sumG / n).toBeCloseTo(0.5772, 1);
  });
});
