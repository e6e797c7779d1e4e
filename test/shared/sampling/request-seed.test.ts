// A request's seed as the pool takes it: the edge's choices and `sssd generate` map it alike.
import { describe, expect, it } from 'vitest';
import { choiceSeed } from '../../../shared/sampling/request-seed';

describe("a choice's seed", () => {
  it('is seed + i for the seeds people send', () => {
    expect([0, 1, 2].map((i) => choiceSeed(5, i))).toEqual([5, 6, 7]);
  });

  it('differs per choice past 2^53, where seed + i in floats is seed again', () => {
    const seeds = [0, 1, 2].map((i) => choiceSeed(1e17, i));
    expect(new Set(seeds).size).toBe(3);
    expect(seeds[1] - seeds[0]).toBe(1);
  });

  it('keeps every seed within the pool\'s range, and tells -s from s', () => {
    for (const seed of [-1, -(2 ** 62), 2 ** 63, 9.2e18, 2 ** 53 - 1, 1e30]) {
      for (const i of [0, 7]) {
        const s = choiceSeed(seed, i);
        expect(Number.isSafeInteger(s) && s >= 0 && s < 2 ** 53).toBe(true);
      }
    }
    expect(choiceSeed(-5, 0)).not.toBe(choiceSeed(5, 0));
    expect(choiceSeed(2 ** 53 - 1, 1)).toBe(0);
  });
});
