/**
 * The prefix cache over a generation's life, with the real stories260K
 * runner's sequences: what a finished generation leaves behind, what a
 * joining one takes, and what the byte gauge says.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { generateRequestSchema } from '../../../shared/protocol';
import { loadModel } from '../../../gpu-pool/model/load-model';
import { ModelRunner } from '../../../gpu-pool/runtime/model-runner';
import type { SequenceKvCache } from '../../../gpu-pool/runtime/kv-cache';
import { PREFIX_BLOCK, PrefixCache } from '../../../gpu-pool/scheduler/prefix-cache';
import { PrefixReuse } from '../../../gpu-pool/scheduler/prefix-reuse';
import { Generation } from '../../../gpu-pool/scheduler/generation';
import type { BatchRunner } from '../../../gpu-pool/scheduler/batch-runner';
import { PoolMetrics } from '../../../gpu-pool/metrics/pool-metrics';
import { models } from '../../support/shared-data';

let runner: ModelRunner;
beforeAll(async () => {
  runner = await ModelRunner.create(await loadModel(models.stories260K.checkpoint));
});

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

function generation(promptIds: number[], extra: Record<string, unknown> = {}): Generation<SequenceKvCache> {
  const request = generateRequestSchema.parse({ id: 'g', promptIds, maxTokens: 64, ...extra });
  return new Generation<SequenceKvCache>(request, { send: () => {}, end: () => {} }, null, null, 16, promptIds.length + 64);
}

/** A sequence of `capacity` holding `length` positions, position p's keys and values all p (every layer and head). */
function sequence(capacity: number, length: number): SequenceKvCache {
  const s = runner.newSequence(capacity);
  s.reserve(length);
  const { nLayers, nKvHeads, headDim } = runner.config;
  for (let lh = 0; lh < nLayers * nKvHeads; lh++) {
    for (let p = 0; p < length; p++) {
      for (let d = 0; d < headDim; d++) {
        s.keys[(lh * s.capacity + p) * headDim + d] = p;
        s.values[(lh * s.capacity + p) * headDim + d] = p;
      }
    }
  }
  s.advance(length);
  return s;
}

function reuse(maxBytes = 64 << 20): { prefixes: PrefixCache<SequenceKvCache>; reuse: PrefixReuse<SequenceKvCache>; metrics: PoolMetrics } {
  const prefixes = new PrefixCache<SequenceKvCache>({ maxBytes, bytesOf: (s) => s.byteLength });
  const metrics = new PoolMetrics();
  return { prefixes, reuse: new PrefixReuse(prefixes, runner, metrics), metrics };
}

async function gauge(metrics: PoolMetrics, name: string): Promise<number> {
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await metrics.registry.metrics())?.[1]);
}

describe('PrefixReuse', () => {
  it('takes only a runner that can copy a prefix', () => {
    expect(PrefixReuse.usable(runner)).toBe(true);
    const plain = { config: runner.config, newSequence: () => runner.newSequence(), step: () => Promise.reject(new Error('unused')) } as unknown as BatchRunner<SequenceKvCache>;
    expect(PrefixReuse.usable(plain)).toBe(false);
    expect(() => new PrefixReuse(new PrefixCache<SequenceKvCache>({ maxBytes: 1, bytesOf: () => 0 }), plain, new PoolMetrics())).toThrow(/copy a prefix/);
  });

  it("keeps a finished generation's cache as it is when its reservation was about its length", async () => {
    const { prefixes, reuse: r, metrics } = reuse();
    const prompt = range(1, 40);
    const gen = generation(prompt);
    gen.output.push(7, 8);
    const seq = sequence(48, 41);
    expect(r.keep(gen, seq)).toBe(true);
    expect(seq.isReleased).toBe(false);
    const match = prefixes.lookup('', Int32Array.from([...prompt, 7]), 41);
    expect(match?.sequence).toBe(seq);
    expect(await gauge(metrics, 'sssd_pool_prefix_cache_bytes')).toBe(seq.byteLength);
  });

  it('keeps a copy of its own length of a cache that stopped well short of its reservation, and frees the rest', async () => {
    const { prefixes, reuse: r, metrics } = reuse();
    const prompt = range(1, 20);
    const gen = generation(prompt);
    gen.output.push(7, 8, 9, 10, 11);
    const seq = sequence(256, 24);
    expect(r.keep(gen, seq)).toBe(true);
    expect(seq.isReleased).toBe(true);
    const kept = prefixes.lookup('', Int32Array.from([...prompt, 7, 8, 9, 10, 99]), 24)!;
    expect(kept.sequence).not.toBe(seq);
    expect(kept.length).toBe(24);
    expect(kept.sequence.capacity).toBeLessThan(2 * 24);
    // The copy holds the same keys and values.
    const { headDim } = runner.config;
    expect(kept.sequence.keys[23 * headDim]).toBe(23);
    expect(await gauge(metrics, 'sssd_pool_prefix_cache_bytes')).toBe(kept.sequence.byteLength);
  });

  it('keeps nothing shorter than a block', () => {
    const { prefixes, reuse: r } = reuse();
    const gen = generation(range(1, PREFIX_BLOCK - 2));
    const seq = sequence(PREFIX_BLOCK, PREFIX_BLOCK - 1);
    expect(r.keep(gen, seq)).toBe(false);
    expect(prefixes.size).toBe(0);
  });

  it('takes a kept prefix of exactly one block', () => {
    const { reuse: r } = reuse();
    r.keep(generation(range(1, 40)), sequence(48, 40));
    const next = generation([...range(1, PREFIX_BLOCK), 300]);
    r.restore(next, runner.newSequence(64));
    expect(next.cachedPromptTokens).toBe(PREFIX_BLOCK);
  });

  it('starts a joining generation with the longest kept prefix, and still feeds its last prompt token', async () => {
    const { reuse: r, metrics } = reuse();
    const first = generation(range(1, 40));
    r.keep(first, sequence(48, 40));
    const prompt = [...range(1, 36), 300, 301];
    const next = generation(prompt);
    const fresh = runner.newSequence(64);
    r.restore(next, fresh);
    expect(next.cachedPromptTokens).toBe(36);
    expect(fresh.length).toBe(36);
    expect(Array.from(next.pending.subarray(0, next.pendingLength))).toEqual([300, 301]);
    expect(fresh.keys[35 * runner.config.headDim]).toBe(35);
    const text = await metrics.registry.metrics();
    expect(Number(/vllm:prefix_cache_queries_total (\d+)/.exec(text)?.[1])).toBe(prompt.length);
    expect(Number(/vllm:prefix_cache_hits_total (\d+)/.exec(text)?.[1])).toBe(36);
    // The very same prompt: all of it but the token whose logits give the first output.
    const again = generation(range(1, 40));
    r.restore(again, runner.newSequence(64));
    expect(again.cachedPromptTokens).toBe(39);
    expect(again.pendingLength).toBe(1);
  });

  it('keeps the prefix joining prompts keep taking, and evicts the one none took, when the cache is full', () => {
    const seqBytes = sequence(48, 40).byteLength;
    const { prefixes, reuse: r } = reuse(2 * seqBytes);
    const hot = sequence(48, 40);
    const cold = sequence(48, 40);
    r.keep(generation(range(1, 40)), hot);
    r.keep(generation(range(100, 40)), cold);
    // A prompt that starts as the first, older one did: that prefix is the recently used one now.
    r.restore(generation([...range(1, 36), 300, 301]), runner.newSequence(64));
    r.keep(generation(range(200, 40)), sequence(48, 40));
    expect(cold.isReleased).toBe(true);
    expect(hot.isReleased).toBe(false);
    expect(prefixes.lookup('', Int32Array.from(range(1, 40)), 40)?.sequence).toBe(hot);
  });

  it('takes nothing for a prompt being scored, or from another salt', () => {
    const { reuse: r } = reuse();
    r.keep(generation(range(1, 40)), sequence(48, 40));
    const scored = generation(range(1, 40), { promptLogprobs: 0 });
    const seq = runner.newSequence(64);
    r.restore(scored, seq);
    expect(scored.cachedPromptTokens).toBe(0);
    expect(seq.length).toBe(0);
    const other = generation(range(1, 40), { cacheSalt: 'tenant-b' });
    r.restore(other, runner.newSequence(64));
    expect(other.cachedPromptTokens).toBe(0);
  });

  it("clears one salt's sequences or all, and the gauge follows", async () => {
    const { prefixes, reuse: r, metrics } = reuse();
    const a = sequence(48, 40);
    r.keep(generation(range(1, 40), { cacheSalt: 'a' }), a);
    r.keep(generation(range(100, 40), { cacheSalt: 'b' }), sequence(48, 40));
    const bytes = a.byteLength;
    expect(r.clear('a')).toEqual({ sequences: 1, bytes });
    expect(a.isReleased).toBe(true);
    expect(prefixes.size).toBe(1);
    expect(await gauge(metrics, 'sssd_pool_prefix_cache_bytes')).toBe(prefixes.totalBytes);
    expect(r.clear().sequences).toBe(1);
    expect(await gauge(metrics, 'sssd_pool_prefix_cache_bytes')).toBe(0);
  });

  it("shares a running generation's prompt until it ends", () => {
    const { prefixes, reuse: r } = reuse();
    const gen = generation(range(1, 40));
    gen.cache = sequence(128, 40);
    r.share(gen);
    expect(gen.sharedPrefix).not.toBeNull();
    expect(prefixes.lookup('', Int32Array.from(range(1, 40)), 39)?.sequence).toBe(gen.cache);
    r.unshare(gen);
    expect(gen.sharedPrefix).toBeNull();
    expect(prefixes.lookup('', Int32Array.from(range(1, 40)), 39)).toBeNull();
  });
});
