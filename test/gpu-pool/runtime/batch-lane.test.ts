// The graph inputs a batch lane builds, step after step: each row's packed past
// and tree mask against what its cache and tree say, across stride changes.
import { describe, expect, it } from 'vitest';
import type { Tensor } from 'onnxruntime-node';
import { BatchLane, type StepRows } from '../../../gpu-pool/runtime/batch-lane';
import { SequenceKvCache } from '../../../gpu-pool/runtime/kv-cache';
import { MASKED, pastKeyName, pastValueName } from '../../../gpu-pool/graph/llama-graph';
import type { ModelConfig } from '../../../gpu-pool/model/model-config';
import { seededRandom } from '../../../shared/seeded-random';

const config: ModelConfig = {
  name: 'lane-test',
  dim: 8,
  hiddenDim: 16,
  nLayers: 2,
  nHeads: 2,
  nKvHeads: 2,
  headDim: 4,
  vocabSize: 16,
  contextLength: 320,
  ropeTheta: 10000,
  normEps: 1e-5,
  bosId: 1,
} as ModelConfig;
const layout = { nLayers: config.nLayers, nKvHeads: config.nKvHeads, headDim: config.headDim, maxCapacity: config.contextLength };


/** Appends `count` positions of fresh values to a cache. */
function append(cache: SequenceKvCache, count: number, draw: () => number): void {
  const start = cache.length;
  cache.reserve(start + count);
  const { headDim: hd, nLayers, nKvHeads } = config;
  for (let l = 0; l < nLayers; l++) {
    for (let h = 0; h < nKvHeads; h++) {
      const base = ((l * nKvHeads + h) * cache.capacity + start) * hd;
      for (let i = 0; i < count * hd; i++) {
        cache.keys[base + i] = draw();
        cache.values[base + i] = -draw();
      }
    }
  }
  cache.advance(count);
}

/** A tree of n tokens: node 0 the root, each later node under an earlier one. */
function tree(n: number, draw: () => number): { tokens: Int32Array; parents: Int32Array } {
  const tokens = Int32Array.from({ length: n }, () => Math.floor(draw() * config.vocabSize));
  const parents = Int32Array.from({ length: n }, (_, i) => (i === 0 ? -1 : Math.floor(draw() * i)));
  return { tokens, parents };
}

/** Checks one prepare()'s feeds against the rows it was given, in slot order. */
function expectInputs(feeds: Record<string, Tensor>, rows: StepRows, order: Int32Array, count: number): number {
  const { nLayers, nKvHeads, headDim: hd } = config;
  const [B, , P] = feeds[pastKeyName(0)].dims;
  expect(B).toBe(count);
  const mask = feeds.attention_mask.data as Float32Array;
  const T = feeds.attention_mask.dims[2];
  const S = P + T;
  for (let b = 0; b < B; b++) {
    const { cache, row } = rows[order[b]];
    const past = cache.length;
    for (let l = 0; l < nLayers; l++) {
      const keys = feeds[pastKeyName(l)].data as Float32Array;
      const values = feeds[pastValueName(l)].data as Float32Array;
      for (let h = 0; h < nKvHeads; h++) {
        const src = (l * nKvHeads + h) * cache.capacity * hd;
        const dst = (b * nKvHeads + h) * P * hd;
        for (let i = 0; i < past * hd; i++) {
          if (keys[dst + i] !== cache.keys[src + i] || values[dst + i] !== cache.values[src + i]) {
            throw new Error(`packed past of row ${b} (layer ${l}, kv head ${h}) differs from its cache at position ${Math.floor(i / hd)} of ${past}`);
          }
        }
      }
    }
    for (let i = 0; i < T; i++) {
      // What (b, i) may see: its past and its tree ancestors and itself; padding only itself.
      const sees = new Set<number>();
      if (i < row.tokens.length) {
        for (let j = 0; j < past; j++) sees.add(j);
        for (let a = i; a >= 0; a = row.parents[a]) sees.add(P + a);
      } else sees.add(P + i);
      const m = (b * T + i) * S;
      for (let j = 0; j < S; j++) if (mask[m + j] !== (sees.has(j) ? 0 : MASKED)) throw new Error(`mask of row ${b} token ${i} column ${j}: ${mask[m + j]}`);
    }
  }
  return P;
}

describe('BatchLane', () => {
  it('packs every row\'s past and tree mask as its cache and tree say, while strides grow and shrink and rows come, go and move', () => {
    const draw = seededRandom(7);
    const lane = new BatchLane(config);
    let live: SequenceKvCache[] = [];
    const fresh = (prompt: number): SequenceKvCache => {
      const cache = new SequenceKvCache(layout, 16);
      append(cache, prompt, draw);
      return cache;
    };
    for (let i = 0; i < 6; i++) live.push(fresh(5 + Math.floor(draw() * 40)));
    const strides: number[] = [];
    const order = new Int32Array(16);
    for (let step = 0; step < 160; step++) {
      // Some rows sit a step out (the other pass of a split step), in shuffled order.
      const members = live.map((_, r) => r).filter(() => draw() < 0.85);
      if (members.length === 0) members.push(0);
      const rows: StepRows = live.map((cache) => ({ cache, row: tree(1 + Math.floor(draw() * 4), draw) }));
      lane.assignSlots(rows, Int32Array.from(members), members.length, order);
      const feeds = lane.prepare(rows, order, members.length);
      strides.push(expectInputs(feeds, rows, order, members.length));
      // The step's accepted tokens; now and then positions rewritten, a row done, a long prompt joining.
      for (const r of members) {
        const cache = live[r];
        if (draw() < 0.05 && cache.length > 2) {
          // Positions taken back and written anew, past where the lane packed them.
          cache.truncate(cache.length - 2);
          append(cache, 3, draw);
        } else if (cache.length < config.contextLength - 8) append(cache, 1 + Math.floor(draw() * 3), draw);
      }
      if (step % 16 === 15 || live.some((c) => c.length >= config.contextLength - 8)) {
        const longest = live.reduce((a, c, i) => (c.length > live[a].length ? i : a), 0);
        live = live.filter((_, i) => i !== longest);
        live.push(fresh(draw() < 0.4 ? 100 + Math.floor(draw() * 150) : 5 + Math.floor(draw() * 40)));
      }
    }
    // The run crossed buckets both ways, past the slack a shrinking stride keeps.
    const changes = strides.slice(1).map((p, i) => p - strides[i]);
    expect(changes.filter((d) => d > 0).length).toBeGreaterThan(5);
    expect(changes.filter((d) => d < -64).length).toBeGreaterThanOrEqual(3);
  });
});
