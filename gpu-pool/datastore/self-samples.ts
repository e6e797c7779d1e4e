/**
 * A corpus where none is at hand: the served model's own stories from
 * nothing (its start token alone), sampled at temperature 1, each seeded by
 * its index so a build is reproducible. The datastore is then built from them
 * as from any corpus, with the model's continuations of their openings
 * (self-continuations.ts) beside them.
 *
 * Why: a datastore drafts well where its text is what the model will write,
 * and a model's unconditional samples cover what it writes. On the
 * development workload 1,500 of them (~25 s on 2 cores for stories260K)
 * built a datastore that drafts almost as well as the 380K-token corpus
 * the development machines have: τ 5.59 / 9.64 at 8 / 32 draft nodes
 * against 5.80 / 10.18 (docs/benchmarks.md, "A datastore without a
 * corpus"). A user outside, with the model alone, gets that without
 * fetching any data. Nothing is trained.
 */
import type { Tokenizer } from '../../shared/tokenizer/tokenizer';
import { generate } from '../runtime/generate';
import type { ModelRunner } from '../runtime/model-runner';

export interface SelfSampleOptions {
  /** Stories to sample. */
  count: number;
  /** Most tokens per story (clipped to the model's context). */
  maxTokens?: number;
  /** Rows per batch (default 64). */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
}

/** Seeds start here: far from the small seeds requests commonly send. */
const SEED_BASE = 1_000_003;

/** Most tokens a story is sampled to (fewer where the context is shorter): longer ones drafted no better (τ 5.44 / 9.18 with 511). */
export const SELF_SAMPLE_MAX_TOKENS = 300;

/** The stories' texts, end-of-story ids left out, in seed order; an empty one (the model ended it at once) is left out and counted. */
export async function sampleSelfStories(runner: ModelRunner, tokenizer: Tokenizer, opts: SelfSampleOptions): Promise<{ texts: string[]; empty: number }> {
  const { bosId, eosIds, contextLength } = runner.config;
  const maxTokens = Math.max(1, Math.min(opts.maxTokens ?? SELF_SAMPLE_MAX_TOKENS, contextLength - 1));
  const batchSize = Math.max(1, opts.batchSize ?? 64);
  const texts: string[] = [];
  let empty = 0;
  opts.onProgress?.(0, opts.count);
  for (let start = 0; start < opts.count; start += batchSize) {
    const batch = Array.from({ length: Math.min(batchSize, opts.count - start) }, (_, j) => ({ promptIds: [bosId], maxTokens, temperature: 1, seed: SEED_BASE + start + j }));
    for (const result of await generate(runner, batch)) {
      const ids = result.outputIds.filter((id) => !eosIds.includes(id));
      const text = tokenizer.decode(ids).trim();
      if (text.length > 0) texts.push(text);
      else empty++;
    }
    opts.onProgress?.(Math.min(opts.count, start + batch.length), opts.count);
  }
  return { texts, empty };
}
