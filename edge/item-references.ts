/**
 * The Responses API's `item_reference` input items: an item of an earlier
 * stored response, named by its id instead of sent again (the AI SDK's
 * OpenAI provider sends its earlier replies so while `store` is on). An id
 * this server made carries its response's hex (responses-format.ts, itemId),
 * so a reference costs one read of that response; an id a client made, of
 * an item of no stored response of this key, or of one expired or deleted,
 * is OpenAI's "Item with id ... not found." (responses-request.ts, resolved).
 */
import { badRequest } from './api-error';
import { responseOfItem, type OutputItem } from './responses-format';
import type { InputItem, RequestItem } from './responses-request';
import { ReadBudgetSpent, type ReadBudget, type ResponseStore, type StoredResponse } from './response-store';

/**
 * Stored responses one request may read for its references: each is a KV
 * read (of a value that can hold megabytes of conversation), and a Worker's
 * invocation has a bounded number of them.
 */
export const MAX_REFERENCED_RESPONSES = 64;

/**
 * Characters of stored responses one request's references may parse: parsing runs on the isolate's one thread, and
 * 64 records of 3.5 MB (a chain's conversation, kept whole) held every other request on it ~0.7 s (review h97). Four
 * records at the default bound on one (SSSD_RESPONSE_MAX_BYTES, 4 MiB); an AI SDK conversation reads one.
 */
export const MAX_REFERENCED_CHARS = 16 * 1024 * 1024;

/** An output item as the input item it is when sent back: a message of the assistant's text, or the call. */
export function asInputItem(item: OutputItem): InputItem {
  if (item.type === 'function_call') return { type: 'function_call', id: item.id, call_id: item.call_id, name: item.name, arguments: item.arguments };
  return { type: 'message', id: item.id, role: 'assistant', content: item.content.map((part) => ({ type: 'output_text' as const, text: part.text })) };
}

/** What a request's references found: the items by id, and the responses read that were stored without their input items. */
export interface ReferencedItems {
  found: Map<string, InputItem>;
  notKept: Set<string>;
}

/**
 * The items of `items`' references found in this key's stored responses, by
 * id (those not found left out). The newest reference's response is read
 * first: a stored response keeps the items its own references resolved to,
 * under their ids, so a conversation that names each earlier reply (the AI
 * SDK's, turn after turn) is one read, not one per turn.
 */
export async function referencedItems(items: readonly RequestItem[], store: ResponseStore, maxChars = MAX_REFERENCED_CHARS): Promise<ReferencedItems> {
  const wanted = new Set<string>();
  for (const item of items) if (item.type === 'item_reference') wanted.add(item.id);
  const found = new Map<string, InputItem>();
  const notKept = new Set<string>();
  const read = new Set<string>();
  const budget: ReadBudget = { chars: maxChars };
  for (let i = items.length - 1; i >= 0; i--) {
    const item = items[i];
    if (item.type !== 'item_reference' || found.has(item.id)) continue;
    const response = responseOfItem(item.id);
    if (response === null || read.has(response)) continue;
    if (read.size === MAX_REFERENCED_RESPONSES) {
      throw badRequest(`input.${i}: the item references name items of more than ${MAX_REFERENCED_RESPONSES} stored responses (or of responses that are not stored) that do not hold one another's; send the items themselves instead of some of the references.`, `input.${i}`, 'invalid_value');
    }
    read.add(response);
    let record: StoredResponse | null;
    try {
      record = await store.get(response, budget);
    } catch (err) {
      if (!(err instanceof ReadBudgetSpent)) throw err;
      throw badRequest(`input.${i}: the item references name items of stored responses of more than ${maxChars} characters together (each read whole); send the items themselves instead of some of the references.`, `input.${i}`, 'invalid_value');
    }
    if (record === null) continue;
    if (record.conversationNotKept) notKept.add(response);
    for (const [id, resolved] of itemsOf(record)) if (wanted.has(id) && !found.has(id)) found.set(id, resolved);
  }
  return { found, notKept };
}

/** A stored response's items by id: its output's, and its input's (the items its own references resolved to among them). */
function itemsOf(record: StoredResponse): Array<[string, InputItem]> {
  return [...record.response.output.map((item): [string, InputItem] => [item.id, asInputItem(item)]), ...record.inputItems.map((item): [string, InputItem] => [item.id, item])];
}
