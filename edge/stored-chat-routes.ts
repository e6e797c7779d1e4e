/**
 * OpenAI's stored chat completions' routes, beside the store
 * (chat-completion-store.ts): what a `store: true` chat request keeps, and
 * the list's query, the update's body and the messages' page, checked as
 * OpenAI checks them (a 400 naming the parameter at fault).
 */
import { z } from 'zod';
import { badRequest } from './api-error';
import type { KeepCompletion } from './chat-stream';
import { chatCompletionNotFound, type ChatCompletionStore, type ListQuery, type StoredChatCompletion, type StoredChatMessage } from './chat-completion-store';
import { pageOf, pageParams, type ListPage } from './page-params';
import { utf8Length } from './kv-record';
import type { StorageMeter } from './storage-meter';
import { clipped, MAX_METADATA_KEYS, metadataSchema, parseBody, type ChatMessage, type ChatRequest } from './request-schema';

/**
 * What a `store: true` chat request keeps once answered: the completion given, its metadata and the request's
 * messages as sent (`sent`: the body's own, before the schema dropped what this server does not read, such as an
 * assistant's `tool_calls` and a tool message's `tool_call_id`: review h126; the parsed ones where it has none).
 * `meter`: where what it writes is charged; with it, `inputBytes` is the messages' JSON as kept (less their ids) and
 * the metadata's, what the record will hold at least, known before the generation.
 */
export function keepChatCompletion(store: ChatCompletionStore, body: ChatRequest, sent?: unknown, meter?: StorageMeter): { keep: KeepCompletion; inputBytes: number } {
  const given = Array.isArray(sent) && sent.length === body.messages.length && sent.every((m) => typeof m === 'object' && m !== null && !Array.isArray(m)) ? (sent as ChatMessage[]) : body.messages;
  const kept = given.map(messageFields);
  const keep: KeepCompletion = async (completion) => {
    const { id, created, model } = completion as { id: string; created: number; model: string };
    const messages = kept.map((message, i): StoredChatMessage => ({ ...message, id: `${id}-${i}` }));
    await store.put({ id, created, model, completion, metadata: body.metadata ?? {}, messages, expiresAt: store.expiresAt() }, meter);
  };
  // Measured only where it is charged (~2 ms a MiB).
  return { keep, inputBytes: meter ? utf8Length(JSON.stringify(kept)) + utf8Length(JSON.stringify(body.metadata ?? {})) : 0 };
}

/** What a message may hold (OpenAI's message params): a client's other fields are not kept, nor listed back (review h135). */
const MESSAGE_FIELDS = ['role', 'content', 'name', 'tool_calls', 'tool_call_id', 'refusal', 'function_call'] as const;

function messageFields(message: ChatMessage): ChatMessage {
  const kept: Record<string, unknown> = {};
  for (const field of MESSAGE_FIELDS) if (Object.hasOwn(message, field)) kept[field] = (message as Record<string, unknown>)[field];
  return kept as ChatMessage;
}

/** `metadata[key]=value` (the SDK's form of `metadata: {key: value}`), `model`, and the paging (`order` asc by default, as OpenAI's). */
export function listQuery(query: URLSearchParams): ListQuery {
  const page = pageParams(query, 'asc');
  const models = query.getAll('model');
  if (models.length > 1) throw badRequest(`model is given ${models.length} times; give it once`, 'model', 'invalid_value');
  // No model has an empty name: `model=` filtered everything out, an empty 200 that hid the client's mistake.
  if (models[0] === '') throw badRequest('model must name a model (or be left out), not be empty', 'model', 'invalid_value');
  const metadata: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [name, value] of query) {
    if (name === 'metadata') throw badRequest('metadata filters are given as metadata[key]=value', 'metadata', 'invalid_value');
    const key = /^metadata\[(.*)\]$/s.exec(name)?.[1];
    if (key === undefined) continue;
    const param = `metadata[${clipped(key, 64)}]`;
    if (Object.hasOwn(metadata, key)) throw badRequest(`${param} is given more than once; give it once`, param, 'invalid_value');
    // Counted as the metadata sent with a completion is (metadataSchema), so a pair that was stored can be asked for.
    if (!metadataSchema.safeParse({ [key]: value }).success) {
      if (key === '__proto__') throw badRequest(`${param}: a metadata key may not be __proto__`, param, 'invalid_value');
      throw badRequest(`${param}: a metadata key holds at most 64 characters, a value at most 512`, param, 'invalid_value');
    }
    // An empty value is kept as a filter: OpenAI's metadata values may be empty, and a completion stored with one is found so.
    metadata[key] = value;
  }
  if (Object.keys(metadata).length > MAX_METADATA_KEYS) throw badRequest(`metadata holds at most ${MAX_METADATA_KEYS} keys`, 'metadata', 'invalid_value');
  return { ...page, model: models[0] ?? null, metadata };
}

/**
 * The list's query with its `model` read as a request's `model` is: `default` names the served model, under whose
 * name its completions are stored (`servedName` is asked only then: it may load the model from a pool).
 */
export async function withServedModel(query: ListQuery, servedName: () => Promise<string>): Promise<ListQuery> {
  return query.model === 'default' ? { ...query, model: await servedName() } : query;
}

const updateSchema = z.object({ metadata: metadataSchema.nullable() });

/** An update's body: `metadata` alone (null clears it), the only field of a stored completion that changes. */
export function metadataUpdate(body: unknown): Record<string, string> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('The body is a JSON object: {"metadata": {...}}.', null, 'invalid_value');
  for (const name of Object.keys(body)) {
    if (name !== 'metadata') throw badRequest(`${clipped(name, 64)}: only metadata of a stored chat completion can be updated`, clipped(name, 64), 'invalid_value');
  }
  if (!('metadata' in body)) throw badRequest('metadata is required: the new metadata (null clears it)', 'metadata', 'invalid_value');
  return parseBody(updateSchema, body).metadata ?? {};
}

/** A message as OpenAI lists a stored one: text content as a string; given as parts, also those parts. */
type ListedMessage = Omit<StoredChatMessage, 'content'> & { content: string | null; content_parts: NonNullable<StoredChatMessage['content']> | null };

function listedMessage(message: StoredChatMessage): ListedMessage {
  const { content } = message;
  if (!Array.isArray(content)) return { ...message, content: content ?? null, content_parts: null };
  // OpenAI's parts are text (or images, which this server does not take); a replayed refusal part is said as `refusal`.
  const texts = content.filter((part) => part.type === 'text');
  const refusals = content.flatMap((part) => (part.type === 'refusal' ? [part.refusal] : []));
  return { ...message, content: texts.map((part) => part.text).join(''), content_parts: texts, ...(refusals.length > 0 && !message.refusal ? { refusal: refusals.join('') } : {}) };
}

/** GET /v1/chat/completions/{id}/messages's page: in the order given by default, `limit` 1-100 (20), after the message `after`. */
export function messagesPage(record: StoredChatCompletion, query: URLSearchParams): ListPage<ListedMessage> {
  if (record.messagesNotKept) {
    throw badRequest(`Chat completion ${clipped(record.id, 100)} was stored without its messages: they were over the store's bound on a record (SSSD_RESPONSE_MAX_BYTES).`, null, 'messages_not_stored');
  }
  const { page, hasMore } = pageOf(record.messages, pageParams(query, 'asc'), (after) => badRequest(`after: no message of this chat completion has the id '${clipped(after, 100)}'`, 'after', 'invalid_value'));
  return { object: 'list', data: page.map(listedMessage), first_id: page[0]?.id ?? null, last_id: page.at(-1)?.id ?? null, has_more: hasMore };
}

/** A stored chat completion of this key, or OpenAI's 404. */
export async function storedChatCompletion(store: ChatCompletionStore, id: string): Promise<StoredChatCompletion> {
  const record = await store.get(id);
  if (record === null) throw chatCompletionNotFound(id);
  return record;
}
