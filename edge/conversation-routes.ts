/**
 * The Conversations API's bodies and answers (index.ts routes them; the
 * conversations themselves: conversation-store.ts): a conversation made with
 * up to 20 items, items added (20 at most a call), listed, retrieved and
 * deleted, its metadata replaced. Items are read as the Responses API reads
 * `input` (responses-request.ts), errors naming `items.N`.
 */
import { z } from 'zod';
import { badRequest } from './api-error';
import { bytesToHex } from './hex';
import { referencedItems } from './item-references';
import { pageOf, pageParams, type ListPage } from './page-params';
import { clipped, metadataSchema, parseBody } from './request-schema';
import { listedItem, type ListedItem } from './responses-reply';
import { callsAnswered, inputItems, refuseDuplicates, resolved, type InputItem } from './responses-request';
import type { ResponseStore, StoredInputItem } from './response-store';
import { itemsAfterGone, type StoredConversation } from './conversation-store';

/** OpenAI's most items a create (of a conversation, or of items in one) adds. */
export const MAX_ITEMS_PER_CALL = 20;

/** What `include` may name: the Responses API's one served (no stored item carries more, so it adds nothing). */
const SERVED_INCLUDE = 'message.output_text.logprobs';

function object(raw: unknown, shape: string): Record<string, unknown> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw badRequest(`The body is a JSON object: ${shape}.`, null, 'invalid_value');
  return raw as Record<string, unknown>;
}

/** Only `names` are fields of the body: another is refused by name (a typo would be dropped silently). */
function refuseOthers(body: Record<string, unknown>, names: readonly string[], what: string): void {
  for (const name of Object.keys(body)) {
    if (!names.includes(name)) throw badRequest(`${clipped(name, 64)} is not a field of ${what} (${names.join(', ')} are)`, clipped(name, 64), 'unknown_parameter');
  }
}

/** A new item's id: its type's prefix and 48 hex digits, as OpenAI's. */
function newItemId(item: InputItem): string {
  const prefix = item.type === 'function_call' ? 'fc' : item.type === 'function_call_output' ? 'fco' : 'msg';
  return `${prefix}_${bytesToHex(crypto.getRandomValues(new Uint8Array(24)))}`;
}

/**
 * `items` of a body as the conversation keeps them: each checked as an input
 * item, a reference resolved in this key's stored responses, each with its
 * id (the given one, else a new one); an id twice, or one the conversation
 * has already (`existing`), is a 400, as is an output of no call made in the
 * conversation or earlier in the call (as /v1/responses refuses it in `input`).
 */
export async function conversationItems(raw: unknown, required: boolean, responses: ResponseStore, existing: readonly StoredInputItem[] = []): Promise<StoredInputItem[]> {
  if (raw === undefined || raw === null) {
    if (required) throw badRequest('items is required: an array of 1 to 20 input items', 'items', 'invalid_value');
    return [];
  }
  if (!Array.isArray(raw)) throw badRequest('items must be an array of input items', 'items', 'invalid_type');
  if (raw.length > MAX_ITEMS_PER_CALL) throw badRequest(`items holds at most ${MAX_ITEMS_PER_CALL} items a call, not ${raw.length}; add the rest in further calls`, 'items', 'invalid_value');
  if (required && raw.length === 0) throw badRequest('items must hold at least one item', 'items', 'invalid_value');
  const sent = inputItems(raw, 'items');
  const referenced = sent.some((item) => item.type === 'item_reference') ? (await referencedItems(sent, responses)).found : new Map<string, InputItem>();
  const items = sent.map((item, i) => (item.type === 'item_reference' ? resolved(item, i, referenced, 'items') : item));
  refuseDuplicates(items, new Set(existing.map((item) => item.id)), 'items');
  callsAnswered(items, sent, existing.flatMap((item) => (item.type === 'function_call' ? [item.call_id] : [])), 'items');
  return items.map((item) => ({ ...item, id: item.id || newItemId(item) }));
}

/**
 * A conversation create's body: `items` (up to 20) and `metadata`, both optional (the SDK sends none at all for
 * `create()`: `raw` undefined). A JSON `null` is a body that is no object, a 400 as `[]` is (it made an empty
 * conversation, review h175).
 */
export async function createBody(raw: unknown, responses: ResponseStore): Promise<{ items: StoredInputItem[]; metadata: Record<string, string> }> {
  const body = raw === undefined ? {} : object(raw, '{"items": [...], "metadata": {...}}');
  refuseOthers(body, ['items', 'metadata'], 'a conversation create');
  const { metadata } = parseBody(z.object({ metadata: metadataSchema.nullish() }), { metadata: body.metadata });
  return { items: await conversationItems(body.items, false, responses), metadata: metadata ?? {} };
}

/** An items create's body: `items`, 1 to 20. */
export function itemsBody(raw: unknown): unknown {
  const body = object(raw, '{"items": [...]}');
  refuseOthers(body, ['items'], 'an items create');
  return body.items;
}

/** An update's body: `metadata` alone (null clears it). */
export function updateBody(raw: unknown): Record<string, string> {
  const body = object(raw, '{"metadata": {...}}');
  refuseOthers(body, ['metadata'], 'a conversation update');
  if (!('metadata' in body)) throw badRequest('metadata is required: the new metadata (null clears it)', 'metadata', 'invalid_value');
  return parseBody(z.object({ metadata: metadataSchema.nullable() }), body).metadata ?? {};
}

/** `include` of a query (`include[]=...` as the SDK writes it): only what is served, which adds nothing to a stored item. */
export function checkInclude(query: URLSearchParams): void {
  for (const name of ['include', 'include[]']) {
    for (const value of query.getAll(name)) {
      if (value !== SERVED_INCLUDE) throw badRequest(`include: '${clipped(value, 80)}' is not supported by this server: of include, only "${SERVED_INCLUDE}" is`, 'include', 'unsupported_parameter');
    }
  }
}

/** Items as a list answers them (an items create's answer: all of them, no more after). */
export function itemList(items: readonly StoredInputItem[], hasMore = false): ListPage<ListedItem> {
  const data = items.map(listedItem);
  return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: hasMore };
}

/** GET /v1/conversations/{id}/items's page: newest first by default (as OpenAI's), `limit` 1-100 (20), after the item `after`. */
export function conversationItemsPage(record: StoredConversation, query: URLSearchParams): ListPage<ListedItem> {
  checkInclude(query);
  const params = pageParams(query, 'desc');
  // After an item deleted lately (the SDK's loop that deletes what it lists): the page goes on from its place.
  const fromGone = params.after !== null && !record.items.some((item) => item.id === params.after) ? itemsAfterGone(record, params.after, params.order) : null;
  const { page, hasMore } = pageOf(fromGone ?? record.items, fromGone ? { ...params, after: null } : params, (after) =>
    badRequest(`after: no item of this conversation has the id '${clipped(after, 100)}'`, 'after', 'invalid_value'),
  );
  return itemList(page, hasMore);
}
