/**
 * Exact speculative sampling keeps the model's distribution: the joint law of
 * the first two emitted tokens under tree verification (stories260K on CPU)
 * must match the model's own, by a chi-square test at p = 0.001; a
 * deliberately wrong acceptance rule must fail the same test.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../../gpu-pool/model/load-model';
import { ModelRunner, type StepResult } from '../../../gpu-pool/runtime/model-runner';
import { Rng, sampleFrom, toProbabilities, type SamplingOptions } from '../../../gpu-pool/runtime/sampling';
import { TreeVerifier, exactAcceptRule, type AcceptRule } from '../../../gpu-pool/verify/tree-verifier';
import { GumbelNoise } from '../../../shared/sampling/gumbel-noise';
import { models } from '../../support/shared-data';

const SAMPLING: SamplingOptions = { temperature: 1, topP: 1, topK: 6 };
const TRIALS = 12_000;

interface Setup {
  vocab: number;
  result: StepResult;
  /** Verified row: prompt chain + draft tree. */
  draftRow: { tokens: Int32Array; parents: Int32Array };
  rootIndex: number;
  /** P(first), and P(second | first) for each first in the top-k support. */
  first: Float32Array;
  second: Map<number, Float32Array>;
}

let setup: Setup;

beforeAll(async () => {
  const fixture = JSON.parse(readFileSync(models.stories260K.fixtures, 'utf8').split('\n')[2]) as { prompt_ids: number[] };
  const prompt = fixture.prompt_ids;
  const model = await loadModel(models.stories260K.checkpoint);
  const runner = await ModelRunner.create(model);
  const vocab = model.config.vocabSize;
  const n = prompt.length;

  // Step 1: the model's distribution of the first token.
  const probe = runner.newSequence();
  const chain = { tokens: Int32Array.from(prompt), parents: Int32Array.from(prompt, (_, i) => i - 1) };
  const r1 = await runner.step([{ cache: probe, row: chain }]);
  const first = toProbabilities(r1.logitsAt(0, n - 1), SAMPLING, new Float32Array(vocab)).slice();
  const support = [...first.keys()].filter((t) => first[t] > 0).sort((a, b) => first[b] - first[a]);

  // Step 2, one forward pass with two rows: every first token of the support
  // under the prompt (for P(second | first)), and the draft tree under test:
  // depth 1 = ranks 1, 3 and a token outside the support; depth 2 = the two
  // likeliest continuations of rank 1, one of rank 3.
  const outside = [...Array(vocab).keys()].find((t) => first[t] === 0)!;
  const refTokens = [...prompt, ...support];
  const refParents = [...prompt.map((_, i) => i - 1), ...support.map(() => n - 1)];
  const refRow = { tokens: Int32Array.from(refTokens), parents: Int32Array.from(refParents) };
  const probeRef = runner.newSequence();
  const r2 = await runner.step([{ cache: probeRef, row: refRow }]);
  const second = new Map<number, Float32Array>();
  support.forEach((t, k) => second.set(t, toProbabilities(r2.logitsAt(0, n + k), SAMPLING, new Float32Array(vocab)).slice()));
  const top2 = (p: Float32Array): number[] => [...p.keys()].sort((a, b) => p[b] - p[a]).slice(0, 2);
  const [a, b] = [support[0], support[2]];
  const [a1, a2] = top2(second.get(a)!);
  const [b1] = top2(second.get(b)!);
  const draftTokens = [...prompt, a, b, outside, a1, a2, b1];
  const draftParents = [...prompt.map((_, i) => i - 1), n - 1, n - 1, n - 1, n, n, n + 1];
  const draftRow = { tokens: Int32Array.from(draftTokens), parents: Int32Array.from(draftParents) };
  const result = await runner.step([{ cache: runner.newSequence(), row: draftRow }]);
  setup = { vocab, result, draftRow, rootIndex: n - 1, first, second };
}, 120_000);

/** Joint counts of (first, second) emitted tokens over TRIALS verifications. */
function sampleJoint(rule: AcceptRule | null, seed: number): Map<string, number> {
  const { vocab, result, draftRow, rootIndex, second } = setup;
  const v = new TreeVerifier(vocab, draftRow.tokens.length, rule);
  const rng = new Rng(seed);
  const counts = new Map<string, number>();
  for (let t = 0; t < TRIALS; t++) {
    // Coupled: each trial is a request with its own seed (its noise); sequential: fresh draws from one stream.
    const noise = rule === null ? new GumbelNoise(seed * 100_003 + t) : null;
    const acc = v.verifySampled(draftRow, draftRow.tokens.length, rootIndex, result, 0, SAMPLING, rng, noise, rootIndex + 1);
    const emitted: number[] = [];
    for (let k = 0; k < acc; k++) emitted.push(draftRow.tokens[v.acceptedPath[k]]);
    emitted.push(v.bonusToken);
    // Only one token this step: the next step samples the second from the model.
    if (emitted.length === 1) emitted.push(sampleFrom(second.get(emitted[0])!, rng));
    const key = `${emitted[0]},${emitted[1]}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/** Chi-square statistic against the exact joint, cells with expectation < 5 pooled; and the p=0.001 critical value. */
function chiSquare(counts: Map<string, number>): { stat: number; critical: number } {
  const { first, second } = setup;
  const cells: { expected: number; observed: number }[] = [];
  let pooledE = 0;
  let pooledO = 0;
  let seen = 0;
  for (const [t1, p2] of second) {
    for (let t2 = 0; t2 < p2.length; t2++) {
      const p = first[t1] * p2[t2];
      if (p === 0) continue;
      const expected = p * TRIALS;
      const observed = counts.get(`${t1},${t2}`) ?? 0;
      seen += observed;
      if (expected < 5) {
        pooledE += expected;
        pooledO += observed;
      } else cells.push({ expected, observed });
    }
  }
  // Anything emitted outside the support counts against the sampler.
  pooledO += TRIALS - seen;
  cells.push({ expected: Math.max(pooledE, 1e-9), observed: pooledO });
  const stat = cells.reduce((s, c) => s + (c.observed - c.expected) ** 2 / c.expected, 0);
  const df = cells.length - 1;
  // Wilson–Hilferty approximation of the chi-square quantile, z(0.999) = 3.0902.
  const h = 2 / (9 * df);
  const critical = df * (1 - h + 3.0902 * Math.sqrt(h)) ** 3;
  return { stat, critical };
}

describe('speculative sampling over a draft tree (real model)', () => {
  it('emits the first two tokens with the model’s own distribution (coupled draws, the pool’s default)', () => {
    const { stat, critical } = chiSquare(sampleJoint(null, 1234));
    expect(stat).toBeLessThan(critical);
  });

  it('and so does the literal sequential form (fresh draw per tried child)', () => {
    const { stat, critical } = chiSquare(sampleJoint(exactAcceptRule, 4321));
    expect(stat).toBeLessThan(critical);
  });

  it('catches a wrong acceptance rule (accept whenever p > 0.1)', () => {
    const wrong: AcceptRule = (p, rng) => p > 0.1 || rng.next() < p;
    const { stat, critical } = chiSquare(sampleJoint(wrong, 1234));
    expect(stat).toBeGreaterThan(critical);
  });

  it('catches a subtly wrong rule (accepts drafts 20% too rarely)', () => {
    const wrong: AcceptRule = (p, rng) => rng.next() < p * 0.8;
    const { stat, critical } = chiSquare(sampleJoint(wrong, 99));
    expect(stat).toBeGreaterThan(critical);
  });
});
