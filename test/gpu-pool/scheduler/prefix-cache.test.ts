/**
 * Prompt prefix caching: the index over kept sequences (real KV caches), and
 * the scheduler with the real stories260K runner taking a cached prefix
 * instead of prefilling it, with the same output as a full prefill.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { generateRequestSchema, type PoolEvent } from '../../../shared/protocol';
import { loadModel } from '../../../gpu-pool/model/load-model';
import { ModelRunner } from '../../../gpu-pool/runtime/model-runner';
import { SequenceKvCache } from '../../../gpu-pool/runtime/kv-cache';
import { PREFIX_BLOCK, PrefixCache } from '../../../gpu-pool/scheduler/prefix-cache';
import { Scheduler } from '../../../gpu-pool/scheduler/scheduler';
import { drafterFactory } from '../../../gpu-pool/scheduler/drafter-factory';
import { CostModel } from '../../../gpu-pool/budget/cost-model';
import { TreeBudget } from '../../../gpu-pool/budget/tree-budget';
import { PoolMetrics } from '../../../gpu-pool/metrics/pool-metrics';
import { models } from '../../support/shared-data';

const layout = { nLayers: 2, nKvHeads: 1, headDim: 2, maxCapacity: 256 };

/** A sequence whose position p holds keys p + 0.25·d and values -p (layer-independent), for `tokens`. */
function sequenceOf(tokens: number[]): SequenceKvCache {
  const s = new SequenceKvCache(layout, tokens.length);
  for (let lh = 0; lh < layout.nLayers * layout.nKvHeads; lh++) {
    for (let p = 0; p < tokens.length; p++) {
      for (let d = 0; d < layout.headDim; d++) {
        s.keys[(lh * s.capacity + p) * layout.headDim + d] = p + 0.25 * d;
        s.values[(lh * s.capacity + p) * layout.headDim + d] = -p;
      }
    }
  }
  s.advance(tokens.length);
  return s;
}

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

function cache(maxBytes = 1 << 20): PrefixCache<SequenceKvCache> {
  return new PrefixCache<SequenceKvCache>({ maxBytes, bytesOf: (s) => s.byteLength });
}

describe('prefix cache index', () => {
  it('finds the longest shared prefix, extended past the last block boundary, within the limit', () => {
    const c = cache();
    const kept = range(1, 40);
    expect(c.store('', Int32Array.from(kept), sequenceOf(kept))).toBe(true);
    // Shares 37 tokens, then differs.
    const prompt = [...range(1, 37), 999, 998];
    expect(c.lookup('', prompt, prompt.length - 1)?.length).toBe(37);
    // The limit cuts it (the last prompt token must still be fed).
    expect(c.lookup('', prompt, 20)?.length).toBe(20);
    // Shorter than a block: not worth a copy.
    expect(c.lookup('', [...range(1, PREFIX_BLOCK - 1), 7, 7, 7], 50)).toBeNull();
    // Differs inside the first block.
    expect(c.lookup('', [1, 2, 3, 99, ...range(5, 30)], 50)).toBeNull();
  });

  it('shares prefixes only within a salt', () => {
    const c = cache();
    const kept = range(1, 32);
    c.store('tenant-a', Int32Array.from(kept), sequenceOf(kept));
    expect(c.lookup('tenant-a', [...kept, 5], 32)?.length).toBe(32);
    expect(c.lookup('tenant-b', [...kept, 5], 32)).toBeNull();
    expect(c.lookup('', [...kept, 5], 32)).toBeNull();
  });

  it('keeps one sequence for a text it already holds, and drops a kept one that a longer one extends', () => {
    const c = cache();
    const short = range(1, 20);
    const long = range(1, 50);
    const a = sequenceOf(short);
    expect(c.store('', Int32Array.from(short), a)).toBe(true);
    const b = sequenceOf(long);
    expect(c.store('', Int32Array.from(long), b)).toBe(true);
    expect(a.isReleased).toBe(true);
    expect(c.size).toBe(1);
    // Already held whole by the long one: not kept, and the caller still owns it.
    const again = sequenceOf(short);
    expect(c.store('', Int32Array.from(short), again)).toBe(false);
    expect(again.isReleased).toBe(false);
    expect(c.lookup('', [...long, 1], 50)?.sequence).toBe(b);
  });

  it('evicts the least recently used sequences to stay within its bytes, releasing them', () => {
    const one = sequenceOf(range(1, 32)).byteLength;
    const c = cache(3 * one);
    const seqs = [0, 1, 2].map((k) => sequenceOf(range(100 * k + 1, 32)));
    seqs.forEach((s, k) => c.store('', Int32Array.from(range(100 * k + 1, 32)), s));
    // Use the oldest: the second becomes the least recently used.
    c.touch(c.lookup('', [...range(1, 32), 0], 32)!);
    const fourth = sequenceOf(range(301, 32));
    c.store('', Int32Array.from(range(301, 32)), fourth);
    expect(c.size).toBe(3);
    expect(c.totalBytes).toBe(3 * one);
    expect(seqs[1].isReleased).toBe(true);
    expect(seqs[0].isReleased).toBe(false);
    expect(c.lookup('', [...range(101, 32), 0], 32)).toBeNull();
    // Too big for the bound at all: not kept.
    const huge = sequenceOf(range(1, 200));
    expect(c.store('x', Int32Array.from(range(1, 200)), huge)).toBe(false);
    c.clear();
    expect(c.size).toBe(0);
    expect(fourth.isReleased).toBe(true);
  });

  it('still finds a shared prefix in an older sequence when a newer one that shared its blocks is evicted', () => {
    const x = range(1, 32);
    const a = [...x, ...range(500, 16)];
    const b = [...x, ...range(600, 16)];
    const c = cache(2 * sequenceOf(a).byteLength);
    const kept = sequenceOf(a);
    c.store('', Int32Array.from(a), kept);
    c.store('', Int32Array.from(b), sequenceOf(b));
    // A's chat goes on (A used last), then another text pushes B out.
    c.touch(c.lookup('', [...a, 1], 48)!);
    c.store('', Int32Array.from(range(900, 48)), sequenceOf(range(900, 48)));
    expect(c.size).toBe(2);
    // A still holds the shared 32 tokens and its own first 47: both found, in A.
    expect(c.lookup('', [...x, ...range(700, 16)], 47)).toMatchObject({ sequence: kept, length: 32 });
    expect(c.lookup('', a, 47)).toMatchObject({ sequence: kept, length: 47 });
    // Likewise when a running generation's prompt shared them and ends.
    const live = c.share('', Int32Array.from([...x, 7, 7]), sequenceOf([...x, 7, 7]))!;
    c.unshare(live);
    expect(c.lookup('', [...x, 5], 32)).toMatchObject({ sequence: kept, length: 32 });
  });

  it("forgets a salt's running prompts too: no longer offered, and not kept when their generations end", () => {
    const c = cache();
    const prompt = range(1, 40);
    const since = c.epoch;
    const running = sequenceOf(prompt);
    c.share('tenant', Int32Array.from(prompt), running);
    const other = c.share('other', Int32Array.from(prompt), sequenceOf(prompt));
    expect(c.lookup('tenant', [...prompt, 0], 40)?.sequence).toBe(running);
    c.clear('tenant');
    expect(c.lookup('tenant', [...prompt, 0], 40)).toBeNull();
    expect(c.lookup('other', [...prompt, 0], 40)).not.toBeNull();
    // Came in before the clear: not kept. Another salt's, and one that came in after, are.
    expect(c.store('tenant', Int32Array.from(prompt), running, since)).toBe(false);
    expect(c.lookup('tenant', [...prompt, 0], 40)).toBeNull();
    c.unshare(other!);
    expect(c.store('other', Int32Array.from(prompt), sequenceOf(prompt), since)).toBe(true);
    expect(c.store('tenant', Int32Array.from(prompt), sequenceOf(prompt), c.epoch)).toBe(true);
    expect(c.lookup('tenant', [...prompt, 0], 40)?.length).toBe(40);
    // One queued or still prefilling at the clear shares its prompt with nobody after it.
    const late = c.epoch;
    c.clear('queued');
    expect(c.share('queued', Int32Array.from(prompt), sequenceOf(prompt), late)).toBeNull();
    expect(c.lookup('queued', [...prompt, 0], 40)).toBeNull();
    expect(c.share('queued', Int32Array.from(prompt), sequenceOf(prompt), c.epoch)).not.toBeNull();
    // Clearing everything covers every salt's running generations.
    const before = c.epoch;
    c.clear();
    expect(c.store('other', Int32Array.from(prompt), sequenceOf(prompt), before)).toBe(false);
    expect(c.size).toBe(0);
  });

  it('remembers a salt\'s clear only while a generation that came in before it runs', () => {
    const c = cache();
    const prompt = range(1, 40);
    // Nothing running: an operator clearing tenant after tenant leaves one record, not one each.
    for (let i = 0; i < 1000; i++) c.clear(`tenant-${i}`, c.epoch);
    expect(c.clearedSaltCount).toBe(1);
    // One running since before these clears: their records stay, and it still keeps nothing of theirs.
    const since = c.epoch;
    c.clear('a', since);
    c.clear('b', since);
    expect(c.store('a', Int32Array.from(prompt), sequenceOf(prompt), since)).toBe(false);
    expect(c.store('c', Int32Array.from(prompt), sequenceOf(prompt), since)).toBe(true);
    expect(c.clearedSaltCount).toBeGreaterThanOrEqual(2);
    // It ended: the next clear forgets them.
    c.clear('d', c.epoch);
    expect(c.clearedSaltCount).toBe(1);
  });

  it("offers a running generation's prompt until it ends, without owning or evicting it", () => {
    const c = cache(1);
    const prompt = range(1, 33);
    const running = sequenceOf(prompt);
    const shared = c.share('', Int32Array.from(prompt), running)!;
    expect(c.lookup('', [...prompt, 9], 33)?.sequence).toBe(running);
    // No bytes of the bound, never evicted: a store that cannot fit leaves it alone.
    expect(c.totalBytes).toBe(0);
    expect(c.store('', Int32Array.from(range(1, 40)), sequenceOf(range(1, 40)))).toBe(false);
    expect(running.isReleased).toBe(false);
    c.unshare(shared);
    expect(c.lookup('', [...prompt, 9], 33)).toBeNull();
    expect(running.isReleased).toBe(false);
    // A kept sequence keeps its blocks when a running one shares the same prompt, and its own store is not refused for it.
    const big = cache();
    const kept = sequenceOf(range(1, 20));
    big.store('', Int32Array.from(range(1, 20)), kept);
    const live = big.share('', Int32Array.from(range(1, 40)), sequenceOf(range(1, 40)))!;
    expect(big.lookup('', range(1, 21), 20)?.sequence).toBe(kept);
    expect(big.lookup('', range(1, 41), 40)?.length).toBe(40);
    const copy = sequenceOf(range(1, 40));
    expect(big.store('', Int32Array.from(range(1, 40)), copy)).toBe(true);
    big.unshare(live);
    // The kept copy of the same text answers once the running one is gone.
    expect(big.lookup('', range(1, 41), 40)).toMatchObject({ sequence: copy, length: 40 });
  });

  it('copies the matched positions of every layer into a fresh sequence', () => {
    const from = sequenceOf(range(1, 40));
    const to = new SequenceKvCache(layout, 8);
    to.copyPrefixFrom(from, 33);
    expect(to.length).toBe(33);
    for (let lh = 0; lh < 2; lh++) {
      expect(to.keys[(lh * to.capacity + 32) * 2 + 1]).toBe(32.25);
      expect(to.values[(lh * to.capacity + 32) * 2]).toBe(-32);
    }
    expect(() => to.copyPrefixFrom(from, 3)).toThrow(/empty/);
    expect(() => new SequenceKvCache(layout, 8).copyPrefixFrom(from, 41)).toThrow(RangeError);
  });
});

describe('scheduler with a prefix cache (real runner)', () => {
  let runner: ModelRunner;
  beforeAll(async () => {
    runner = await ModelRunner.create(await loadModel(models.stories260K.checkpoint));
  });

  const cost = new CostModel({ fixed: 1, perRow: 0.01, perPaddedToken: 0.01, perToken: 0, perTokenPair: 0, perPastToken: 0, perPastRow: 0 });

  function scheduler(prefixCache: PrefixCache<SequenceKvCache> | null, metrics = new PoolMetrics(), prefillChunk = 0): Scheduler<SequenceKvCache> {
    return new Scheduler(runner, {
      limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 100_000 },
      budget: new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }),
      metrics,
      createDrafter: drafterFactory(null),
      prefixCache,
      prefillChunk,
    });
  }

  async function run(s: Scheduler<SequenceKvCache>, body: Record<string, unknown>) {
    const events: PoolEvent[] = [];
    const done = new Promise<void>((resolve) => s.submit(generateRequestSchema.parse(body), { send: (e) => events.push(e), end: resolve }));
    await done;
    const last = events.at(-1) as Extract<PoolEvent, { type: 'done' }>;
    const ids = events.flatMap((e) => (e.type === 'tokens' ? e.ids : []));
    const promptLogprobs = events.find((e): e is Extract<PoolEvent, { type: 'prompt-logprobs' }> => e.type === 'prompt-logprobs');
    return { ids, usage: last.usage, promptLogprobs };
  }

  const STORY = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 285, 336, 261, 401, 389, 274];

  it("takes a finished chat turn's keys/values for the next turn's prompt and emits what a full prefill emits", async () => {
    const metrics = new PoolMetrics();
    const prefixes = cache(64 << 20);
    const s = scheduler(prefixes, metrics);
    const plain = scheduler(null);
    const first = await run(s, { id: 't1', promptIds: STORY, maxTokens: 24, speculation: 'off' });
    expect(first.usage.cachedPromptTokens).toBe(0);
    expect(prefixes.size).toBe(1);
    // The next turn: the whole first exchange, then more.
    const next = [...STORY, ...first.ids, 298, 315, 421];
    for (const [name, extra] of [
      ['greedy, off', { speculation: 'off' }],
      ['greedy, context', { speculation: 'context' }],
      ['sampled, sssd', { speculation: 'sssd', sampling: { temperature: 0.9, seed: 7 } }],
    ] as const) {
      const id = name.replace(/\W+/g, '-');
      const cached = await run(s, { id: `c-${id}`, promptIds: next, maxTokens: 32, ...extra });
      const full = await run(plain, { id: `p-${id}`, promptIds: next, maxTokens: 32, ...extra });
      expect(cached.ids, name).toEqual(full.ids);
      // The first turn's cache held its prompt and all its output but the last token, which was never fed.
      // Later runs find the earlier runs of this same prompt, which hold all of it but the token that must be fed.
      expect(cached.usage.cachedPromptTokens, name).toBe(name === 'greedy, off' ? STORY.length + first.ids.length - 1 : next.length - 1);
      expect(cached.usage.cachedPromptTokens, name).toBeLessThan(next.length);
      expect(full.usage.cachedPromptTokens, name).toBe(0);
    }
    const text = await metrics.registry.metrics();
    expect(Number(/vllm:prefix_cache_hits_total (\d+)/.exec(text)?.[1])).toBe(STORY.length + first.ids.length - 1 + 2 * (next.length - 1));
    expect(Number(/sssd_pool_prefix_cache_bytes (\d+)/.exec(text)?.[1])).toBe(prefixes.totalBytes);
    await s.close();
    expect(prefixes.size).toBe(0);
    await plain.close();
  });

  it('with chunked prefill, what the cache does not hold goes in by chunks and emits what a full prefill emits', async () => {
    const s = scheduler(cache(64 << 20), new PoolMetrics(), 8);
    const plain = scheduler(null);
    const first = await run(s, { id: 'k1', promptIds: STORY, maxTokens: 24, speculation: 'off' });
    const next = [...STORY, ...first.ids, 298, 315, 421, 395, 317, 285, 336, 261, 401, 389, 274, 298, 315];
    const cached = await run(s, { id: 'k2', promptIds: next, maxTokens: 32, speculation: 'sssd' });
    const full = await run(plain, { id: 'k3', promptIds: next, maxTokens: 32, speculation: 'sssd' });
    expect(cached.usage.cachedPromptTokens).toBe(STORY.length + first.ids.length - 1);
    expect(cached.ids).toEqual(full.ids);
    await s.close();
    await plain.close();
  });

  it("shares a running generation's prompt with one that arrives while it runs", async () => {
    const prefixes = cache(64 << 20);
    const s = scheduler(prefixes);
    const plain = scheduler(null);
    const prompt = [...STORY, ...STORY.slice(1)];
    const events: PoolEvent[] = [];
    let second!: Promise<Awaited<ReturnType<typeof run>>>;
    const first = new Promise<void>((resolve) =>
      s.submit(generateRequestSchema.parse({ id: 'long', promptIds: prompt, maxTokens: 48, speculation: 'off' }), {
        send: (e) => {
          events.push(e);
          // Its prompt is in its cache after its first step: a request arriving now finds it.
          if (e.type === 'tokens' && events.filter((x) => x.type === 'tokens').length === 1) {
            second = run(s, { id: 'joiner', promptIds: [...prompt, 298, 315], maxTokens: 16 });
          }
        },
        end: resolve,
      }),
    );
    const joined = await (async () => {
      await first;
      return second;
    })();
    expect(joined.usage.cachedPromptTokens).toBe(prompt.length);
    const full = await run(plain, { id: 'joiner-plain', promptIds: [...prompt, 298, 315], maxTokens: 16 });
    expect(joined.ids).toEqual(full.ids);
    await s.close();
    await plain.close();
  });

  it('keeps the prompt of a generation that ends in its first step (as one whose whole answer was drafted does)', async () => {
    const s = scheduler(cache(64 << 20));
    const prompt = [...STORY, ...STORY.slice(1)];
    const first = await run(s, { id: 'one-step', promptIds: prompt, maxTokens: 1 });
    expect(first.usage.speculation.steps).toBe(1);
    // Its last step was its prefill: committed before it finished, so the prompt is there for the next.
    const again = await run(s, { id: 'again', promptIds: [...prompt, ...first.ids, 298], maxTokens: 2 });
    expect(again.usage.cachedPromptTokens).toBe(prompt.length);
    await s.close();
  });

  it('keeps tenants apart by salt, and scores a prompt from its own prefill', async () => {
    const s = scheduler(cache(64 << 20));
    const prompt = [...STORY, ...STORY.slice(1)];
    await run(s, { id: 'a1', promptIds: prompt, maxTokens: 4, cacheSalt: 'tenant-a' });
    const other = await run(s, { id: 'b1', promptIds: prompt, maxTokens: 4, cacheSalt: 'tenant-b' });
    expect(other.usage.cachedPromptTokens).toBe(0);
    const same = await run(s, { id: 'a2', promptIds: prompt, maxTokens: 4, cacheSalt: 'tenant-a' });
    expect(same.usage.cachedPromptTokens).toBe(prompt.length - 1);
    // A cancelled generation leaves its committed positions too (the edge cancels at a stop string).
    const long = [...prompt, ...STORY.slice(1)];
    const events: PoolEvent[] = [];
    const cancelled = new Promise<void>((resolve) => {
      s.submit(generateRequestSchema.parse({ id: 'c1', promptIds: long, maxTokens: 64, cacheSalt: 'tenant-c' }), {
        send: (e) => {
          events.push(e);
          if (e.type === 'tokens' && events.filter((x) => x.type === 'tokens').length === 3) s.cancel('c1');
        },
        end: resolve,
      });
    });
    await cancelled;
    expect(events.at(-1)).toMatchObject({ type: 'done', finishReason: 'cancelled' });
    const after = await run(s, { id: 'c2', promptIds: [...long, 298], maxTokens: 2, cacheSalt: 'tenant-c' });
    expect(after.usage.cachedPromptTokens).toBe(long.length);
    // A scored prompt needs the logits at every position: prefilled whole, even with its prefix cached.
    const scored = await run(s, { id: 'a3', promptIds: prompt, maxTokens: 1, cacheSalt: 'tenant-a', promptLogprobs: 0 });
    expect(scored.usage.cachedPromptTokens).toBe(0);
    expect(scored.promptLogprobs?.logprobs).toHaveLength(prompt.length - 1);
    await s.close();
  });
});
