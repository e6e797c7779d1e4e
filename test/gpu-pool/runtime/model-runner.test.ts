// ModelRunner's cache bookkeeping: rolled-back and reordered sequences get
// exactly the logits a fresh run of their tokens gets.
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type LoadedModel } from '../../../gpu-pool/model/load-model';
import { ReferenceForward } from '../../../gpu-pool/model/reference-forward';
import { cudaProviderInstalled, ModelRunner, webGpuOptions } from '../../../gpu-pool/runtime/model-runner';
import { CliError } from '../../../gpu-pool/cli/cli-error';
import { GRAPH_VERSION, packedOutputLayout } from '../../../gpu-pool/graph/llama-graph';
import { models, requireSharedData } from '../../support/shared-data';

requireSharedData();
const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'sssd-graphs-test-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

const chain = (tokens: number[]) => ({ tokens: Int32Array.from(tokens), parents: Int32Array.from(tokens, (_, i) => i - 1) });

function lastReferenceLogits(model: LoadedModel, tokens: number[]): Float32Array {
  const ref = new ReferenceForward(model.config, model.weights);
  let out: Float32Array = new Float32Array(0);
  for (const t of tokens) out = ref.forward(t);
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

// The host-side layout (keys/values in host buffers, split and grouped passes):
// the CPU provider named, so a GPU host's run of the suite with
// SSSD_EXECUTION_PROVIDER set still checks it; the WebGPU test below checks the device's.
const onCpu = { cacheDir, executionProvider: 'cpu' } as const;

describe('ModelRunner', () => {
  let model: LoadedModel;
  let runner: ModelRunner;
  beforeAll(async () => {
    model = await loadModel(models.stories260K.checkpoint);
    runner = await ModelRunner.create(model, onCpu);
  });
  afterAll(async () => runner?.dispose());

  it('reuses a cached graph on the second start', async () => {
    const again = await ModelRunner.create(model, onCpu);
    expect(again.graphFromCache).toBe(true);
    await again.dispose();
  });

  it('runs a graph whose weights live in an external data file (large models) like the inline one', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sssd-graphs-external-'));
    const ext = await ModelRunner.create(model, { ...onCpu, cacheDir: dir, externalDataAboveBytes: 0 });
    expect(readdirSync(dir).sort()).toEqual([`${model.sha256}-g${GRAPH_VERSION}.onnx`, `${model.sha256}-g${GRAPH_VERSION}.onnx.data`]);
    const tokens = [1, 403, 407, 261, 378];
    const a = runner.newSequence();
    const b = ext.newSequence();
    const ra = await runner.step([{ cache: a, row: chain(tokens) }]);
    const rb = await ext.step([{ cache: b, row: chain(tokens) }]);
    expect(maxAbsDiff(ra.logitsAt(0, 4), rb.logitsAt(0, 4))).toBeLessThanOrEqual(1e-6);
    const again = await ModelRunner.create(model, { ...onCpu, cacheDir: dir, externalDataAboveBytes: 0 });
    expect(again.graphFromCache).toBe(true);
    await Promise.all([ext.dispose(), again.dispose()]);
    a.release();
    b.release();
    rmSync(dir, { recursive: true, force: true });
  });

  it('builds a cached graph damaged on disk again: one altered but still readable (by its digest), one cut short (external weights)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sssd-graphs-damaged-'));
    const tokens = [1, 403, 407, 261, 378];
    const logits = async (r: ModelRunner): Promise<Float32Array> => {
      const seq = r.newSequence();
      const out = Float32Array.from((await r.step([{ cache: seq, row: chain(tokens) }])).logitsAt(0, 4));
      seq.release();
      return out;
    };
    const want = await logits(runner);
    try {
      const inline = path.join(dir, `${model.sha256}-g${GRAPH_VERSION}.onnx`);
      await (await ModelRunner.create(model, { ...onCpu, cacheDir: dir })).dispose();
      // A byte in the middle of the weights: the file still parses, and served other outputs before.
      const bytes = readFileSync(inline);
      bytes[bytes.length >> 1] ^= 0x40;
      writeFileSync(inline, bytes);
      const rebuilt = await ModelRunner.create(model, { ...onCpu, cacheDir: dir });
      expect(rebuilt.graphFromCache).toBe(false);
      expect(maxAbsDiff(await logits(rebuilt), want)).toBeLessThanOrEqual(1e-6);
      await rebuilt.dispose();
      expect((await ModelRunner.create(model, { ...onCpu, cacheDir: dir })).graphFromCache).toBe(true);

      const external = { ...onCpu, cacheDir: dir, externalDataAboveBytes: 0 };
      await (await ModelRunner.create(model, external)).dispose();
      // The graph cut short, then (a large model's usual case) its weights file.
      for (const cut of [inline, `${inline}.data`]) {
        truncateSync(cut, 100);
        const again = await ModelRunner.create(model, external);
        expect(again.graphFromCache, cut).toBe(false);
        expect(maxAbsDiff(await logits(again), want)).toBeLessThanOrEqual(1e-6);
        await again.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('gives the same logits and cached keys/values from one packed output (the GPU layout) as from separate outputs', async () => {
    const packed = await ModelRunner.create(model, { ...onCpu, packedOutputs: true });
    expect(packed.layout.packedOutputs).toBe(true);
    expect(runner.layout.packedOutputs).toBe(false);
    expect(readdirSync(cacheDir)).toContain(`${model.sha256}-g${GRAPH_VERSION}p.onnx`);
    packed.setSplitOverheadTokens(4);
    const histories = [[1, 403, 407], [1, 50, 60, 70, 80], [1, 9]];
    const steps = [
      [[261], [378, 12, 13], [5]],
      [[7], [8], Array.from({ length: 20 }, (_, i) => 3 + ((i * 11) % 400))], // split into two passes
    ];
    const sep = histories.map(() => runner.newSequence());
    const pk = histories.map(() => packed.newSequence());
    for (const rowsOf of [histories, ...steps]) {
      const a = await runner.step(rowsOf.map((t, i) => ({ cache: sep[i], row: chain(t) })));
      const b = await packed.step(rowsOf.map((t, i) => ({ cache: pk[i], row: chain(t) })));
      rowsOf.forEach((t, i) => {
        for (let j = 0; j < t.length; j++) expect(maxAbsDiff(a.logitsAt(i, j), b.logitsAt(i, j))).toBeLessThanOrEqual(1e-6);
        a.commit(i, t.map((_, j) => j));
        b.commit(i, t.map((_, j) => j));
      });
    }
    for (let i = 0; i < sep.length; i++) {
      expect(pk[i].length).toBe(sep[i].length);
      expect(pk[i].capacity).toBe(sep[i].capacity);
      expect(maxAbsDiff(pk[i].keys, sep[i].keys)).toBeLessThanOrEqual(1e-6);
      expect(maxAbsDiff(pk[i].values, sep[i].values)).toBeLessThanOrEqual(1e-6);
    }
    const want = lastReferenceLogits(model, [...histories[2], ...steps[0][2], ...steps[1][2], 4]);
    const last = await packed.step([{ cache: pk[2], row: chain([4]) }]);
    expect(maxAbsDiff(last.logitsAt(0, 0), want)).toBeLessThanOrEqual(1e-4);
    for (const c of [...sep, ...pk]) c.release();
    await packed.dispose();
  });

  it('lays the packed output out as logits, then each layer\'s new keys and values', () => {
    const { nLayers, nKvHeads, headDim, vocabSize } = model.config;
    const at = packedOutputLayout(model.config, 3, 2);
    const perLayer = 3 * nKvHeads * 2 * headDim;
    expect(at.keys[0]).toBe(3 * 2 * vocabSize);
    expect(at.values[0]).toBe(at.keys[0] + perLayer);
    expect(at.keys[nLayers - 1]).toBe(3 * 2 * vocabSize + 2 * (nLayers - 1) * perLayer);
    expect(at.total).toBe(3 * 2 * vocabSize + 2 * nLayers * perLayer);
    // Past 2^31 floats (a 7B-shaped model, 32 rows of 2,048 tokens): offsets stay exact and ascending.
    const big = packedOutputLayout({ ...model.config, dim: 4096, nLayers: 32, nHeads: 32, nKvHeads: 8, headDim: 128, vocabSize: 32000 }, 32, 2048);
    for (let l = 1; l < 32; l++) expect(big.keys[l]).toBeGreaterThan(big.values[l - 1]);
    expect(big.values[31] + 32 * 8 * 2048 * 128).toBe(big.total);
  });

  it('splits a step whose padding would dominate into two passes, with the same logits', async () => {
    const decodeRows = Array.from({ length: 6 }, (_, i) => [1, 50 + i, 60 + i]);
    const prompt = Array.from({ length: 40 }, (_, i) => 3 + ((i * 13) % 400));
    const caches = decodeRows.map(() => runner.newSequence());
    const pre = await runner.step(decodeRows.map((t, i) => ({ cache: caches[i], row: chain(t) })));
    caches.forEach((_, i) => pre.commit(i, [0, 1, 2]));
    const fresh = runner.newSequence();
    // A prompt joins in the middle of the batch.
    const rows = [
      ...caches.slice(0, 3).map((cache) => ({ cache, row: chain([7]) })),
      { cache: fresh, row: chain(prompt) },
      ...caches.slice(3).map((cache) => ({ cache, row: chain([7]) })),
    ];
    const s = await runner.step(rows);
    expect(s.passes).toBe(2);
    expect(maxAbsDiff(s.logitsAt(3, 39), lastReferenceLogits(model, prompt))).toBeLessThanOrEqual(1e-4);
    expect(maxAbsDiff(s.logitsAt(4, 0), lastReferenceLogits(model, [...decodeRows[3], 7]))).toBeLessThanOrEqual(1e-4);
    const arr = s.logitsArray(4);
    expect(arr[s.logitsOffset(4, 0) + 5]).toBe(s.logitsAt(4, 0)[5]);
    s.commit(3, prompt.map((_, i) => i));
    s.commit(5, [0]);
    expect(fresh.length).toBe(40);
    const after = await runner.step([{ cache: fresh, row: chain([9]) }, { cache: caches[4], row: chain([8]) }]);
    expect(after.passes).toBe(1);
    expect(maxAbsDiff(after.logitsAt(0, 0), lastReferenceLogits(model, [...prompt, 9]))).toBeLessThanOrEqual(1e-4);
    expect(maxAbsDiff(after.logitsAt(1, 0), lastReferenceLogits(model, [...decodeRows[4], 7, 8]))).toBeLessThanOrEqual(1e-4);
    for (const c of [...caches, fresh]) c.release();
  });

  it('takes the pass cost it is told: a short tree runs apart from plain rows once a pass is cheap enough', async () => {
    const own = await ModelRunner.create(model, onCpu);
    expect(own.splitsPasses).toBe(true);
    const caches = Array.from({ length: 8 }, () => own.newSequence());
    const pre = await own.step(caches.map((cache, i) => ({ cache, row: chain([1, 40 + i, 80 + i]) })));
    caches.forEach((_, i) => pre.commit(i, [0, 1, 2]));
    // Seven plain rows and one of 5 tokens: 40 padded tokens as one pass, 12 as two.
    const rows = caches.map((cache, i) => ({ cache, row: chain(i === 2 ? [7, 8, 9, 10, 11] : [7]) }));
    expect((await own.step(rows)).passes).toBe(1); // the default pass cost, 32 tokens
    own.setSplitOverheadTokens(15);
    const s = await own.step(rows);
    expect(s.passes).toBe(2);
    expect(maxAbsDiff(s.logitsAt(2, 4), lastReferenceLogits(model, [1, 42, 82, 7, 8, 9, 10, 11]))).toBeLessThanOrEqual(1e-4);
    expect(maxAbsDiff(s.logitsAt(5, 0), lastReferenceLogits(model, [1, 45, 85, 7]))).toBeLessThanOrEqual(1e-4);
    // Not a finite positive cost: ignored.
    own.setSplitOverheadTokens(Infinity);
    expect((await own.step(rows)).passes).toBe(2);
    for (const c of caches) c.release();
    await own.dispose();
  });

  it('keeps rows in their packed-past slots when a row leaves or moves between passes, with the same logits', async () => {
    const histories = Array.from({ length: 5 }, (_, i) => [1, 100 + i, 110 + i, 120 + i]);
    const caches = histories.map(() => runner.newSequence());
    const pre = await runner.step(histories.map((t, i) => ({ cache: caches[i], row: chain(t) })));
    caches.forEach((_, i) => pre.commit(i, [0, 1, 2, 3]));
    // Row 1 has finished; the others run on, with row 3 now carrying a long
    // chain (it goes to the second pass), then back to one pass.
    const long = Array.from({ length: 40 }, (_, i) => 5 + ((i * 7) % 300));
    const kept = [0, 2, 3, 4];
    let s = await runner.step(kept.map((k) => ({ cache: caches[k], row: chain(k === 3 ? long : [9]) })));
    expect(s.passes).toBe(2);
    kept.forEach((k, r) => {
      const n = k === 3 ? long.length : 1;
      const want = lastReferenceLogits(model, [...histories[k], ...(k === 3 ? long : [9])]);
      expect(maxAbsDiff(s.logitsAt(r, n - 1), want)).toBeLessThanOrEqual(1e-4);
      s.commit(r, Array.from({ length: n }, (_, i) => i));
      histories[k].push(...(k === 3 ? long : [9]));
    });
    const order = [4, 3, 0, 2];
    s = await runner.step(order.map((k) => ({ cache: caches[k], row: chain([11]) })));
    expect(s.passes).toBe(1);
    order.forEach((k, r) => expect(maxAbsDiff(s.logitsAt(r, 0), lastReferenceLogits(model, [...histories[k], 11]))).toBeLessThanOrEqual(1e-4));
    for (const c of caches) c.release();
  });

  it('attends short and long pasts apart in one pass, with the logits of one group, step after step', async () => {
    const plain = await ModelRunner.create(model, { ...onCpu, attentionGroups: false });
    // Twelve rows: eight short histories and four long ones (a wide spread of pasts).
    const histories = Array.from({ length: 12 }, (_, i) => {
      const n = i < 8 ? 4 + i : 150 + 20 * i;
      return Array.from({ length: n }, (_, j) => (j === 0 ? 1 : 3 + ((i * 31 + j * 17) % 500)));
    });
    const both = [runner, plain].map((r) => histories.map(() => r.newSequence()));
    for (const [k, r] of [runner, plain].entries()) {
      const pre = await r.step(histories.map((t, i) => ({ cache: both[k][i], row: chain(t) })));
      histories.forEach((t, i) => pre.commit(i, t.map((_, j) => j)));
    }
    // A few steps of trees (root, two children, a grandchild), keeping the first branch.
    const tree = (i: number, step: number) => ({ tokens: Int32Array.from([20 + i, 30 + step, 40 + i, 50]), parents: Int32Array.from([-1, 0, 0, 1]) });
    for (let step = 0; step < 3; step++) {
      const [g, p] = await Promise.all([runner, plain].map((r, k) => r.step(histories.map((_, i) => ({ cache: both[k][i], row: tree(i, step) })))));
      expect(g.attentionGroups).toBe(2);
      expect(p.attentionGroups).toBe(1);
      expect(g.passes).toBe(1);
      for (let i = 0; i < histories.length; i++) {
        for (let t = 0; t < 4; t++) expect(maxAbsDiff(g.logitsAt(i, t), p.logitsAt(i, t)), `row ${i} token ${t}`).toBeLessThanOrEqual(1e-5);
        g.commit(i, [0, 1, 3]);
        p.commit(i, [0, 1, 3]);
        histories[i].push(20 + i, 30 + step, 50);
      }
    }
    // And both agree with the reference forward pass after the commits.
    const s = await runner.step(histories.map((_, i) => ({ cache: both[0][i], row: chain([7]) })));
    for (const i of [0, 7, 8, 11]) expect(maxAbsDiff(s.logitsAt(i, 0), lastReferenceLogits(model, [...histories[i], 7])), `row ${i}`).toBeLessThanOrEqual(1e-4);
    // Pasts alike: one group.
    const alike = await runner.step(histories.slice(0, 8).map((_, i) => ({ cache: both[0][i], row: chain([7]) })));
    expect(alike.attentionGroups).toBe(1);
    for (const c of both.flat()) c.release();
    await plain.dispose();
  });

  it.skipIf(cudaProviderInstalled())('explains that CUDA is not installed when asked for it', async () => {
    const attempt = ModelRunner.create(model, { cacheDir, executionProvider: 'cuda' });
    await expect(attempt).rejects.toThrow(CliError);
    await expect(ModelRunner.create(model, { cacheDir, executionProvider: 'cuda' })).rejects.toThrow(/CUDA execution provider requested but not installed/);
  });

  // Dawn finds no adapter on a machine without a GPU's Vulkan driver (CI); on a
  // GPU host the same test checks the logits instead.
  it('runs on WebGPU where a GPU adapter exists, and otherwise says what it needs', async () => {
    let gpu: ModelRunner;
    try {
      // At most 20 sequences: past 16 slots the store grows to 21, not 32 (a pad that is not a doubling).
      gpu = await ModelRunner.create(model, { cacheDir, executionProvider: 'webgpu', maxSequences: 20 });
    } catch (err) {
      expect(err).toBeInstanceOf(CliError);
      expect((err as Error).message).toMatch(/cannot start the WebGPU execution provider \(it needs a GPU with a Vulkan driver/);
      return;
    }
    try {
      // The WebGPU default keeps keys/values on the GPU: a prefill, then steps that read the committed past.
      expect(gpu.layout.residentKv).toBe(true);
      const tokens = [1, 403, 407, 261, 378];
      const other = [1, 300, 301];
      const cache = gpu.newSequence();
      const cache2 = gpu.newSequence();
      let s = await gpu.step([{ cache, row: chain(tokens) }, { cache: cache2, row: chain(other) }]);
      expect(maxAbsDiff(s.logitsAt(0, tokens.length - 1), lastReferenceLogits(model, tokens))).toBeLessThanOrEqual(1e-3);
      expect(maxAbsDiff(s.logitsAt(1, other.length - 1), lastReferenceLogits(model, other))).toBeLessThanOrEqual(1e-3);
      s.commit(0, [0, 1, 2, 3, 4]);
      s.commit(1, [0, 1, 2]);
      // A tree under 42: siblings 43 and 44; keep 42 -> 44.
      s = await gpu.step([
        { cache, row: { tokens: Int32Array.from([42, 43, 44]), parents: Int32Array.from([-1, 0, 0]) } },
        { cache: cache2, row: chain([302]) },
      ]);
      expect(maxAbsDiff(s.logitsAt(0, 2), lastReferenceLogits(model, [...tokens, 42, 44]))).toBeLessThanOrEqual(1e-3);
      s.commit(0, [0, 2]);
      s.commit(1, [0]);
      s = await gpu.step([{ cache, row: chain([45]) }, { cache: cache2, row: chain([303]) }]);
      expect(maxAbsDiff(s.logitsAt(0, 0), lastReferenceLogits(model, [...tokens, 42, 44, 45]))).toBeLessThanOrEqual(1e-3);
      expect(maxAbsDiff(s.logitsAt(1, 0), lastReferenceLogits(model, [...other, 302, 303]))).toBeLessThanOrEqual(1e-3);
      s.commit(0, [0]);
      // More sequences than the store first holds: it grows on the GPU, and the old pasts stay.
      const slots = gpu.residentSlots;
      const more = Array.from({ length: slots }, () => gpu.newSequence());
      s = await gpu.step([{ cache, row: chain([46]) }, ...more.map((c, i) => ({ cache: c, row: chain([1, 10 + i]) }))]);
      expect(gpu.residentSlots).toBeGreaterThan(slots);
      expect(gpu.residentSlots).toBe(21);
      expect(maxAbsDiff(s.logitsAt(0, 0), lastReferenceLogits(model, [...tokens, 42, 44, 45, 46]))).toBeLessThanOrEqual(1e-3);
      for (const c of more) c.release();
      cache.release();
      cache2.release();
    } finally {
      await gpu.dispose();
    }
  });

  it('reads WebGPU options from SSSD_WEBGPU_OPTIONS over a production default', () => {
    expect(webGpuOptions(undefined)).toEqual({ validationMode: 'disabled' });
    expect(webGpuOptions(' storageBufferCacheMode = simple ,validationMode=basic,')).toEqual({ validationMode: 'basic', storageBufferCacheMode: 'simple' });
    expect(() => webGpuOptions('validationMode')).toThrow(/key=value pairs separated by commas, not "validationMode"/);
    expect(() => webGpuOptions('=x')).toThrow(CliError);
  });

  it('names the providers when SSSD_EXECUTION_PROVIDER is unknown', async () => {
    const saved = process.env.SSSD_EXECUTION_PROVIDER;
    process.env.SSSD_EXECUTION_PROVIDER = 'tpu';
    try {
      await expect(ModelRunner.create(model, { cacheDir })).rejects.toThrow('SSSD_EXECUTION_PROVIDER must be cpu, cuda, webgpu, not "tpu"');
    } finally {
      if (saved === undefined) delete process.env.SSSD_EXECUTION_PROVIDER;
      else process.env.SSSD_EXECUTION_PROVIDER = saved;
    }
  });

  it('forgets truncated positions and swapped row order', async () => {
    const a = runner.newSequence(2);
    const b = runner.newSequence();
    const aTokens = [1, 40, 41, 42, 43, 44];
    const bTokens = [1, 300, 301];
    let s = await runner.step([{ cache: a, row: chain(aTokens) }, { cache: b, row: chain(bTokens) }]);
    s.commit(0, [0, 1, 2, 3, 4, 5]);
    s.commit(1, [0, 1, 2]);
    expect(a.capacity).toBeGreaterThanOrEqual(6); // grew from 2
    // Roll a back to 3 positions, then continue both with the rows swapped.
    a.truncate(3);
    s = await runner.step([{ cache: b, row: chain([302]) }, { cache: a, row: chain([77, 78]) }]);
    expect(maxAbsDiff(s.logitsAt(0, 0), lastReferenceLogits(model, [...bTokens, 302]))).toBeLessThanOrEqual(1e-4);
    expect(maxAbsDiff(s.logitsAt(1, 1), lastReferenceLogits(model, [1, 40, 41, 77, 78]))).toBeLessThanOrEqual(1e-4);
    s.commit(0, [0]);
    s.commit(1, [0, 1]);
    // Same order again: only the new positions are copied into the packed past.
    s = await runner.step([{ cache: b, row: chain([303]) }, { cache: a, row: chain([79]) }]);
    expect(maxAbsDiff(s.logitsAt(0, 0), lastReferenceLogits(model, [...bTokens, 302, 303]))).toBeLessThanOrEqual(1e-4);
    expect(maxAbsDiff(s.logitsAt(1, 0), lastReferenceLogits(model, [1, 40, 41, 77, 78, 79]))).toBeLessThanOrEqual(1e-4);
    a.release();
    b.release();
    await expect(runner.step([{ cache: a, row: chain([1]) }])).rejects.toThrow(/released/);
  });

  it('gives a sequence on a released one\'s buffers the logits of a fresh run (stale positions are never read)', async () => {
    const first = runner.newSequence(40);
    const longTokens = Array.from({ length: 30 }, (_, i) => 1 + ((i * 37) % 500));
    const s1 = await runner.step([{ cache: first, row: chain(longTokens) }]);
    s1.commit(0, longTokens.map((_, i) => i));
    const keys = first.keys;
    first.release();
    const again = runner.newSequence(40);
    expect(again.keys).toBe(keys); // the same buffers, still holding the first sequence's 30 positions
    const tokens = [1, 403, 407];
    let s = await runner.step([{ cache: again, row: chain(tokens) }]);
    s.commit(0, [0, 1, 2]);
    expect(maxAbsDiff(s.logitsAt(0, 2), lastReferenceLogits(model, tokens))).toBeLessThanOrEqual(1e-4);
    s = await runner.step([{ cache: again, row: chain([261]) }]);
    expect(maxAbsDiff(s.logitsAt(0, 0), lastReferenceLogits(model, [...tokens, 261]))).toBeLessThanOrEqual(1e-4);
    again.release();
  });
});
