/**
 * A cheap bound on what can fit the served model's context, by length alone,
 * before (or instead of) tokenizing: a token stands for at most the
 * vocabulary's longest piece (`maxTokenBytes` bytes), and a UTF-16 unit for
 * at least one byte, so a text of more than contextLength × that many units
 * (with slack) cannot fit. The prompt path refuses such a prompt with it, and
 * the Conversations API such an item (conversation-fit.ts).
 */
import type { ServedModel } from './served-model';

/**
 * Slack for normalisation, which can shrink a text before it is tokenized
 * (NFKC composing characters: 1.5x at most in practice).
 */
export const NORMALISATION_SLACK = 4;

/** Whether a text of `length` UTF-16 units certainly encodes to more than `tokens` tokens (false: it may not). */
export function moreTokensThan(length: number, tokens: number, model: ServedModel): boolean {
  // A token stands for a byte at least: most prompts are passed without the vocabulary's longest token.
  return length > tokens * NORMALISATION_SLACK && length > tokens * model.maxTokenBytes() * NORMALISATION_SLACK;
}

/** The most UTF-16 units a text of at most `tokens` tokens may have by this bound (what an error names). */
export function charactersWithin(tokens: number, model: ServedModel): number {
  return tokens * Math.max(1, model.maxTokenBytes()) * NORMALISATION_SLACK;
}
