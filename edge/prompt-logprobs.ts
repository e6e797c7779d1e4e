/**
 * vLLM's `prompt_logprobs`: each prompt token's log-probability given the
 * tokens before it, with the `prompt_logprobs` most likely tokens there, in
 * vLLM's shape (a list, null for the first token, then per token an object
 * keyed by token id: `{logprob, rank, decoded_token}`, the prompt token
 * first, then the others by rank, as vLLM's dict has them; responseJson
 * writes them so, where JavaScript would order the ids). Completions put it
 * in each choice, chat at the top of the response; never in a stream (vLLM
 * refuses a count above 0 with `stream`). The pool scores the prompt (its
 * `prompt-logprobs` event), as it does for `echo` with `logprobs`.
 */
import { badRequest } from './api-error';
import { tokenString, type TokenNames } from './openai-format';
import { withKeyOrder } from './ordered-json';

/** Most alternatives per prompt token: the pool's limit, and vLLM's default `--max-logprobs`. */
export const MAX_PROMPT_LOGPROBS = 20;

/** One token's entry at a prompt position (vLLM's `Logprob`). */
export interface PromptTokenLogprob {
  logprob: number;
  /**
   * 1 = the most likely: how many tokens are at least as likely, as vLLM
   * counts it. A pool from before ranks sends the top `prompt_logprobs`
   * alone: a prompt token outside them (every one, with 0) has null then.
   */
  rank: number | null;
  decoded_token: string;
}

export type PromptLogprobs = Array<Record<string, PromptTokenLogprob> | null>;

/**
 * How many alternatives the request's `prompt_logprobs` asks the pool for
 * (0 = the prompt tokens' own), or null for none, with vLLM's refusals: -1
 * (the whole vocabulary) is past the 20 allowed, as at a vLLM server with its
 * default `--max-logprobs`; a stream cannot carry them. A stream asking for 0
 * gets nothing, as vLLM's, and the pool is not asked.
 */
export function promptLogprobsAsked(body: { prompt_logprobs?: number | null; stream?: boolean | null }, vocabSize: number): number | null {
  const asked = body.prompt_logprobs;
  if (asked === undefined || asked === null) return null;
  if (asked === -1) {
    throw badRequest(`prompt_logprobs: -1 asks for the whole vocabulary (${vocabSize} tokens), more than the ${MAX_PROMPT_LOGPROBS} allowed.`, 'prompt_logprobs', 'invalid_value');
  }
  if (body.stream === true) {
    if (asked > 0) throw badRequest('prompt_logprobs are not available when stream is true.', 'prompt_logprobs', 'invalid_value');
    return null;
  }
  return asked;
}

/**
 * The pool's scores for `promptIds[1..]` (`logprobs`, `ranks` in the whole
 * vocabulary, and `top`: at least `k` most likely per token, most likely
 * first) in vLLM's shape, `k` alternatives listed. Without `ranks` (a pool
 * from before them), a token among all the pool sent (more than `k` when the
 * echo asked for more) has its place there as its rank, and null outside.
 */
export function promptLogprobsOf(
  promptIds: readonly number[],
  logprobs: readonly number[],
  top: ReadonlyArray<ReadonlyArray<readonly [number, number]>> | undefined,
  k: number,
  tokenizer: TokenNames,
  ranks?: readonly number[],
): PromptLogprobs {
  const out: PromptLogprobs = [null];
  for (let i = 1; i < promptIds.length; i++) {
    const id = promptIds[i];
    const alternatives = top?.[i - 1] ?? [];
    const place = ranks ? ranks[i - 1] - 1 : alternatives.findIndex(([altId]) => altId === id);
    const position: Record<string, PromptTokenLogprob> = {};
    const order = [String(id)];
    position[id] = { logprob: clamped(logprobs[i - 1]), rank: place < 0 ? null : place + 1, decoded_token: tokenString(tokenizer, id) };
    const n = Math.min(k, alternatives.length);
    for (let r = 0; r < n; r++) {
      const [altId, altLogprob] = alternatives[r];
      // The prompt token among them keeps its first place and takes this entry, as a Python dict does.
      if (altId !== id) order.push(String(altId));
      position[altId] = { logprob: clamped(altLogprob), rank: r + 1, decoded_token: tokenString(tokenizer, altId) };
    }
    out.push(withKeyOrder(position, order));
  }
  return out;
}

/** vLLM's clamp_prompt_logprobs: -inf, which JSON cannot hold, as -9999. */
function clamped(logprob: number): number {
  return logprob === -Infinity ? -9999 : logprob;
}
