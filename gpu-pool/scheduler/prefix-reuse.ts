/**
 * What the scheduler does with the prefix cache (prefix-cache.ts) over a
 * generation's life: it joins with the longest prompt prefix a kept sequence
 * holds, shares its prompt with others from its first step, and offers its
 * cache for keeping when it ends. Only with a runner that can copy a prefix
 * from one sequence into another.
 */
import type { PoolMetrics } from '../metrics/pool-metrics';
import type { BatchRunner, RunnerSequence } from './batch-runner';
import type { Generation } from './generation';
import { PREFIX_BLOCK, type PrefixCache } from './prefix-cache';

export class PrefixReuse<S extends RunnerSequence> {
  /** Throws where the runner cannot copy a prefix (see `usable`). */
  constructor(
    private readonly cache: PrefixCache<S>,
    private readonly runner: BatchRunner<S>,
    private readonly metrics: PoolMetrics,
  ) {
    if (!runner.copyPrefix) throw new Error('prefix reuse needs a runner that can copy a prefix');
  }

  /** Whether a runner can take prefixes from the cache. */
  static usable<S extends RunnerSequence>(runner: BatchRunner<S>): boolean {
    return runner.copyPrefix !== undefined;
  }

  /**
   * Starts the generation's cache with the longest prompt prefix a kept
   * sequence holds (at least the last prompt token is still fed: its logits
   * give the first output token). Not for a prompt being scored: its
   * log-probabilities need the prefill's logits at every position.
   */
  restore(gen: Generation<S>, sequence: S): void {
    if (gen.request.promptLogprobs !== undefined) return;
    const prompt = gen.promptIds;
    this.metrics.prefixCacheQueries.inc(prompt.length);
    const match = this.cache.lookup(gen.cacheSalt, prompt, prompt.length - 1);
    if (!match) return;
    this.runner.copyPrefix!(match.sequence, sequence, match.length);
    this.cache.touch(match);
    gen.pending = prompt.subarray(match.length);
    gen.pendingLength = prompt.length - match.length;
    gen.cachedPromptTokens = match.length;
    this.metrics.prefixCacheHits.inc(match.length);
  }

  /**
   * Starts a preempted generation's cache, resumed by recompute with output,
   * with the longest prefix of its context (its pending tokens: prompt +
   * output) a kept sequence holds, its own kept at preemption most likely;
   * the last token is still fed. Its usage's cachedPromptTokens stay the
   * first admission's. Returns the positions restored.
   */
  restoreContext(gen: Generation<S>, sequence: S): number {
    const context = gen.pending;
    const match = this.cache.lookup(gen.cacheSalt, context, context.length - 1);
    if (!match) return 0;
    this.runner.copyPrefix!(match.sequence, sequence, match.length);
    this.cache.touch(match);
    gen.pending = context.subarray(match.length);
    gen.pendingLength = context.length - match.length;
    return match.length;
  }

  /** Offers a running generation's prompt, all in its cache now, to other prompts while it runs. */
  share(gen: Generation<S>): void {
    gen.sharedPrefix = this.cache.share(gen.cacheSalt, gen.promptIds, gen.cache!, gen.prefixEpoch);
  }

  /** Takes back what share offered, as the generation ends. */
  unshare(gen: Generation<S>): void {
    if (gen.sharedPrefix) this.cache.unshare(gen.sharedPrefix);
    gen.sharedPrefix = null;
  }

  /**
   * Offers a finished generation's cache for keeping; true when kept (the
   * prefix cache owns it then). A cache more than twice the size of what it
   * holds (a generation that stopped well short of its reservation) is copied
   * to one of its length first, so the byte bound holds sequences, not slack;
   * others are kept as they are: a copy of every finished generation was new
   * memory for the garbage collector to chase (6-9% of the pool's throughput
   * at concurrency 128).
   */
  keep(gen: Generation<S>, sequence: S): boolean {
    const length = sequence.length;
    if (length < PREFIX_BLOCK) return false;
    const tokens = gen.contextTokens(length);
    const salt = gen.cacheSalt;
    if (sequence.capacity === undefined || sequence.capacity <= 2 * length) {
      const kept = this.cache.store(salt, tokens, sequence, gen.prefixEpoch);
      if (kept) this.metrics.prefixCacheBytes.set(this.cache.totalBytes);
      return kept;
    }
    const compact = this.runner.newSequence(length);
    this.runner.copyPrefix!(sequence, compact, length);
    if (this.cache.store(salt, tokens, compact, gen.prefixEpoch)) {
      sequence.release();
      this.metrics.prefixCacheBytes.set(this.cache.totalBytes);
      return true;
    }
    compact.release();
    return false;
  }

  /** Clears so far: a generation records it when it comes in (Generation.prefixEpoch). */
  get epoch(): number {
    return this.cache.epoch;
  }

  /** Forgets the kept sequences: all, or one salt's (`oldestLive`: see PrefixCache.clear). */
  clear(salt?: string, oldestLive?: number): { sequences: number; bytes: number } {
    const cleared = this.cache.clear(salt, oldestLive);
    this.metrics.prefixCacheBytes.set(this.cache.totalBytes);
    return cleared;
  }
}
