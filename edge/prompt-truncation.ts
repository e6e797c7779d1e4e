/**
 * vLLM's `truncate_prompt_tokens`: the prompt cut to its last k tokens before
 * it is generated from (a long chat, retrieved text that overflows), by vLLM's
 * rules (vllm/renderers/params.py, TokenizeParams): -1 keeps as many as fit
 * beside max_tokens, a k past that is refused, and a prompt of k tokens or
 * fewer is kept whole. A completion's text prompt keeps its BOS, as Hugging
 * Face's left truncation keeps the special tokens it adds (BOS, then the last
 * k - 1); token ids, and a chat's templated prompt (whose BOS the template
 * writes, tokenized by vLLM without special tokens), lose their first tokens
 * whatever they are. vLLM's `truncation_side: "right"` keeps the first k
 * instead (BOS, if the prompt has one, and the k - 1 after it: what HF's
 * right truncation keeps of a text prompt too).
 */
import { badRequest } from './api-error';

/** vLLM's truncation_side: "left" (its default, and null's) keeps the prompt's end, "right" its start. */
export type TruncationSide = 'left' | 'right';

/**
 * How many prompt tokens to keep (null: the prompt whole): `asked` (≥ 1, or
 * -1) checked against the context less `maxTokens` (what the reply may take;
 * null, the rest of the context, reserves none), as vLLM checks it before
 * tokenizing. `limitParam` names the reply's bound in the errors.
 */
export function promptTokensKept(asked: number | null | undefined, contextLength: number, maxTokens: number | null, limitParam: string): number | null {
  if (asked === undefined || asked === null) return null;
  const room = contextLength - (maxTokens ?? 0);
  // A reply that takes the whole context leaves no prompt to keep: refused naming the reply's bound (as vLLM
  // checks max_tokens first), not a truncation of "at most -88", an empty prompt, or the uncut prompt's length.
  if (room < 1) {
    throw badRequest(
      `This model's maximum context length is ${contextLength} tokens, and ${maxTokens} are asked for the reply (${limitParam}), which leaves no room for a prompt however truncate_prompt_tokens cuts it; ask for fewer output tokens.`,
      limitParam,
      'context_length_exceeded',
    );
  }
  if (asked === -1) return room;
  if (asked > room) {
    throw badRequest(
      `truncate_prompt_tokens (${asked}) is more than this model's context (${contextLength} tokens) less ${limitParam} (${maxTokens ?? 0}): at most ${room}.`,
      'truncate_prompt_tokens',
      'invalid_value',
    );
  }
  return asked;
}

/**
 * `keep` of `ids` (null: all): the last ones, the first kept too where
 * `keepFirst` (a text prompt's BOS); or, cut on the right, the first ones.
 */
export function truncatedPrompt(ids: number[], keep: number | null, keepFirst: boolean, side: TruncationSide = 'left'): number[] {
  if (keep === null || ids.length <= keep) return ids;
  if (side === 'right') return ids.slice(0, keep);
  if (!keepFirst) return ids.slice(ids.length - keep);
  const tail = ids.slice(ids.length - (keep - 1));
  tail.unshift(ids[0]);
  return tail;
}
