// A request's seed as the pool takes it: the edge's choices and `sssd generate` map it alike.
import { describe, expect, it } from 'vitest';
import { choiceSeed, drawnSeed } from '../../../shared/sampling/request-seed';

const inPoolRange = (s: number): boolean => Number.isSafeInteger(s) && s >= 0 && s < 2 ** 53;

describe("a choice's seed", () => {
  it('is the seed itself for choice 0, so n = 1 writes what it wrote before', () => {
    expect([0, 5, 42, 2 ** 53 - 1].map((seed) => choiceSeed(seed, 0))).toEqual([0, 5, 42, 2 ** 53 - 1]);
    // Negative seeds as int64 bits, modulo 2^53.
    expect(choiceSeed(-1, 0)).toBe(2 ** 53 - 1);
  });

  it("shares no choice with a neighbouring seed's choices (review h190: seed + i made seed k and k + 1 share n - 1)", () => {
    const seen = new Map<number, string>();
    for (let seed = 0; seed < 1000; seed++) {
      for (let i = 0; i < 8; i++) {
        const s = choiceSeed(seed, i);
        expect(seen.get(s), `seed ${seed} choice ${i}`).toBeUndefined();
        seen.set(s, `${seed}/${i}`);
      }
    }
    // Past 2^53 too, where seed + i in floats would be seed again.
    const big = [0, 1, 2].map((i) => choiceSeed(1e17, i));
    expect(new Set(big).size).toBe(3);
  });

  it("is given again by choice 0's seed sent back, for every choice", () => {
    for (const seed of [-5, -(2 ** 62), 1e17, 2 ** 63, 123]) {
      const sentBack = choiceSeed(seed, 0);
      for (const i of [1, 2, 7]) expect(choiceSeed(sentBack, i)).toBe(choiceSeed(seed, i));
    }
  });

  it("keeps every seed within the pool's range, and tells -s from s", () => {
    for (const seed of [-1, -(2 ** 62), 2 ** 63, 9.2e18, 2 ** 53 - 1, 1e30]) {
      for (const i of [0, 1, 7]) expect(inPoolRange(choiceSeed(seed, i))).toBe(true);
    }
    expect(choiceSeed(-5, 0)).not.toBe(choiceSeed(5, 0));
    expect(choiceSeed(-5, 1)).not.toBe(choiceSeed(5, 1));
  });
});

describe('a drawn seed', () => {
  it('is any of the 2^53, not 32 bits (review h190)', () => {
    const drawn = Array.from({ length: 200 }, drawnSeed);
    for (const s of drawn) expect(inPoolRange(s)).toBe(true);
    // Each is at or above 2^32 but for one chance in 2^21: 200 of them below it is a 32-bit draw.
    expect(drawn.filter((s) => s >= 2 ** 32).length).toBeGreaterThan(190);
    expect(new Set(drawn).size).toBe(200);
  });
});
