import { GumbelNoise } from '../../../shared/sampling/gumbel-noise';
import { describe, expect, it } from 'vitest';
import { exactAcceptRule, sampleResidual, TreeVerifier } from '../../../gpu-pool/verify/tree-verifier';
import { Rng } from '../../../gpu-pool/runtime/sampling';

const VOCAB = 8;

/** Logits whose argmax (and most of the mass) is `favourite` at each row index. */
function logitsTable(favourites: number[]): { logitsAt(row: number, i: number): Float32Array } {
  const rows = favourites.map((f) => {
    const l = new Float32Array(VOCAB);
    l[f] = 10;
    return l;
  });
  return { logitsAt: (_row, i) => rows[i] };
}

function row(tokens: number[], parents: number[]): { tokens: Int32Array; parents: Int32Array } {
  return { tokens: Int32Array.from(tokens), parents: Int32Array.from(parents) };
}

describe('greedy tree acceptance', () => {
  // chain [5] + tree: 1:(3 under 0) 2:(4 under 0) 3:(6 under 2) 4:(7 under 3) 5:(2 under 2)
  const r = row([5, 3, 4, 6, 7, 2], [-1, 0, 0, 2, 3, 2]);

  it('accepts the longest path that follows the argmax and returns the bonus after it', () => {
    const v = new TreeVerifier(VOCAB, 16);
    // argmax after root = 4 (node 2), after node 2 = 2 (node 5), after node 5 = 1 (bonus)
    const n = v.verifyGreedy(r, 6, 0, logitsTable([4, 0, 2, 0, 0, 1]), 0);
    expect(n).toBe(2);
    expect(Array.from(v.acceptedPath.subarray(0, n))).toEqual([2, 5]);
    expect(v.bonusToken).toBe(1);
  });

  it('accepts nothing when the first argmax is not drafted', () => {
    const v = new TreeVerifier(VOCAB, 16);
    const n = v.verifyGreedy(r, 6, 0, logitsTable([0, 0, 0, 0, 0, 0]), 0);
    expect(n).toBe(0);
    expect(v.bonusToken).toBe(0);
  });

  it('walks from the last chain token of a prefill row', () => {
    // chain [9,9,5] (a prompt) then node 3 under index 2
    const v = new TreeVerifier(16, 16);
    const prefill = row([9, 9, 5, 3], [-1, 0, 1, 2]);
    const table = [0, 0, 3, 7].map((f) => {
      const l = new Float32Array(16);
      l[f] = 1;
      return l;
    });
    const n = v.verifyGreedy(prefill, 4, 2, { logitsAt: (_r, i) => table[i] }, 0);
    expect(n).toBe(1);
    expect(v.acceptedPath[0]).toBe(3);
    expect(v.bonusToken).toBe(7);
  });
});

describe('sampled tree acceptance', () => {
  it('always accepts a child holding all the probability mass, never one with none', () => {
    const v = new TreeVerifier(VOCAB, 16);
    const sure = row([5, 2, 3], [-1, 0, 1]);
    const logits = { logitsAt: (_r: number, i: number) => {
      const l = new Float32Array(VOCAB).fill(-1e9);
      l[i === 0 ? 2 : i === 1 ? 3 : 6] = 0;
      return l;
    } };
    const rng = new Rng(7);
    for (let t = 0; t < 50; t++) {
      const n = v.verifySampled(sure, 3, 0, logits, 0, { temperature: 1, topP: 1, topK: 0 }, rng, new GumbelNoise(t), 10);
      expect(n).toBe(2);
      expect(v.bonusToken).toBe(6);
    }
    const never = row([5, 4], [-1, 0]);
    for (let t = 0; t < 50; t++) {
      const n = v.verifySampled(never, 2, 0, logits, 0, { temperature: 1, topP: 1, topK: 0 }, rng, new GumbelNoise(t), 10);
      expect(n).toBe(0);
      expect(v.bonusToken).toBe(2);
    }
  });

  it('needs the request\'s noise in the coupled form', () => {
    const v = new TreeVerifier(VOCAB, 16);
    const flat = { logitsAt: () => new Float32Array(VOCAB) };
    expect(() => v.verifySampled(row([5, 1], [-1, 0]), 2, 0, flat, 0, { temperature: 1, topP: 1, topK: 0 }, new Rng(1))).toThrow(/noise/);
  });

  it('is reproducible for a seed', () => {
    const v = new TreeVerifier(VOCAB, 16);
    const r = row([5, 1, 2, 3], [-1, 0, 0, 0]);
    const flat = { logitsAt: () => new Float32Array(VOCAB) };
    const run = (seed: number): number[] => {
      const rng = new Rng(seed);
      const noise = new GumbelNoise(seed);
      const out: number[] = [];
      for (let t = 0; t < 20; t++) {
        // Token t of the sequence: each position has its own draw.
        const n = v.verifySampled(r, 4, 0, flat, 0, { temperature: 1, topP: 1, topK: 0 }, rng, noise, t);
        out.push(n > 0 ? r.tokens[v.acceptedPath[0]] : v.bonusToken);
      }
      return out;
    };
    expect(run(42)).toEqual(run(42));
    expect(run(42)).not.toEqual(run(43));
  });
});

/** A random stream that gives these draws, then 0.5. */
class Draws extends Rng {
  constructor(private readonly values: number[]) {
    super(1);
  }
  override next(): number {
    return this.values.shift() ?? 0.5;
  }
}

describe('sequential speculative sampling (the reference form)', () => {
  it('never emits a token its cuts removed when the drafted children, covering every allowed token, are all rejected', () => {
    // Top-k 2 keeps tokens 2 and 3 (their float32 probabilities sum a hair under 1); the root's children are both.
    const logits = new Float32Array([-5, -4, 3, 0.1]);
    const sampling = { temperature: 1, topP: 1, topK: 2 };
    const row = { tokens: Int32Array.from([3, 2, 3]), parents: Int32Array.from([-1, 0, 0]) };
    const logitsOf = { logitsAt: () => logits };
    // Draws that reject the first child and, but for the sum, the second: the residual then held nothing.
    for (const second of [0.9999999, 0.99999999]) {
      const v = new TreeVerifier(4, 8, exactAcceptRule);
      v.verifySampled(row, 3, 0, logitsOf, 0, sampling, new Draws([0.99, second, 0.5]));
      // Accepted, the child is an allowed token; rejected, so must the bonus be (token 0 came out before).
      const emitted = v.acceptedCount > 0 ? row.tokens[v.acceptedPath[0]] : v.bonusToken;
      expect([2, 3], `second draw ${second}`).toContain(emitted);
    }
  });

  it('emits the last child it rejected, not a token the cuts removed, when the rejections leave no residual', () => {
    // The draws above no longer reach this (the mass is the vector's own sum), so a rule that rejects every child does.
    const logits = new Float32Array([-5, -4, 3, 0.1]);
    const row = { tokens: Int32Array.from([3, 2, 3]), parents: Int32Array.from([-1, 0, 0]) };
    const v = new TreeVerifier(4, 8, () => false);
    const n = v.verifySampled(row, 3, 0, { logitsAt: () => logits }, 0, { temperature: 1, topP: 1, topK: 2 }, new Rng(1));
    expect(n).toBe(0);
    expect(v.bonusToken).toBe(3);
  });
});

describe('sampleResidual', () => {
  it('gives the fallback when nothing is left to sample, whatever the draw and the rounded mass', () => {
    for (const mass of [0, 1e-9, -1e-9]) {
      expect(sampleResidual(new Float32Array(4), mass, new Rng(3), 3), `mass ${mass}`).toBe(3);
      expect(sampleResidual(new Float32Array(4), mass, new Rng(3), 2), `mass ${mass}`).toBe(2);
    }
  });

  it('gives the last token with mass when rounding leaves the draw a hair above it', () => {
    const p = new Float32Array([0, 0.25, 0, 0.5]);
    // A draw of ~1 against a mass a hair over the entries' sum runs past them all.
    expect(sampleResidual(p, 0.76, new Draws([0.999999]), 0)).toBe(3);
    expect(sampleResidual(p, 0.75, new Draws([0.1]), 0)).toBe(1);
  });
});
