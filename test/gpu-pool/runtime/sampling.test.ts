// Sampling: deterministic for a seed, and the distribution honours temperature, top-k and top-p.
import { describe, expect, it } from 'vitest';
import { argmax, Rng, sampleFrom, sampleWithNoise, toProbabilities, type SamplingOptions } from '../../../gpu-pool/runtime/sampling';
import { GumbelNoise } from '../../../shared/sampling/gumbel-noise';

const logits = Float32Array.from([1, 3, 2, 0.5, 2.5]);

describe('sampling', () => {
  it('argmax picks the first maximum', () => {
    expect(argmax(logits)).toBe(1);
    expect(argmax(Float32Array.from([2, 5, 5]))).toBe(1);
  });

  it('passes over a NaN logit, and refuses logits with no finite maximum rather than answer token 0', () => {
    expect(argmax(Float32Array.from([NaN, 1, 3, 2]))).toBe(2);
    const p = toProbabilities(Float32Array.from([NaN, 1, 3, 2]), { temperature: 1, topP: 0.99, topK: 0 }, new Float32Array(4));
    expect(p[0]).toBe(0);
    expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    for (const broken of [Float32Array.from([NaN, NaN]), Float32Array.from([1, Infinity])]) {
      expect(() => argmax(broken)).toThrow(/logits are not finite/);
      expect(() => toProbabilities(broken, { temperature: 1, topP: 0.9, topK: 0 }, new Float32Array(2))).toThrow(/logits are not finite/);
    }
  });

  it('Rng is deterministic per seed, uniform enough, and seeds above 2^32 differ', () => {
    const draw = (seed: number) => Array.from({ length: 5 }, ((r) => () => r.next())(new Rng(seed)));
    expect(draw(42)).toEqual(draw(42));
    expect(draw(42)).not.toEqual(draw(43));
    expect(draw(2 ** 40)).not.toEqual(draw(2 ** 40 + 2 ** 33));
    const r = new Rng(1);
    let sum = 0;
    for (let i = 0; i < 20000; i++) {
      const u = r.next();
      expect(u >= 0 && u < 1).toBe(true);
      sum += u;
    }
    expect(sum / 20000).toBeCloseTo(0.5, 1);
  });

  it('temperature 1 without cuts is the softmax', () => {
    const p = toProbabilities(logits, { temperature: 1, topP: 1, topK: 0 }, new Float32Array(5));
    const z = Array.from(logits).reduce((s, x) => s + Math.exp(x), 0);
    p.forEach((v, i) => expect(v).toBeCloseTo(Math.exp(logits[i]) / z, 6));
  });

  it('top-k and top-p keep only the most likely tokens, renormalised', () => {
    const k2 = toProbabilities(logits, { temperature: 1, topP: 1, topK: 2 }, new Float32Array(5));
    expect(Array.from(k2).map((v) => v > 0)).toEqual([false, true, false, false, true]);
    expect(k2.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    // Softmax masses ~ [.05,.40,.15,.03,.24...]: top-p 0.5 keeps the two largest.
    const p5 = toProbabilities(logits, { temperature: 1, topP: 0.5, topK: 0 }, new Float32Array(5));
    expect(Array.from(p5).map((v) => v > 0)).toEqual([false, true, false, false, true]);
    // Low temperature sharpens towards the argmax.
    const cold = toProbabilities(logits, { temperature: 0.05, topP: 1, topK: 0 }, new Float32Array(5));
    expect(cold[1]).toBeGreaterThan(0.99);
    expect(() => toProbabilities(logits, { temperature: 0, topP: 1, topK: 0 }, new Float32Array(5))).toThrow(RangeError);
  });

  it('min-p cuts tokens less likely than its share of the likeliest, before top-k and top-p, renormalised (vLLM)', () => {
    // Probabilities 0.5, 0.2, 0.15, 0.1, 0.05: min-p 0.25 cuts below 0.125.
    const logits = Float32Array.from([0.5, 0.2, 0.15, 0.1, 0.05], Math.log);
    const cut = toProbabilities(logits, { temperature: 1, topP: 1, topK: 0, minP: 0.25 }, new Float32Array(5));
    [0.5 / 0.85, 0.2 / 0.85, 0.15 / 0.85, 0, 0].forEach((v, i) => expect(cut[i], String(i)).toBeCloseTo(v, 6));
    // Top-p over what min-p left: 0.8 of 0.5/0.85 + 0.2/0.85 = 0.82 keeps two.
    const then = toProbabilities(logits, { temperature: 1, topP: 0.8, topK: 0, minP: 0.25 }, new Float32Array(5));
    expect(Array.from(then).map((v) => v > 0)).toEqual([true, true, false, false, false]);
    // 0 is no cut; 1 keeps the likeliest alone.
    expect(toProbabilities(logits, { temperature: 1, topP: 1, topK: 0, minP: 0 }, new Float32Array(5))[4]).toBeCloseTo(0.05, 6);
    expect(toProbabilities(logits, { temperature: 1, topP: 1, topK: 0, minP: 1 }, new Float32Array(5))[0]).toBeCloseTo(1, 6);
    // The seeded sampler draws inside the same set.
    const scratch = new Float32Array(5);
    for (let t = 0; t < 2000; t++) expect(sampleWithNoise(logits, { temperature: 1, topP: 1, topK: 0, minP: 0.25 }, scratch, new GumbelNoise(t), 0)).toBeLessThan(3);
  });

  it('applies top-p to what top-k left, renormalised, and always keeps the most likely token', () => {
    // Probabilities 0.5, 0.05, and 18 tokens sharing 0.45: top-k 2 leaves 0.909 / 0.091, and top-p 0.9 then keeps the first alone.
    const probs = [0.5, 0.05, ...Array.from({ length: 18 }, () => 0.45 / 18)];
    const logits = Float32Array.from(probs, Math.log);
    const both = toProbabilities(logits, { temperature: 1, topP: 0.9, topK: 2 }, new Float32Array(20));
    expect(both[0]).toBeCloseTo(1, 6);
    expect(both[1]).toBe(0);
    // A flat distribution under a tiny top-p: the single most likely token, not none.
    const flat = Float32Array.from({ length: 512 }, (_, i) => (i === 77 ? 0.002 : 0));
    const tiny = toProbabilities(flat, { temperature: 2, topP: 1e-4, topK: 0 }, new Float32Array(512));
    expect(tiny[77]).toBeCloseTo(1, 6);
    expect(tiny.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
  });

  it('keeps every token tied with the k-th, as vLLM does, not only those of lower ids', () => {
    const tied = Float32Array.from([3, 1, 2, 2, 2, 0]);
    const p = toProbabilities(tied, { temperature: 1, topP: 1, topK: 2 }, new Float32Array(6));
    expect(Array.from(p, (v) => v > 0)).toEqual([true, false, true, true, true, false]);
    expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    expect(p[2]).toBeCloseTo(p[4], 7);
  });

  it('matches a plain sort-everything implementation on random logits', () => {
    const naive = (l: Float32Array, t: number, p: number, k: number): number[] => {
      const e = Array.from(l, (x) => Math.exp(x / t));
      const z = e.reduce((a, b) => a + b, 0);
      const probs = e.map((x) => x / z);
      const ids = probs.map((_, i) => i).sort((a, b) => probs[b] - probs[a] || a - b);
      let keep = k > 0 ? Math.min(k, ids.length) : ids.length;
      // Ties with the k-th value stay (vLLM masks only what is below it).
      while (keep < ids.length && probs[ids[keep]] === probs[ids[keep - 1]]) keep++;
      // Top-p over the top-k survivors, renormalised (vLLM's order: top-k, then top-p).
      const topKMass = ids.slice(0, keep).reduce((a, i) => a + probs[i], 0);
      let cum = 0;
      for (let r = 0; r < keep; r++) {
        cum += probs[ids[r]] / topKMass;
        if (p < 1 && cum >= p) { keep = r + 1; break; }
      }
      const kept = ids.slice(0, keep).reduce((a, i) => a + probs[i], 0);
      const out = new Array<number>(probs.length).fill(0);
      for (const i of ids.slice(0, keep)) out[i] = probs[i] / kept;
      return out;
    };
    const rng = new Rng(3);
    for (const [t, p, k] of [[1, 0.9, 0], [0.7, 1, 20], [1.3, 0.5, 50], [1, 0.99, 1], [0.8, 0.3, 0], [1, 0.6, 30], [0.9, 0.95, 5]] as const) {
      // Rounded to tenths: ties at the top-k boundary happen.
      const logits = Float32Array.from({ length: 1000 }, () => Math.round(60 * rng.next()) / 10);
      const got = toProbabilities(logits, { temperature: t, topP: p, topK: k }, new Float32Array(1000));
      const want = naive(logits, t, p, k);
      expect(Array.from(got).map((x) => x > 0)).toEqual(want.map((x) => x > 0));
      got.forEach((x, i) => expect(x).toBeCloseTo(want[i], 5));
    }
  });

  it('sampleFrom follows the distribution and never picks a zero-probability token', () => {
    const probs = Float32Array.from([0.1, 0, 0.6, 0.3]);
    const rng = new Rng(9);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 20000; i++) counts[sampleFrom(probs, rng)]++;
    expect(counts[1]).toBe(0);
    expect(counts[2] / 20000).toBeCloseTo(0.6, 1);
    expect(counts[0] / 20000).toBeCloseTo(0.1, 1);
  });

  describe('sampleWithNoise (Gumbel-max, the pool\'s sampler)', () => {
    const logits = Float32Array.from([2, 0.5, -1, 1.5, 0, -3, 1]);
    const draw = (opts: SamplingOptions, trials: number): number[] => {
      const counts = new Array<number>(logits.length).fill(0);
      const scratch = new Float32Array(logits.length);
      // Each trial a request of its own (seed), sampling sequence index 3.
      for (let t = 0; t < trials; t++) counts[sampleWithNoise(logits, opts, scratch, new GumbelNoise(t), 3)]++;
      return counts;
    };
    const chiSquare = (counts: number[], p: Float32Array, trials: number): number =>
      counts.reduce((s, o, i) => (p[i] > 0 ? s + (o - p[i] * trials) ** 2 / (p[i] * trials) : s), 0);

    it('samples softmax(logits / T) exactly (chi-square, p = 0.001)', () => {
      for (const temperature of [1, 0.7]) {
        const opts = { temperature, topP: 1, topK: 0 };
        const counts = draw(opts, 20_000);
        const p = toProbabilities(logits, opts, new Float32Array(logits.length));
        expect(chiSquare(counts, p, 20_000)).toBeLessThan(22.46); // 6 df
      }
    });

    it('keeps to the top-k / top-p set and its renormalised distribution', () => {
      const opts = { temperature: 1, topP: 0.8, topK: 3 };
      const counts = draw(opts, 20_000);
      const p = toProbabilities(logits, opts, new Float32Array(logits.length));
      for (let i = 0; i < logits.length; i++) if (p[i] === 0) expect(counts[i]).toBe(0);
      const kept = [...p].filter((x) => x > 0).length;
      expect(chiSquare(counts, p, 20_000)).toBeLessThan([10.83, 13.82, 16.27][kept - 2]);
    });

    it('skipping hopeless tokens changes nothing: same token as scoring every token', () => {
      const rand = new Rng(5);
      const scratch = new Float32Array(64);
      for (let t = 0; t < 300; t++) {
        const l = Float32Array.from({ length: 64 }, () => (rand.next() - 0.5) * 60);
        const noise = new GumbelNoise(t);
        let best = 0;
        for (let v = 1; v < 64; v++) if (l[v] + noise.gumbel(9, v) > l[best] + noise.gumbel(9, best)) best = v;
        expect(sampleWithNoise(l, { temperature: 1, topP: 1, topK: 0 }, scratch, noise, 9)).toBe(best);
      }
    });

    it('skipping by the bound each uniform puts on its draw changes nothing either, at any spread, temperature and cut', () => {
      const rand = new Rng(11);
      const V = 128;
      const scratch = new Float32Array(V);
      for (let t = 0; t < 2000; t++) {
        const spread = [2, 8, 20, 60][t % 4];
        const l = Float32Array.from({ length: V }, () => (rand.next() - 0.5) * spread);
        const opts = { temperature: [1, 0.7, 1.3][t % 3], topP: t % 5 === 0 ? 0.9 : 1, topK: t % 7 === 0 ? 20 : 0 };
        const noise = new GumbelNoise(t);
        const index = t % 50;
        // Reference: every allowed token scored with its draw.
        const cut = opts.topP < 1 || opts.topK > 0;
        const p = toProbabilities(l, opts, new Float32Array(V));
        let best = -1;
        let bestScore = -Infinity;
        for (let v = 0; v < V; v++) {
          if (cut && p[v] <= 0) continue;
          const s = (cut ? Math.log(p[v]) : l[v] / opts.temperature) + noise.gumbel(index, v);
          if (s > bestScore) {
            bestScore = s;
            best = v;
          }
        }
        expect(sampleWithNoise(l, opts, scratch, noise, index)).toBe(best);
      }
    });
  });
});
