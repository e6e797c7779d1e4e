/**
 * A Responses API reply as SSE events (`event: <type>` and its JSON, each
 * with an increasing `sequence_number`), in OpenAI's order: the response
 * created and in progress; per output item, its `added`, its text or
 * arguments piece by piece, its `done`s; then `response.completed` (or
 * `.incomplete`) carrying the same object a whole reply is, stored first
 * where asked, so a client that chains at once finds it. A failure: `error`,
 * then `response.failed`. No `[DONE]`.
 */
import type { ApiError } from './api-error';
import type { CompletionSummary, CompletionUsage } from './completion-run';
import { joinText, tokensOf, type LogprobsFormatter, type ResponseMeta } from './openai-format';
import {
  callId,
  failedResponse,
  finishedResponse,
  functionCallItem,
  itemId,
  itemStatus,
  messageItem,
  outputItems,
  outputLogprobs,
  outputText,
  responsesUsage,
  type OutputItem,
  type OutputLogprob,
  type OutputText,
  type ResponseObject,
} from './responses-format';
import type { SendFrame, StreamFormat } from './sse-response';
import type { SourcedText } from './token-text';
import { autoReplyKind, type ToolCallMode } from './tool-calls';

/** A piece's log-probabilities where none were asked (never added to). */
const NO_LOGPROBS: readonly OutputLogprob[] = [];

/** The item being streamed as it comes: the message, or a named function's call; or none yet ("auto"'s reply while it is whitespace). */
type Streaming = { kind: 'message'; id: string } | { kind: 'call'; id: string; callId: string; name: string } | { kind: 'held' } | { kind: 'undecided' };

/** One event as an SSE frame. */
export function eventFrame(type: string, sequence: number, fields: object): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence, ...fields })}\n\n`;
}

/**
 * The frames that end a stream with `response`, numbered from `sequence`:
 * `response.completed` or `.incomplete`; for a failed one `error`, then
 * `response.failed`. A cancelled one has no event of its own in OpenAI's
 * stream: none (the stream just ends).
 */
export function endEvents(response: ResponseObject, sequence: number, param: string | null = null): string[] {
  switch (response.status) {
    case 'completed':
      return [eventFrame('response.completed', sequence, { response })];
    case 'incomplete':
      return [eventFrame('response.incomplete', sequence, { response })];
    case 'failed':
      return [
        eventFrame('error', sequence, { code: response.error?.code ?? 'server_error', message: response.error?.message ?? 'The response failed.', param }),
        eventFrame('response.failed', sequence + 1, { response }),
      ];
    default:
      return [];
  }
}

/**
 * The output items a stream's frames had sent (a background stream's kept
 * events, its run gone before it stored its end): each item as `added`, its
 * text or arguments as their deltas built them, or as its `done` said it.
 * Frames that are not events of the output are passed over.
 */
export function streamedOutput(frames: readonly string[]): OutputItem[] {
  const items: OutputItem[] = [];
  for (const frame of frames) {
    const event = frameEvent(frame);
    if (event === null) continue;
    const index = typeof event.output_index === 'number' ? event.output_index : -1;
    const item = items[index];
    switch (event.type) {
      case 'response.output_item.added':
      case 'response.output_item.done':
        // Copied, its content too: the deltas after it add to the copy.
        if (index >= 0 && isOutputItem(event.item)) items[index] = event.item.type === 'message' ? { ...event.item, content: event.item.content.map((part) => ({ ...part, logprobs: [...part.logprobs] })) } : { ...event.item };
        break;
      case 'response.content_part.added':
        if (item?.type === 'message' && typeof event.content_index === 'number' && isOutputText(event.part)) item.content[event.content_index] = { ...event.part, logprobs: [...event.part.logprobs] };
        break;
      case 'response.output_text.delta': {
        const part = item?.type === 'message' && typeof event.content_index === 'number' ? item.content[event.content_index] : undefined;
        if (part === undefined || typeof event.delta !== 'string') break;
        part.text += event.delta;
        if (Array.isArray(event.logprobs)) part.logprobs.push(...(event.logprobs as OutputLogprob[]));
        break;
      }
      case 'response.function_call_arguments.delta':
        if (item?.type === 'function_call' && typeof event.delta === 'string') item.arguments += event.delta;
        break;
    }
  }
  // An index never added (none are skipped as sent) leaves no hole.
  return items.filter((item) => item !== undefined);
}

/** An SSE frame's event (its `data` JSON object), or null for one that is not one (a comment). */
function frameEvent(frame: string): ({ type: string } & Record<string, unknown>) | null {
  const at = frame.indexOf('data: ');
  if (at < 0) return null;
  try {
    const data = JSON.parse(frame.slice(at + 'data: '.length)) as unknown;
    return typeof data === 'object' && data !== null && typeof (data as { type?: unknown }).type === 'string' ? (data as { type: string } & Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function isOutputItem(value: unknown): value is OutputItem {
  if (typeof value !== 'object' || value === null) return false;
  const item = value as Partial<Record<string, unknown>>;
  if (item.type === 'message') return Array.isArray(item.content) && item.content.every(isOutputText);
  return item.type === 'function_call' && typeof item.arguments === 'string';
}

function isOutputText(value: unknown): value is OutputText {
  const part = value as Partial<Record<string, unknown>> | null;
  return typeof part === 'object' && part !== null && part.type === 'output_text' && typeof part.text === 'string' && Array.isArray(part.logprobs);
}

export class ResponsesStreamFormat implements StreamFormat {
  private sequence = 0;
  private streaming: Streaming;
  private readonly mode: ToolCallMode | null;
  private readonly formatter: LogprobsFormatter | undefined;
  private readonly parts: string[] = [];
  /** The text's log-probabilities as sent, each token's formatted once (asked for: else none kept). */
  private readonly logprobs: OutputLogprob[] = [];
  private output: OutputItem[] = [];
  private finishReason = 'stop';
  /** The response the reply ended with (completed, incomplete or failed), once it has. */
  result: ResponseObject | null = null;

  constructor(
    private readonly started: ResponseObject,
    meta: ResponseMeta,
    /**
     * Stores the finished response (where asked); never throws. Null: a
     * background run's stream, whose end is stored and told by the run
     * (background-response.ts): `ended` and `failed` keep the response in
     * `result` and send nothing, and the run `announce`s what it stored.
     */
    private readonly save: ((response: ResponseObject) => Promise<void>) | null,
    /**
     * The usage of what the run generated so far: a response that fails or
     * whose client leaves is stored with it, as the request log bills it
     * (review h154; a background run adds its own: background-response.ts).
     */
    private readonly usageSoFar: (() => CompletionUsage) | null = null,
  ) {
    this.mode = meta.toolCalls ?? null;
    this.formatter = meta.logprobs;
    // "required"'s calls are known once their JSON array is whole: held to the end. "auto"'s reply, once it starts (tool-calls.ts).
    const mode = this.mode;
    this.streaming =
      mode === null
        ? { kind: 'message', id: itemId('msg', started.id) }
        : mode.kind === 'named'
          ? { kind: 'call', id: itemId('fc', started.id), callId: callId(), name: mode.name }
          : mode.kind === 'auto'
            ? { kind: 'undecided' }
            : { kind: 'held' };
  }

  private emit(send: SendFrame, type: string, fields: object): void {
    send(eventFrame(type, this.sequence++, fields));
  }

  begin(send: SendFrame): void {
    if (this.save === null) {
      // A background response's stream tells it queued first, as OpenAI's does.
      const queued: ResponseObject = { ...this.started, status: 'queued' };
      this.emit(send, 'response.created', { response: queued });
      this.emit(send, 'response.queued', { response: queued });
    } else this.emit(send, 'response.created', { response: this.started });
    this.emit(send, 'response.in_progress', { response: this.started });
    const s = this.streaming;
    if (s.kind === 'message') this.openMessage(send, s.id);
    else if (s.kind === 'call') {
      this.emit(send, 'response.output_item.added', { output_index: 0, item: functionCallItem(s.id, s.callId, s.name, '', 'in_progress') });
    }
  }

  private openMessage(send: SendFrame, id: string): void {
    this.emit(send, 'response.output_item.added', { output_index: 0, item: messageItem(id, 'in_progress', []) });
    this.emit(send, 'response.content_part.added', { item_id: id, output_index: 0, content_index: 0, part: outputText('', []) });
  }

  piece(_index: number, segments: SourcedText[], send: SendFrame): void {
    const text = joinText(segments);
    const logprobs = this.formatter ? outputLogprobs(this.formatter, tokensOf(segments)) : NO_LOGPROBS;
    this.parts.push(text);
    for (const entry of logprobs) this.logprobs.push(entry);
    if (this.streaming.kind === 'undecided') {
      const kind = autoReplyKind(text);
      if (kind === 'undecided') return;
      if (kind === 'calls') {
        this.streaming = { kind: 'held' };
        return;
      }
      // Text: the message opens, with the whitespace held before this piece.
      const id = itemId('msg', this.started.id);
      this.streaming = { kind: 'message', id };
      this.openMessage(send, id);
      this.emit(send, 'response.output_text.delta', { item_id: id, output_index: 0, content_index: 0, delta: this.parts.join(''), logprobs: this.logprobs.slice() });
      return;
    }
    const s = this.streaming;
    // A piece of no text (a character's first bytes) still says its tokens' log-probabilities where asked.
    if (s.kind === 'message' && (text !== '' || logprobs.length > 0)) {
      this.emit(send, 'response.output_text.delta', { item_id: s.id, output_index: 0, content_index: 0, delta: text, logprobs });
    } else if (s.kind === 'call' && text !== '') {
      this.emit(send, 'response.function_call_arguments.delta', { item_id: s.id, output_index: 0, delta: text });
    }
  }

  finished(_index: number, summary: CompletionSummary, send: SendFrame): void {
    this.finishReason = summary.finishReason;
    const text = this.parts.join('');
    const logprobs = this.logprobs;
    const status = itemStatus(summary.finishReason);
    const s = this.streaming;
    if (s.kind === 'message') {
      const part = outputText(text, logprobs);
      this.emit(send, 'response.output_text.done', { item_id: s.id, output_index: 0, content_index: 0, text, logprobs });
      this.emit(send, 'response.content_part.done', { item_id: s.id, output_index: 0, content_index: 0, part });
      this.output = [messageItem(s.id, status, [part])];
      this.emit(send, 'response.output_item.done', { output_index: 0, item: this.output[0] });
    } else if (s.kind === 'call') {
      this.emit(send, 'response.function_call_arguments.done', { item_id: s.id, output_index: 0, name: s.name, arguments: text });
      this.output = [functionCallItem(s.id, s.callId, s.name, text, status)];
      this.emit(send, 'response.output_item.done', { output_index: 0, item: this.output[0] });
    } else {
      this.output = outputItems(this.started.id, this.mode, text, summary.finishReason, logprobs);
      for (const [i, item] of this.output.entries()) this.emitWhole(send, item, i);
    }
  }

  /** An item known whole at once ("required"'s calls, or its text where it never became calls), in the events of one streamed. */
  private emitWhole(send: SendFrame, item: OutputItem, index: number): void {
    if (item.type === 'function_call') {
      this.emit(send, 'response.output_item.added', { output_index: index, item: { ...item, arguments: '', status: 'in_progress' } });
      this.emit(send, 'response.function_call_arguments.delta', { item_id: item.id, output_index: index, delta: item.arguments });
      this.emit(send, 'response.function_call_arguments.done', { item_id: item.id, output_index: index, name: item.name, arguments: item.arguments });
    } else {
      const part = item.content[0];
      this.emit(send, 'response.output_item.added', { output_index: index, item: { ...item, status: 'in_progress', content: [] } });
      this.emit(send, 'response.content_part.added', { item_id: item.id, output_index: index, content_index: 0, part: outputText('', []) });
      this.emit(send, 'response.output_text.delta', { item_id: item.id, output_index: index, content_index: 0, delta: part.text, logprobs: part.logprobs });
      this.emit(send, 'response.output_text.done', { item_id: item.id, output_index: index, content_index: 0, text: part.text, logprobs: part.logprobs });
      this.emit(send, 'response.content_part.done', { item_id: item.id, output_index: index, content_index: 0, part });
    }
    this.emit(send, 'response.output_item.done', { output_index: index, item });
  }

  async ended(usages: CompletionUsage[], send: SendFrame): Promise<void> {
    const response = finishedResponse(this.started, this.output, this.finishReason, usages[0]);
    this.result = response;
    if (this.save === null) return;
    await this.save(response);
    this.announce(response, send);
  }

  /** Stored (as OpenAI keeps a failed response: retrieved by the id the stream told, not a 404), then told. */
  async failed(error: ApiError, send: SendFrame): Promise<void> {
    const response = { ...failedResponse(this.started, this.output.length > 0 ? this.output : this.partialOutput(), error), usage: this.usageNow() };
    this.result = response;
    if (this.save === null) return;
    await this.save(response);
    this.announce(response, send, error.param);
  }

  /**
   * The client left mid-stream: the response stored `cancelled` with what was
   * written to its stream (its run's cancel ended it as if at its length,
   * which was stored `incomplete` for `max_output_tokens`, with all the text
   * generated; review h119). Written is not received: the runtime takes
   * writes after the client has gone, until a failed write or the abort tells
   * the edge, so the stored text may run a step or two past what the client
   * got (review h177: in 6 of 6 drops); a client that comes back retrieves
   * the response to catch up before it chains from it.
   */
  async abandoned(): Promise<void> {
    if (this.save === null || this.result !== null) return;
    const response: ResponseObject = { ...this.started, status: 'cancelled', output: this.output.length > 0 ? this.output : this.partialOutput(), usage: this.usageNow() };
    this.result = response;
    await this.save(response);
  }

  private usageNow(): ResponseObject['usage'] {
    return this.usageSoFar === null ? this.started.usage : responsesUsage(this.usageSoFar());
  }

  /** A background response deleted as it ran: its stream ends with an `error` event `not_found`, as one read again does. */
  gone(send: SendFrame): void {
    this.emit(send, 'error', { code: 'not_found', message: `Response ${this.started.id} was deleted.`, param: null });
  }

  /** The events that end the stream with `response` (none for one cancelled). */
  announce(response: ResponseObject, send: SendFrame, param: string | null = null): void {
    for (const frame of endEvents(response, this.sequence, param)) {
      this.sequence++;
      send(frame);
    }
  }

  /** What was streamed before a failure cut the reply: the item opened, incomplete, with its text so far ("required"'s held text is no call yet: none). */
  private partialOutput(): OutputItem[] {
    const s = this.streaming;
    const text = this.parts.join('');
    if (s.kind === 'message') return [messageItem(s.id, 'incomplete', [outputText(text, this.logprobs)])];
    if (s.kind === 'call') return [functionCallItem(s.id, s.callId, s.name, text, 'incomplete')];
    return [];
  }

  close(): void {
    // The Responses API's stream ends with its last event: no `[DONE]`.
  }
}
