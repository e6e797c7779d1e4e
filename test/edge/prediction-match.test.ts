import { describe, expect, it } from 'vitest';
import { matchPrediction } from '../../edge/prediction-match';
import { seededRandom } from '../../shared/seeded-random';

function lcs(a: readonly number[], b: readonly number[]): number {
  const row = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = 0;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = a[i - 1] === b[j - 1] ? diagonal + 1 : Math.max(row[j], row[j - 1]);
      diagonal = above;
    }
  }
  return row[b.length];
}

const story = Array.from({ length: 400 }, (_, i) => (i * 7919 + (i >> 3)) % 500);

describe('matchPrediction', () => {
  it('accepts every token of a prediction the reply follows exactly, and rejects none', () => {
    expect(matchPrediction(story, story)).toEqual({ accepted: 400, rejected: 0 });
  });

  it('counts the tokens of a reply that goes on past a prediction it followed, and of one that stops short', () => {
    expect(matchPrediction(story.slice(0, 100), story)).toEqual({ accepted: 100, rejected: 0 });
    expect(matchPrediction(story, story.slice(0, 100))).toEqual({ accepted: 100, rejected: 300 });
  });

  it('costs an edit only the tokens it touches: changed, inserted and left-out tokens', () => {
    const changed = story.map((id, i) => (i % 25 === 12 ? 511 : id));
    expect(matchPrediction(changed, story)).toEqual({ accepted: 384, rejected: 16 });
    const inserted = [...story.slice(0, 200), 600, 601, 602, ...story.slice(200)];
    expect(matchPrediction(story, inserted)).toEqual({ accepted: 400, rejected: 0 });
    const leftOut = [...story.slice(0, 150), ...story.slice(170)];
    expect(matchPrediction(story, leftOut)).toEqual({ accepted: 380, rejected: 20 });
  });

  it('accepts nothing of an unrelated reply, and handles empty sides', () => {
    const other = story.map((id) => id + 1000);
    expect(matchPrediction(story, other)).toEqual({ accepted: 0, rejected: 400 });
    expect(matchPrediction([], story)).toEqual({ accepted: 0, rejected: 0 });
    expect(matchPrediction(story, [])).toEqual({ accepted: 0, rejected: 400 });
  });

  it('never counts more than the longest common subsequence, and finds nearly all of it after scattered edits', () => {
    const random = seededRandom(17);
    for (const [editRate, atLeast] of [
      [0.04, 0.95],
      [0.25, 0.6],
    ]) {
      for (let trial = 0; trial < 100; trial++) {
        const prediction = Array.from({ length: 20 + Math.floor(random() * 300) }, () => Math.floor(random() * 64));
        const output: number[] = [];
        for (const id of prediction) {
          const r = random() / editRate;
          if (r < 0.3) continue; // left out
          output.push(r < 0.7 ? Math.floor(random() * 64) : id);
          if (r >= 0.7 && r < 1) output.push(Math.floor(random() * 64)); // inserted
        }
        const { accepted, rejected } = matchPrediction(prediction, output);
        const best = lcs(prediction, output);
        expect(accepted + rejected).toBe(prediction.length);
        expect(accepted).toBeLessThanOrEqual(best);
        expect(accepted).toBeGreaterThanOrEqual(Math.floor(best * atLeast));
      }
    }
  });

  it('stays linear on a prediction full of one repeated phrase (it was quadratic: 8,192 tokens took ~0.45 s)', () => {
    const prediction = [...Array.from({ length: 4096 }, (_, i) => (i % 2 ? 1 : 2)), ...new Array<number>(4096).fill(1)];
    const output = Array.from({ length: 8192 }, (_, i) => (i % 2 ? 1 : 2));
    matchPrediction(prediction.slice(0, 512), output.slice(0, 512)); // warm
    const started = performance.now();
    expect(matchPrediction(prediction, output)).toEqual({ accepted: 6144, rejected: 2048 });
    expect(performance.now() - started).toBeLessThan(100);
  });

  it('keys ids past 2^17 without mistaking one for another', () => {
    // Ids that differ past 2^17 (once one key): the walk must not take one for the other, nor loop on it.
    expect(matchPrediction([131_072 + 5, 7, 9], [5, 7, 9])).toEqual({ accepted: 2, rejected: 1 });
    expect(matchPrediction([131_072 + 5, 7, 9, 3, 4], [0, 5, 7, 9, 3, 4])).toEqual({ accepted: 4, rejected: 1 });
  });
});
