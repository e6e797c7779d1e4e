/**
 * The served model's own continuations of a corpus's story openings, added to
 * the global datastore next to the corpus.
 *
 * Why: a datastore drafts well where its text is what the model will write.
 * A corpus only resembles the model's output; the model's greedy continuation
 * of an opening *is* what a temperature-0 request with a similar opening
 * produces, word for word, once their contexts meet. On the development
 * workload this raised the mean acceptance length at 8 draft nodes from 4.31
 * to 5.18 (docs/benchmarks.md). Nothing is trained: this is the model run
 * forward on text the datastore already holds, once, when the file is built.
 *
 * Openings are a document's first sentence, its first two, and so on (what a
 * user sends to start a story). Each is continued greedily; the first one is
 * also sampled once at each extra temperature, since requests that sample
 * diverge quickly and one sample per document covers their variety. Sampled
 * continuations are seeded by the document's index, so a build is
 * reproducible. The defaults, 0.7 and 1 (the API default), cover the usual
 * sampling temperatures: the sample at 1 also feeds the model's next-token
 * table the contexts such requests visit (sampled requests' τ as served at
 * 8 / 16 / 32 draft nodes 2.74 / 3.10 / 3.50 → 2.84 / 3.27 / 3.67, for a
 * build of 137 s instead of 100 s on 2 cores).
 */
import type { Tokenizer } from '../../shared/tokenizer/tokenizer';
import { generate, type GenerationRequest } from '../runtime/generate';
import type { ModelRunner } from '../runtime/model-runner';
import type { NextTokenTableBuilder } from '../../shared/drafting/next-token-table';

export interface SelfContinuationOptions {
  /** Openings per document: its first 1, 2, … `openings` sentences. */
  openings: number;
  /** Temperatures at which the first opening is sampled, besides greedy (0s are ignored). */
  sampledTemperatures: readonly number[];
  /** New tokens per continuation (clipped to the model's context). */
  maxTokens: number;
  /** Continue only the first this many documents (a huge corpus needs no more; default: all). */
  documents?: number;
  /** Also read the model's distributions at every position of the documents themselves into the next-token table (corpus-distributions.ts). */
  readCorpus?: boolean;
}

export const DEFAULT_SELF_CONTINUATIONS: SelfContinuationOptions = { openings: 3, sampledTemperatures: [0.7, 1], maxTokens: 200, readCorpus: true };

/** A sentence ends at . ! or ? (and any closing quotes right after it). */
const SENTENCE = /[^.!?]*[.!?]+["”']?/g;

/** The document's first 1..max sentences, each prefix once, trimmed; none for text without a sentence end. */
export function storyOpenings(text: string, max: number): string[] {
  const out: string[] = [];
  let end = 0;
  SENTENCE.lastIndex = 0;
  for (let m = SENTENCE.exec(text); m !== null && out.length < max; m = SENTENCE.exec(text)) {
    end = m.index + m[0].length;
    const prefix = text.slice(0, end).trim();
    if (prefix.length > 0 && prefix !== out[out.length - 1]) out.push(prefix);
  }
  return out;
}

/** The generation jobs for these documents, in a fixed order (documents first, then openings, then temperatures). */
export function selfContinuationJobs(texts: readonly string[], tokenizer: Tokenizer, contextLength: number, opts: SelfContinuationOptions): GenerationRequest[] {
  const jobs: GenerationRequest[] = [];
  texts.forEach((text, doc) => {
    const openings = storyOpenings(text, opts.openings);
    openings.forEach((opening, i) => {
      const promptIds = tokenizer.encode(opening, { bos: true });
      if (promptIds.length >= contextLength) return;
      const maxTokens = Math.max(1, Math.min(opts.maxTokens, contextLength - promptIds.length));
      jobs.push({ promptIds, maxTokens, temperature: 0 });
      if (i > 0) return;
      opts.sampledTemperatures.forEach((temperature, t) => {
        if (temperature > 0) jobs.push({ promptIds, maxTokens, temperature, seed: doc * 131 + t + 1 });
      });
    });
  });
  return jobs;
}

/**
 * Runs the jobs in batches and hands each finished document (prompt ids, BOS
 * first, then the continuation without its end-of-story id) to `add`, in job
 * order.
 */
export async function generateSelfContinuations(
  runner: ModelRunner,
  jobs: readonly GenerationRequest[],
  add: (doc: number[]) => void,
  opts: {
    batchSize?: number;
    onProgress?: (done: number, total: number) => void;
    /** Also take in the model's distribution at every generated position (next-token-table.ts). */
    nextTokens?: NextTokenTableBuilder;
  } = {},
): Promise<{ documents: number; tokens: number }> {
  const batchSize = Math.max(1, opts.batchSize ?? 64);
  const eos = runner.config.eosIds;
  let tokens = 0;
  opts.onProgress?.(0, jobs.length);
  for (let i = 0; i < jobs.length; i += batchSize) {
    const batch = jobs.slice(i, i + batchSize);
    const table = opts.nextTokens;
    // The last 8 tokens of prompt + output, for the table's keys.
    const tail = new Int32Array(8);
    const onLogits = table
      ? (j: number, logits: Float32Array, output: readonly number[]): void => {
          const prompt = batch[j].promptIds;
          const end = prompt.length + output.length;
          const n = Math.min(tail.length, end);
          for (let k = 0; k < n; k++) {
            const at = end - n + k;
            tail[k] = at < prompt.length ? prompt[at] : output[at - prompt.length];
          }
          table.add(tail, n, logits);
        }
      : undefined;
    const results = await generate(runner, batch, { onLogits });
    results.forEach((r, j) => {
      const out = r.outputIds;
      const end = out.length > 0 && eos.includes(out[out.length - 1]) ? out.length - 1 : out.length;
      const doc = batch[j].promptIds.concat(out.slice(0, end));
      tokens += doc.length;
      add(doc);
    });
    opts.onProgress?.(Math.min(jobs.length, i + batch.length), jobs.length);
  }
  return { documents: jobs.length, tokens };
}
