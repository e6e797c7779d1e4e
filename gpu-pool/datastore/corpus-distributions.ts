/**
 * The model's next-token distributions at every position of the corpus's own
 * text, added to the next-token table beside those at the positions it wrote.
 *
 * Why: the table drafts sampled requests, and a request sampled at
 * temperature 0.7-1 writes text more like the corpus (what the model was
 * trained to imitate) than like its own greedy continuations. Reading the
 * corpus takes one prefill pass per few documents, far cheaper than
 * generating the same number of positions token by token: on the default
 * corpus, 378 K positions in ~11 s of a ~2-minute build, and the sampled
 * requests' τ with table trees at 4 / 8 / 16 nodes went from 2.65 / 3.20 /
 * 3.67 to 2.67 / 3.27 / 3.75 (docs/benchmarks.md, "The corpus read into the
 * next-token table").
 */
import { chainParents } from '../runtime/generate';
import type { ModelRunner } from '../runtime/model-runner';
import type { NextTokenTableBuilder } from '../../shared/drafting/next-token-table';

/** Tokens (rows × longest row) per pass: bounds the attention scores' memory (rows × heads × T²). */
const TOKENS_PER_PASS = 4096;

/**
 * Runs each document (its token ids, BOS first, clipped to the model's
 * context) through the model in one prefill and adds the distribution at
 * every position but the last to `table`. Returns the positions added.
 */
export async function readCorpusDistributions(
  runner: ModelRunner,
  documents: readonly Int32Array[],
  table: NextTokenTableBuilder,
  onProgress?: (done: number, total: number) => void,
): Promise<number> {
  const { contextLength } = runner.config;
  const docs = documents.map((d) => d.subarray(0, contextLength)).filter((d) => d.length >= 2);
  // Shortest first, so a pass's rows pad to about the same length.
  docs.sort((a, b) => a.length - b.length);
  let added = 0;
  let done = 0;
  onProgress?.(0, docs.length);
  for (let i = 0; i < docs.length; ) {
    let end = i + 1;
    while (end < docs.length && (end + 1 - i) * docs[end].length <= TOKENS_PER_PASS) end++;
    const batch = docs.slice(i, end);
    const caches = batch.map((d) => runner.newSequence(d.length));
    try {
      const step = await runner.step(batch.map((tokens, b) => ({ cache: caches[b], row: { tokens, parents: chainParents(tokens.length) } })));
      batch.forEach((tokens, b) => {
        for (let t = 0; t + 1 < tokens.length; t++) table.add(tokens, t + 1, step.logitsAt(b, t));
        added += tokens.length - 1;
      });
    } finally {
      for (const c of caches) c.release();
    }
    done += batch.length;
    onProgress?.(done, docs.length);
    i = end;
  }
  return added;
}
