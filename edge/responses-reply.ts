/**
 * The Responses API on the chat path: a request translated (responses-request.ts)
 * runs as a chat completion, and is answered as a Response object, whole or as
 * events (responses-stream.ts), stored where asked (response-store.ts) before
 * the reply's last byte. Also the stored responses' routes: retrieve, delete,
 * list input items.
 */
import { badRequest } from './api-error';
import { answerInBackground, polledResponse, type BackgroundOptions } from './background-response';
import { driveFormat, EventLog } from './background-stream';
import { QUIET_STREAM_COMMENT_MS } from './edge-config';
import { clipped } from './request-schema';
import type { Answerer } from './completion-handler';
import type { ChatMessage } from './request-schema';
import { failedResponse, finishedResponse, itemId, outputItems, outputLogprobs, responseOfItem, startedResponse, type OutputItem, type ResponseObject } from './responses-format';
import { itemMessage, parseResponsesBody, translateResponsesRequest, type InputItem, type RequestItem, type TranslatedRequest } from './responses-request';
import { ResponsesStreamFormat } from './responses-stream';
import { asInputItem, referencedItems, type ReferencedItems } from './item-references';
import { conversationNotFound, type ConversationStore } from './conversation-store';
import { responseNotFound, type PutOutcome, type ResponseStore, type RunningRecord, type StoredInputItem, type StoredResponse } from './response-store';
import { streamWhenOpened } from './sse-response';
import { pageOf, pageParams, type ListPage } from './page-params';
import { finishedChoices, wholeCompletionResponse } from './whole-response';
import type { Reproduction } from './reproduction';
import { utf8Length } from './kv-record';
import type { StorageMeter } from './storage-meter';

/** What answering a translated request needs beside its runs. */
export interface ResponsesPlan {
  translated: TranslatedRequest;
  started: ResponseObject;
  /** This request's input items, with their ids. */
  inputItems: StoredInputItem[];
  /** Where it is stored; null: `store` false. */
  store: ResponseStore | null;
  /** The ids of the items of the `previous_response_id` chain, or of the conversation (none without either). */
  previousItemIds: ReadonlySet<string>;
  /** The conversation its turn is appended to (`appended` once it is); null: none sent. */
  conversation: { store: ConversationStore; id: string; appended: boolean } | null;
  /**
   * Where it stores (a record, a conversation's turn), what it writes is charged (`meter`); `inputBytes`: its input
   * items' JSON as UTF-8, and `upFront`, what it will write at least: those once in each record it writes them to.
   * Null where it stores nothing, or is not metered.
   */
  storing: { meter: StorageMeter; inputBytes: number; upFront: number } | null;
}

/** An input item with its id (the given one, else a new one), as input_items lists it. */
function withId(item: InputItem, responseId: string): StoredInputItem {
  if (item.id) return { ...item, id: item.id };
  return { ...item, id: itemId(item.type === 'function_call' ? 'fc' : item.type === 'function_call_output' ? 'fco' : 'msg', responseId) };
}

/**
 * The body checked, its previous response looked up (a 404 where this key
 * has none of that id), translated into chat. The response reports the
 * request's model name until answered (responsesAnswerer: the served name).
 */
export async function planResponse(raw: unknown, store: ResponseStore, id: string, conversations?: ConversationStore, meter?: StorageMeter): Promise<ResponsesPlan> {
  const parsed = parseResponsesBody(raw);
  const sentConversation = parsed.body.conversation;
  const previousId = parsed.body.previous_response_id;
  let previous: ChatMessage[] = [];
  let previousCalls: readonly string[] = [];
  let previousItemIds: ReadonlySet<string> = new Set();
  let awaitedCalls: readonly string[] = [];
  if (previousId) {
    const stored = await store.get(previousId);
    if (stored === null) throw responseNotFound(previousId, 'previous_response_id');
    // As a poll shows it: a background one whose run died is failed, not running for good.
    const status = await polledResponse(stored, store);
    if (status.status === 'failed') {
      throw badRequest(
        `previous_response_id: response ${clipped(previousId, 100)} failed (${clipped(status.error?.message ?? 'no reply', 200)}); continue from the response before it, or send the conversation as input items.`,
        'previous_response_id',
        'invalid_value',
      );
    }
    if (status.status === 'queued' || status.status === 'in_progress') {
      throw badRequest(`previous_response_id: response ${clipped(previousId, 100)} is still running in the background; poll it (GET /v1/responses/{id}) until it ends, then continue from it.`, 'previous_response_id', 'invalid_value');
    }
    if (stored.conversationNotKept) {
      throw badRequest(
        `previous_response_id: response ${clipped(previousId, 100)} was stored without its conversation, which was over the store's bound on a record (SSSD_RESPONSE_MAX_BYTES); send the conversation as input items, or start a new one.`,
        'previous_response_id',
        'invalid_value',
      );
    }
    previous = stored.conversation;
    previousCalls = stored.callIds;
    previousItemIds = new Set(chainItemIds(stored));
    awaitedCalls = stored.response.output.flatMap((item) => (item.type === 'function_call' ? [item.call_id] : []));
  }
  let conversation: ResponsesPlan['conversation'] = null;
  let conversationItems: ReadonlyMap<string, InputItem> = new Map();
  if (sentConversation != null) {
    // parseResponsesBody refuses it beside previous_response_id: one context or the other.
    if (!conversations) throw new Error('a request naming a conversation needs the conversation store');
    const conversationId = typeof sentConversation === 'string' ? sentConversation : sentConversation.id;
    const record = await conversations.get(conversationId);
    if (record === null) throw conversationNotFound(conversationId, 'conversation');
    // Refused before it runs where its input alone would take the conversation past the bound (its output may yet).
    conversations.refuseTurnOver(record, parsed.items);
    previous = record.items.map(itemMessage);
    previousCalls = record.items.flatMap((item) => (item.type === 'function_call' ? [item.call_id] : []));
    previousItemIds = new Set(record.items.map((item) => item.id));
    // A call the conversation has no output for is one this input answers (as a chain's last calls).
    const answered = new Set(record.items.flatMap((item) => (item.type === 'function_call_output' ? [item.call_id] : [])));
    awaitedCalls = previousCalls.filter((call) => !answered.has(call));
    conversation = { store: conversations, id: record.id, appended: false };
    conversationItems = new Map(record.items.map((item) => [item.id, item]));
  }
  // References to the conversation's own items are resolved from it (no KV read): in their place, the items they name.
  const elsewhere = parsed.items.map((item) => (item.type === 'item_reference' ? (conversationItems.get(item.id) ?? item) : item));
  const referenced = await referencedItems(elsewhere, store);
  refuseUnkept(elsewhere, referenced);
  const translated = translateResponsesRequest(parsed, previous, previousCalls, referenced.found, previousItemIds, awaitedCalls, conversationItems);
  const started = startedResponse(id, parsed.body.model, parsed.body, parsed.tools);
  const inputItems = translated.items.map((item) => withId(item, id));
  const kept = parsed.body.store === false ? null : store;
  // The records its input goes into: its own (where kept), its conversation (where named; whatever `store` says).
  const records = (kept ? 1 : 0) + (conversation ? 1 : 0);
  // Measured once, only where it stores (~2 ms a MiB): the turn appended reuses it.
  const inputBytes = meter && records > 0 ? utf8Length(JSON.stringify(inputItems)) : 0;
  return {
    translated,
    started: conversation ? { ...started, conversation: { id: conversation.id } } : started,
    inputItems,
    store: kept,
    previousItemIds,
    conversation,
    storing: meter && records > 0 ? { meter, inputBytes, upFront: inputBytes * records } : null,
  };
}

/** The ids of a stored response's chain: kept with it, or (a record from before they were) its own input's and output's. */
function chainItemIds(stored: StoredResponse): string[] {
  return stored.itemIds ?? [...stored.inputItems.map((item) => item.id), ...stored.response.output.map((item) => item.id)];
}

/** A reference that names an item of a response stored without its input items: said so, rather than "not found". */
function refuseUnkept(items: readonly RequestItem[], referenced: ReferencedItems): void {
  for (const [i, item] of items.entries()) {
    if (item.type !== 'item_reference' || referenced.found.has(item.id)) continue;
    const response = responseOfItem(item.id);
    if (response !== null && referenced.notKept.has(response)) {
      throw badRequest(
        `Item with id '${clipped(item.id, 100)}' is an input item of response ${response}, which was stored without them: they were over the store's bound on a record (SSSD_RESPONSE_MAX_BYTES). Send the item itself.`,
        `input.${i}.id`,
        'invalid_value',
      );
    }
  }
}

/** The conversation a response ended: what it was given, then what it said (a call as chat renders it: no text). */
function endedConversation(plan: ResponsesPlan, output: readonly OutputItem[]): ChatMessage[] {
  const said = output.map((item): ChatMessage => (item.type === 'message' ? { role: 'assistant', content: item.content.map((part) => part.text).join('') } : { role: 'assistant', content: null }));
  return [...plan.translated.conversation, ...said];
}

/**
 * Stores the response where asked (before the reply's last byte), and how
 * that went ('stored' where not asked); a foreground one's turn is then
 * appended to its conversation where it ended so (appendEnded; a background
 * one's, before its end is written: answerInBackground's `beforeEnd`). Never
 * throws.
 */
async function save(plan: ResponsesPlan, reproduction: Reproduction, response: ResponseObject, running?: RunningRecord, eventLog = false): Promise<PutOutcome> {
  const outcome = await storeResponse(plan, reproduction, response, running, eventLog);
  if (!response.background) await appendEnded(plan, response);
  return outcome;
}

/** Its turn appended to its conversation where it names one and ended `completed` or `incomplete` (appendTurn). Never throws. */
async function appendEnded(plan: ResponsesPlan, response: ResponseObject): Promise<void> {
  if (plan.conversation && (response.status === 'completed' || response.status === 'incomplete')) await appendTurn(plan.conversation, plan.inputItems, response, plan.storing);
}

/**
 * A response's input and output items appended to its conversation (before
 * the reply's last byte: the client's next request reads them), once. A
 * conversation deleted meanwhile is left so; one the turn would take past
 * SSSD_RESPONSE_MAX_BYTES, or a KV that fails, is logged (the response has
 * been generated; docs/edge.md says so). Never throws.
 */
async function appendTurn(conversation: NonNullable<ResponsesPlan['conversation']>, input: readonly StoredInputItem[], response: ResponseObject, storing: ResponsesPlan['storing']): Promise<void> {
  if (conversation.appended) return;
  conversation.appended = true;
  const output: StoredInputItem[] = response.output.map((item) => ({ ...asInputItem(item), id: item.id }));
  const turn: StoredInputItem[] = [...input, ...output];
  let appended = turn;
  try {
    const written = await conversation.store.change(
      conversation.id,
      (record) => {
        // Ids stay unique: an item added meanwhile under an id this turn sends too (the items route, another turn) keeps
        // its place, and the turn's copy is dropped (review h130: a page after a doubled id never ended).
        const have = new Set(record.items.map((item) => item.id));
        appended = turn.filter((item) => !have.has(item.id));
        if (appended.length < turn.length) console.warn(`edge: response ${response.id}'s turn had ${turn.length - appended.length} item id(s) conversation ${conversation.id} got meanwhile; appended without them`);
        return { ...record, items: [...record.items, ...appended] };
      },
      'conversation',
    );
    // Charged as items added are: the JSON of the items appended.
    if (written !== null && storing) storing.meter.wrote(`conv:${conversation.id}`, appended === turn ? turnBytes(storing.inputBytes, input.length, output) : utf8Length(JSON.stringify(appended)));
  } catch (err) {
    console.error(`edge: response ${response.id}'s turn not appended to conversation ${conversation.id}`, err);
  }
}

/** The JSON of a turn of `inputLength` input items, `inputBytes` as JSON, then `output`, as UTF-8: the input not stringified again. */
function turnBytes(inputBytes: number, inputLength: number, output: readonly StoredInputItem[]): number {
  const outputBytes = utf8Length(JSON.stringify(output));
  if (inputLength === 0) return outputBytes;
  if (output.length === 0) return inputBytes;
  // The two arrays' brackets, less one pair, and a comma between them.
  return inputBytes + outputBytes - 1;
}

async function storeResponse(plan: ResponsesPlan, reproduction: Reproduction, response: ResponseObject, running: RunningRecord | undefined, eventLog: boolean): Promise<PutOutcome> {
  if (!plan.store) return 'stored';
  const calls = response.output.flatMap((item) => (item.type === 'function_call' ? [item.call_id] : []));
  const itemIds = [...plan.previousItemIds, ...plan.inputItems.map((item) => item.id), ...response.output.map((item) => item.id)];
  return plan.store.write({
    response,
    inputItems: plan.inputItems,
    conversation: endedConversation(plan, response.output),
    callIds: [...plan.translated.callIds, ...calls],
    itemIds,
    reproduction,
    ...running,
    ...(eventLog ? { eventLog: true as const } : {}),
  });
}

/**
 * Answers the chat run in the Responses shape: a Response object, or its
 * events; for a background request (`background`, what runs it on), the
 * response queued, its end stored when it comes (background-response.ts).
 */
export function responsesAnswerer(planned: ResponsesPlan, background: BackgroundOptions | null = null): Answerer {
  return async (reply) => {
    const { body, runs, meta, reproduction, opening, heartbeatMs, headers, clientSignal, streamQuietCommentMs, streamStalledClientMs, waitUntil, goesOn } = reply;
    // As chat's `model`: the served model's name, whatever name ("default") the request gave.
    const plan = { ...planned, started: { ...planned.started, model: meta.model } };
    const finish = async (): Promise<ResponseObject> => {
      const { choices, usage } = await finishedChoices(runs, meta);
      const choice = choices[0];
      const output = outputItems(plan.started.id, meta.toolCalls ?? null, choice.text, choice.finishReason, outputLogprobs(choice.logprobs, choice.tokens));
      return finishedResponse(plan.started, output, choice.finishReason, usage);
    };
    if (plan.started.background) {
      // parseResponsesBody refuses background without store.
      if (!plan.store || !background) throw new Error('a background response needs the store and a waitUntil');
      // Its events go into a log (streamed to the request and kept in the store where it asked for a stream; its end
      // is stored and told by the run); the format keeps the output as it comes, so a run that fails mid-way is
      // stored with what it had.
      const streamed = body.stream === true;
      const log = streamed ? new EventLog() : null;
      const format = new ResponsesStreamFormat(plan.started, meta, null);
      const run = async (): Promise<ResponseObject> => {
        await driveFormat(runs[0], opening, format, log?.append ?? (() => undefined), plan.started.id);
        return format.result ?? failedResponse(plan.started, [], { code: 'server_error', message: 'The response ended without a result.' });
      };
      const events = log ? { log, format, quietCommentMs: streamQuietCommentMs ?? QUIET_STREAM_COMMENT_MS } : null;
      // Its turn is in its conversation before a poll can find it ended: a poll then continue reads it (review h170).
      return answerInBackground(plan.started, reply, run, (response, running) => save(plan, reproduction, response, running, streamed), plan.store, background, events, (ended) => appendEnded(plan, ended));
    }
    if (!body.stream) {
      return wholeCompletionResponse(reply, async () => {
        const response = await finish();
        await save(plan, reproduction, response);
        return response;
      });
    }
    const format = new ResponsesStreamFormat(
      plan.started,
      meta,
      async (response) => {
        await save(plan, reproduction, response);
      },
      // A response is one choice: one run.
      () => runs[0].usageSoFar(),
    );
    // Smoothing is the edge's own switch (the x-sssd-smooth header sets it on the chat body: index.ts), as on chat.
    return streamWhenOpened(runs, format, { id: plan.started.id, smooth: body.stream_options?.smooth === true, headers, clientSignal, opening, heartbeatMs, quietCommentMs: streamQuietCommentMs, stalledClientMs: streamStalledClientMs, waitUntil, goesOn, requestLog: reply.log });
  };
}

/** A stored response of this key, or OpenAI's 404. */
export async function storedResponse(store: ResponseStore, id: string): Promise<StoredResponse> {
  const stored = await store.get(id);
  if (stored === null) throw responseNotFound(id, null);
  return stored;
}

/** An input item as OpenAI lists it: a message's text as parts, with a status. */
export type ListedItem = (StoredInputItem & { status: 'completed' }) | { type: 'message'; id: string; role: string; status: 'completed'; content: ReadonlyArray<{ type: string; text?: string; refusal?: string }> };

export function listedItem(item: StoredInputItem): ListedItem {
  if (item.type === 'function_call' || item.type === 'function_call_output') return { ...item, status: 'completed' };
  const parts = typeof item.content === 'string' ? [{ type: item.role === 'assistant' ? 'output_text' : 'input_text', text: item.content }] : item.content;
  // An assistant's text as OpenAI's ResponseOutputText has it, with its (here always empty) annotations (review h129).
  const content = parts.map((part) => (part.type === 'output_text' && !('annotations' in part) ? { ...part, annotations: [] } : part));
  return { type: 'message', id: item.id, role: item.role, status: 'completed', content };
}

/** GET /v1/responses/{id}/input_items's page: newest first by default, `limit` 1-100 (20), after the item `after`. */
export function inputItemsPage(stored: StoredResponse, query: URLSearchParams): ListPage<ListedItem> {
  if (stored.conversationNotKept) {
    throw badRequest(`Response ${clipped(stored.response.id, 100)} was stored without its input items: they were over the store's bound on a record (SSSD_RESPONSE_MAX_BYTES).`, null, 'invalid_request_error');
  }
  const { page, hasMore } = pageOf(stored.inputItems, pageParams(query, 'desc'), (after) =>
    badRequest(`after: no input item of this response has the id '${clipped(after, 100)}'`, 'after', 'invalid_value'),
  );
  return { object: 'list', data: page.map(listedItem), first_id: page[0]?.id ?? null, last_id: page.at(-1)?.id ?? null, has_more: hasMore };
}
