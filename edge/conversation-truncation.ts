/**
 * OpenAI's Responses `truncation: "auto"`: a conversation too long for the
 * context loses its oldest turns, as OpenAI drops input items, until the
 * prompt and the room the reply needs fit. Never dropped: system and
 * developer messages (the instructions), and the last message (what is being
 * answered), with the call it answers where it is a tool result (and that
 * call's other results, of parallel calls). A turn goes with the tool results
 * right after it, so no result is left answering a call the model no longer sees.
 */
import type { ChatMessage } from './request-schema';

/** The conversation with its first `dropped` turns left out, kept messages in their order. */
function withoutTurns(messages: readonly ChatMessage[], turnStarts: readonly number[], dropped: number): ChatMessage[] {
  if (dropped === 0) return messages.slice();
  const from = dropped < turnStarts.length ? turnStarts[dropped] : lastTurnStart(messages);
  const kept: ChatMessage[] = [];
  for (let i = 0; i < messages.length; i++) {
    if (i >= from || isKept(messages[i])) kept.push(messages[i]);
  }
  return kept;
}

function isKept(message: ChatMessage): boolean {
  return message.role === 'system' || message.role === 'developer';
}

/** Where the undroppable last turn starts: the last message, or, where that is a tool result, the call before its run of results. */
function lastTurnStart(messages: readonly ChatMessage[]): number {
  let i = messages.length - 1;
  while (i > 0 && messages[i].role === 'tool') i--;
  return i < messages.length - 1 && messages[i].role === 'assistant' ? i : messages.length - 1;
}

/** Where each droppable turn starts: a message that is neither kept, a tool result, nor in the last turn. */
function turnStartsOf(messages: readonly ChatMessage[]): number[] {
  const starts: number[] = [];
  const last = lastTurnStart(messages);
  for (let i = 0; i < last; i++) {
    if (!isKept(messages[i]) && messages[i].role !== 'tool') starts.push(i);
  }
  return starts;
}

/**
 * The conversation as it fits: the fewest oldest turns dropped for which
 * `fits` answers (the prompt's ids, say), found by halving (each try renders
 * and encodes the prompt once). Where dropping every droppable turn still
 * does not fit, that shortest conversation and null: the caller refuses it
 * as too long, as it would without truncation.
 */
export function fittedConversation<T>(messages: readonly ChatMessage[], fits: (candidate: ChatMessage[]) => T | null): { messages: ChatMessage[]; fitted: T | null; dropped: number } {
  const starts = turnStartsOf(messages);
  const whole = messages.slice();
  const asIs = fits(whole);
  if (asIs !== null) return { messages: whole, fitted: asIs, dropped: 0 };
  // Dropping more turns never lengthens the prompt, so the fewest that fit are found by bisection:
  // `lo` turns dropped do not fit, `hi` do (starts.length + 1 standing for "none do").
  let lo = 0;
  let hi = starts.length + 1;
  let best: { messages: ChatMessage[]; fitted: T } | null = null;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    const candidate = withoutTurns(messages, starts, mid);
    const fitted = fits(candidate);
    if (fitted === null) {
      lo = mid;
    } else {
      hi = mid;
      best = { messages: candidate, fitted };
    }
  }
  if (best !== null) return { ...best, dropped: hi };
  return { messages: withoutTurns(messages, starts, starts.length), fitted: null, dropped: starts.length };
}
