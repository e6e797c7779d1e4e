/**
 * Conversation items past a length bound, which no response could read,
 * are not stored (review h213, finding 2: a key stored 1,000,000-character items, kept 30 days,
 * that every response on their conversation refused as past the context;
 * storage for free, no generation asked). Checked by length alone
 * (context-bound.ts), as the prompt path refuses a prompt far too long:
 *
 * - an item whose own text cannot fit the context: kept in a prompt it is
 *   too long, dropped by truncation the model never reads it;
 * - system and developer messages that together cannot fit: `truncation:
 *   "auto"` never drops them, so no response on the conversation could run.
 *
 * A conversation as a whole past the context is kept: OpenAI's conversations
 * outgrow the context, and `truncation: "auto"` answers them from their last
 * turns (conversation-truncation.ts); its size is bounded per record by
 * SSSD_RESPONSE_MAX_BYTES. The bound is not a tokenization: an item under it
 * may still not fit the context, and is stored (review h217, finding 4); the
 * key's storage budget (storage-budget.ts) is what bounds those.
 */
import { badRequest } from './api-error';
import { charactersWithin, moreTokensThan } from './context-bound';
import type { InputItem } from './responses-request';
import type { ServedModel } from './served-model';

type ItemText = Extract<InputItem, { type: 'function_call_output' }>['output'];

function partsLength(parts: ItemText): number {
  if (typeof parts === 'string') return parts.length;
  let length = 0;
  for (const part of parts) length += part.type === 'refusal' ? part.refusal.length : part.text.length;
  return length;
}

/** The UTF-16 length of what an item stores beside its id: a message's text, a call's name, arguments and call_id, an output's text and call_id. */
export function itemTextLength(item: InputItem): number {
  if (item.type === 'function_call') return item.name.length + item.arguments.length + item.call_id.length;
  if (item.type === 'function_call_output') return partsLength(item.output) + item.call_id.length;
  return partsLength(item.content);
}

function neverDropped(item: InputItem): boolean {
  return item.type !== 'function_call' && item.type !== 'function_call_output' && (item.role === 'system' || item.role === 'developer');
}

/**
 * Refuses (400 `context_length_exceeded`) `items` about to be added to a conversation of `existing` where one of them
 * can never fit `model`'s context (naming `items.<i>`), or where the conversation's system and developer messages,
 * theirs included, together cannot (naming `items`).
 */
export function refuseUnreadableItems(items: readonly InputItem[], existing: readonly InputItem[], model: ServedModel): void {
  const contextLength = model.info.model.contextLength;
  items.forEach((item, i) => {
    const length = itemTextLength(item);
    if (!moreTokensThan(length, contextLength, model)) return;
    throw badRequest(
      `items.${i} is ${length} characters, which can never fit this model's context (${contextLength} tokens; an item of more than ${charactersWithin(contextLength, model)} characters cannot): no response could read it, so it is not stored. Send a shorter item.`,
      `items.${i}`,
      'context_length_exceeded',
    );
  });
  if (!items.some(neverDropped)) return;
  const kept = [...existing, ...items].filter(neverDropped).reduce((sum, item) => sum + itemTextLength(item), 0);
  if (!moreTokensThan(kept, contextLength, model)) return;
  throw badRequest(
    `The conversation's system and developer messages would come to ${kept} characters, which can never fit this model's context (${contextLength} tokens; more than ${charactersWithin(contextLength, model)} characters cannot): truncation never drops them, so no response on it could run. Send shorter instructions.`,
    'items',
    'context_length_exceeded',
  );
}
