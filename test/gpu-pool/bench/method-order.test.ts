import { describe, expect, it } from 'vitest';
import { methodOrder } from '../../../gpu-pool/bench/method-order';

const methods = ['off', 'pld', 'sssd'] as const;

/** Each method's summed place (0 = first) over turns [from, from + count). */
function placeSums(from: number, count: number, list: readonly string[] = methods): Map<string, number> {
  const sums = new Map(list.map((m) => [m, 0]));
  for (let t = from; t < from + count; t++) methodOrder(list, t).forEach((m, place) => sums.set(m, sums.get(m)! + place));
  return sums;
}

describe('methodOrder', () => {
  it('gives every method the same mean place over each pair of turns (2k, 2k + 1)', () => {
    for (const from of [0, 2, 4]) expect(new Set(placeSums(from, 2).values())).toEqual(new Set([2]));
    expect(new Set(placeSums(0, 2, ['off', 'sssd']).values())).toEqual(new Set([1]));
  });

  it('puts each method first, and in every place, twice over 2m rounds', () => {
    const counts = new Map<string, number[]>(methods.map((m) => [m, [0, 0, 0]]));
    for (let t = 0; t < 6; t++) methodOrder(methods, t).forEach((m, place) => counts.get(m)![place]++);
    for (const m of methods) expect(counts.get(m)).toEqual([2, 2, 2]);
  });

  it('keeps every method exactly once per round and the listed order first', () => {
    expect(methodOrder(methods, 0)).toEqual(['off', 'pld', 'sssd']);
    for (let t = 0; t < 12; t++) expect([...methodOrder(methods, t)].sort()).toEqual([...methods]);
    expect(methodOrder(['sssd'], 5)).toEqual(['sssd']);
  });
});
