// Seeded token streams for property tests (mulberry32).
export { seededRandom } from '../../support/seeded-random';

/** A stream over a small alphabet with some repeated phrases, like text. */
export function tokenStream(rand: () => number, length: number, alphabet: number): number[] {
  const out: number[] = [];
  while (out.length < length) {
    if (out.length > 8 && rand() < 0.3) {
      const start = Math.floor(rand() * (out.length - 4));
      const n = 2 + Math.floor(rand() * 6);
      for (let i = 0; i < n && out.length < length; i++) out.push(out[start + i]);
    } else out.push(Math.floor(rand() * alphabet));
  }
  return out;
}
