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
import type { ResponseStore, StoredResponse } from './response-store';

/**
 * Stored responses one request may reference items of: each is a KV read
 * (of a value that can hold megabytes of conversation), and a Worker's
 * invocation has a bounded number of them.
 */
export const MAX_REFERENCED_RESPONSES = 64;

/** An output item as the input item it is when sent back: a message of the assistant's text, or the call. */
function asInputItem(item: OutputItem): InputItem {
  if (item.type === 'function_call') return { type: 'function_call', id: item.id, call_id: item.call_id, name: item.name, arguments: item.arguments };
  return { type: 'message', id: item.id, role: 'assistant', content: item.content.map((part) => ({ type: 'output_text' as const, text: part.text })) };
}

/** The items of `items`' references found in this key's stored responses, by id (those not found left out). */
export async function referencedItems(items: readonly RequestItem[], store: ResponseStore): Promise<Map<string, InputItem>> {
  const wanted = new Map<string, string[]>(); // response id → referenced item ids in it
  for (const [i, item] of items.entries()) {
    if (item.type !== 'item_reference') continue;
    const response = responseOfItem(item.id);
    if (response === null) continue;
    const ids = wanted.get(response);
    if (ids) ids.push(item.id);
    else if (wanted.size < MAX_REFERENCED_RESPONSES) wanted.set(response, [item.id]);
    else throw badRequest(`input: its item references name items of more than ${MAX_REFERENCED_RESPONSES} stored responses; send the items themselves instead of some of the references.`, `input.${i}`, 'invalid_value');
  }
  const found = new Map<string, InputItem>();
  const records = await Promise.all([...wanted.keys()].map((id) => store.get(id)));
  for (const [k, ids] of [...wanted.values()].entries()) {
    const record = records[k];
    if (record === null) continue;
    for (const id of ids) {
      const item = itemIn(record, id);
      if (item !== null) found.set(id, item);
    }
  }
  return found;
}

/** The item of that id among a stored response's output and input items, or null. */
function itemIn(record: StoredResponse, id: string): InputItem | null {
  const output = record.response.output.find((item) => item.id === id);
  if (output !== undefined) return asInputItem(output);
  return record.inputItems.find((item) => item.id === id) ?? null;
}
