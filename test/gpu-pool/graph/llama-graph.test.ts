// The ONNX graph, driven through ModelRunner, matches the plain TypeScript
// reference forward pass: batches with mixed past lengths, and draft trees.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type LoadedModel } from '../../../gpu-pool/model/load-model';
import { ReferenceForward } from '../../../gpu-pool/model/reference-forward';
import { ModelRunner } from '../../../gpu-pool/runtime/model-runner';
import type { SequenceKvCache } from '../../../gpu-pool/runtime/kv-cache';
import { Rng } from '../../../gpu-pool/runtime/sampling';
import { models, requireSharedData } from '../../support/shared-data';

requireSharedData();
const TOLERANCE = 1e-4;
const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'sssd-graphs-test-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Reference logits after each token of `tokens`, run from scratch. */
function referenceLogits(model: LoadedModel, tokens: number[]): Float32Array[] {
  const ref = new ReferenceForward(model.config, model.weights);
  return tokens.map((t) => ref.forward(t));
}

const chain = (tokens: number[]) => ({
  tokens: Int32Array.from(tokens),
  parents: Int32Array.from(tokens, (_, i) => i - 1),
});

function randomTokens(rng: Rng, n: number, vocab: number): number[] {
  return Array.from({ length: n }, () => 2 + Math.floor(rng.next() * (vocab - 2)));
}

describe.each(['stories260K', 'babyllama105'] as const)('graph vs reference forward (%s)', (name) => {
  let model: LoadedModel;
  let runner: ModelRunner;
  beforeAll(async () => {
    model = await loadModel(models[name].checkpoint);
    runner = await ModelRunner.create(model, { cacheDir });
  });
  afterAll(async () => {
    await runner?.dispose();
  });

  it('gives the reference logits for every token of a batch with mixed past lengths', async () => {
    const rng = new Rng(7);
    const V = model.config.vocabSize;
    const histories = [randomTokens(rng, 9, V), [], randomTokens(rng, 14, V), randomTokens(rng, 3, V)];
    const news = [randomTokens(rng, 1, V), randomTokens(rng, 6, V), randomTokens(rng, 3, V), randomTokens(rng, 2, V)];
    const caches: SequenceKvCache[] = histories.map(() => runner.newSequence(4));
    // Fill each history in its own step (a different batch shape than the checked one).
    for (let i = 0; i < histories.length; i++) {
      if (histories[i].length === 0) continue;
      const step = await runner.step([{ cache: caches[i], row: chain(histories[i]) }]);
      step.commit(0, histories[i].map((_, j) => j));
    }
    expect(caches.map((c) => c.length)).toEqual([9, 0, 14, 3]);
    const step = await runner.step(news.map((t, i) => ({ cache: caches[i], row: chain(t) })));
    let worst = 0;
    for (let i = 0; i < news.length; i++) {
      const ref = referenceLogits(model, [...histories[i], ...news[i]]);
      for (let j = 0; j < news[i].length; j++) {
        const got = step.logitsAt(i, j);
        expect(got.every(Number.isFinite)).toBe(true);
        worst = Math.max(worst, maxAbsDiff(got, ref[histories[i].length + j]));
      }
    }
    expect(worst).toBeLessThanOrEqual(TOLERANCE);
    for (const c of caches) c.release();
  });

  it('gives every node of a random tree the logits of its root-to-node path run alone, and commits a path', async () => {
    const rng = new Rng(11);
    const V = model.config.vocabSize;
    const context = randomTokens(rng, 10, V);
    const size = 24;
    const tokens = Int32Array.from(randomTokens(rng, size, V));
    const parents = new Int32Array(size);
    parents[0] = -1;
    for (let i = 1; i < size; i++) parents[i] = Math.floor(rng.next() * i);
    const pathTo = (node: number): number[] => {
      const p: number[] = [];
      for (let n = node; n >= 0; n = parents[n]) p.unshift(n);
      return p;
    };

    const cache = runner.newSequence();
    const other = runner.newSequence();
    const pre = await runner.step([{ cache, row: chain(context.slice(0, -1)) }]);
    pre.commit(0, context.slice(0, -1).map((_, j) => j));
    // Root = last context token; a second, unrelated row pads the batch.
    tokens[0] = context[context.length - 1];
    const step = await runner.step([
      { cache: other, row: chain([5, 6]) },
      { cache, row: { tokens, parents } },
    ]);
    let worst = 0;
    for (let node = 0; node < size; node++) {
      const seq = [...context.slice(0, -1), ...pathTo(node).map((i) => tokens[i])];
      const ref = referenceLogits(model, seq);
      worst = Math.max(worst, maxAbsDiff(step.logitsAt(1, node), ref[ref.length - 1]));
    }
    expect(worst).toBeLessThanOrEqual(TOLERANCE);

    // Commit the deepest path, then continue one token: the cache holds exactly that path.
    let deepest = 0;
    for (let i = 0; i < size; i++) if (pathTo(i).length > pathTo(deepest).length) deepest = i;
    const accepted = pathTo(deepest);
    step.commit(1, accepted);
    expect(cache.length).toBe(context.length - 1 + accepted.length);
    const nextToken = 3;
    const after = await runner.step([{ cache, row: chain([nextToken]) }]);
    const ref = referenceLogits(model, [...context.slice(0, -1), ...accepted.map((i) => tokens[i]), nextToken]);
    expect(maxAbsDiff(after.logitsAt(0, 0), ref[ref.length - 1])).toBeLessThanOrEqual(TOLERANCE);
    cache.release();
    other.release();
  });

  it('rejects rows that are not trees or run past the context', async () => {
    const cache = runner.newSequence();
    await expect(runner.step([{ cache, row: { tokens: Int32Array.from([1, 2]), parents: Int32Array.from([-1, 1]) } }])).rejects.toThrow(/parent/);
    await expect(runner.step([{ cache, row: chain([model.config.vocabSize]) }])).rejects.toThrow(/vocabulary/);
    const tooLong = new Array(model.config.contextLength + 1).fill(3);
    await expect(runner.step([{ cache, row: chain(tooLong) }])).rejects.toThrow(/context length/);
    cache.release();
  });
});
