/**
 * Plain batched autoregressive generation on a ModelRunner: every request's
 * prompt is prefilled as a chain in the first step, then each step feeds one
 * token per running sequence; a sequence leaves the batch when it finishes.
 *
 * Finish reasons: `stop` when the model emits one of its eos ids (the eos id IS
 * kept as the last element of outputIds, as in the llama2.c fixtures);
 * `length` after maxTokens tokens; `context_length` when the next token would
 * need a position past the model's context.
 */
import type { ModelRunner } from './model-runner';
import type { SequenceKvCache } from './kv-cache';
import { GumbelNoise } from '../../shared/sampling/gumbel-noise';
import { argmax, sampleWithNoise } from './sampling';

export interface GenerationRequest {
  promptIds: number[];
  maxTokens: number;
  /** 0 or absent = greedy. */
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
}

export type GenerationFinishReason = 'stop' | 'length' | 'context_length';

export interface GenerationResult {
  outputIds: number[];
  finishReason: GenerationFinishReason;
}

export interface GenerateOptions {
  /** Called with each new token of request `index`, in order (for streaming). */
  onToken?: (index: number, tokenId: number) => void;
  /** Called with the logits request `index`'s next token is drawn from, and its output so far (prompt not included). */
  onLogits?: (index: number, logits: Float32Array, output: readonly number[]) => void;
}

interface Running {
  index: number;
  request: GenerationRequest;
  cache: SequenceKvCache;
  /** Sampling noise (seeded; null = greedy): the same draws the pool's verifier makes, so a seed gives the pool's tokens. */
  noise: GumbelNoise | null;
  pending: Int32Array; // tokens fed next step (prompt, then the last token)
  parents: Int32Array;
  output: number[];
}

const ROOT_ONLY: readonly number[] = [0];

/** Parents of a chain of n new tokens (a prompt fed whole): each token's is the one before it. */
export function chainParents(n: number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i - 1;
  return p;
}

export function validateRequest(r: GenerationRequest, contextLength: number, vocabSize: number): void {
  if (r.promptIds.length === 0) throw new RangeError('the prompt needs at least one token (BOS)');
  if (r.promptIds.length > contextLength) {
    throw new RangeError(`the prompt has ${r.promptIds.length} tokens, more than the context length ${contextLength}`);
  }
  for (const id of r.promptIds) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new RangeError(`prompt token ${id} outside the vocabulary`);
  }
  if (!Number.isInteger(r.maxTokens) || r.maxTokens < 1) throw new RangeError(`maxTokens must be a positive integer, not ${r.maxTokens}`);
}

export async function generate(runner: ModelRunner, requests: GenerationRequest[], opts: GenerateOptions = {}): Promise<GenerationResult[]> {
  const { contextLength, vocabSize, eosIds } = runner.config;
  for (const r of requests) validateRequest(r, contextLength, vocabSize);
  const results: GenerationResult[] = requests.map(() => ({ outputIds: [], finishReason: 'length' }));
  const probs = new Float32Array(vocabSize);
  const one = new Int32Array([-1]);
  let running: Running[] = requests.map((request, index) => ({
    index,
    request,
    cache: runner.newSequence(Math.min(contextLength, request.promptIds.length + request.maxTokens)),
    noise: request.temperature && request.temperature > 0 ? new GumbelNoise(request.seed ?? Date.now()) : null,
    pending: Int32Array.from(request.promptIds),
    parents: chainParents(request.promptIds.length),
    output: results[index].outputIds,
  }));

  try {
    while (running.length > 0) {
      const step = await runner.step(running.map((s) => ({ cache: s.cache, row: { tokens: s.pending, parents: s.parents } })));
      const still: Running[] = [];
      for (let b = 0; b < running.length; b++) {
        const s = running[b];
        const n = s.pending.length;
        const logits = step.logitsAt(b, n - 1);
        const r = s.request;
        opts.onLogits?.(s.index, logits, s.output);
        // The token's sequence index: prompt + output so far.
        const next = s.noise
          ? sampleWithNoise(logits, { temperature: r.temperature ?? 1, topP: r.topP ?? 1, topK: r.topK ?? 0 }, probs, s.noise, r.promptIds.length + s.output.length)
          : argmax(logits);
        s.output.push(next);
        opts.onToken?.(s.index, next);
        let reason: GenerationFinishReason | null = null;
        if (eosIds.includes(next)) reason = 'stop';
        else if (s.output.length >= r.maxTokens) reason = 'length';
        // The new token would be fed at position cache.length (after this commit): it must exist.
        else if (s.cache.length + n >= contextLength) reason = 'context_length';
        if (reason) {
          results[s.index].finishReason = reason;
          s.cache.release();
          continue;
        }
        step.commit(b, n === 1 ? ROOT_ONLY : s.parents.map((_, i) => i));
        if (n !== 1) {
          s.pending = new Int32Array(1);
          s.parents = one;
        }
        s.pending[0] = next;
        still.push(s);
      }
      running = still;
    }
  } finally {
    for (const s of running) if (!s.cache.isReleased) s.cache.release();
  }
  return results;
}
