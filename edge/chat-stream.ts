/**
 * Chat's and completions' streams: their chunks (openai-format.ts), one
 * choice per run, in `data: {chunk}` frames ending with `data: [DONE]`,
 * written by sseStream (sse-response.ts).
 */
import type { ApiError } from './api-error';
import { combinedUsage, type CompletionRun, type CompletionSummary, type CompletionUsage } from './completion-run';
import { finishChunk, joinText, responseJson, roleChunk, textChunk, toolCallChunk, tokensOf, usageChunk, type ChunkTokenIds, type LogprobsFormatter, type ResponseMeta, type RunningUsage } from './openai-format';
import { streamWhenOpened, type SendFrame, type StreamFormat, type StreamSetting } from './sse-response';
import { autoReplyKind, toolCallId, toolCallsOf, toolFinishReason, type ToolCallMode } from './tool-calls';
import type { SourcedText, TokenLogprob } from './token-text';
import { StreamedCompletion } from './streamed-completion';

/** A chat or completions stream's options (stream_options, and the edge's smoothing). */
export interface StreamOptions {
  includeUsage: boolean;
  /** vLLM's continuous_usage_stats (with includeUsage): every chunk carries its choice's usage so far. */
  continuousUsage?: boolean;
  smooth: boolean;
}

/** Keeps a chat completion as a whole reply's object (`store: true`), before the reply's last byte; never throws. */
export type KeepCompletion = (completion: object) => Promise<void>;

/** Chat's and completions' SSE frame: `data: <json>` (or `[DONE]`). */
function dataFrame(payload: object | string): string {
  return `data: ${typeof payload === 'string' ? payload : JSON.stringify(payload)}\n\n`;
}

/** A chunk's frame (responseJson: completions' `top_logprobs` keep their order). */
function chunkFrame(meta: ResponseMeta, chunk: object): string {
  return `data: ${responseJson(meta, chunk)}\n\n`;
}

/** Chat's and completions' chunks (openai-format.ts), one choice per run. */
export class ChatStreamFormat implements StreamFormat {
  private readonly formatters: Array<LogprobsFormatter | undefined>;
  private readonly usageOf: (i: number) => RunningUsage | undefined;
  private readonly idsOf: (index: number) => ChunkTokenIds | undefined;
  private readonly calls: StreamedToolCalls | null;
  /** What the chunks add up to, where the completion is kept (`store: true`). */
  private readonly collected: StreamedCompletion | null;
  /** Every generation opened (begin): a failure after it has text, and tokens to bill, behind it. */
  private begun = false;
  /** Each ended choice's usage (its summary's), for a usage chunk sent when another choice fails. */
  private readonly endedUsages: Array<CompletionUsage | undefined> = [];

  constructor(
    private readonly runs: readonly CompletionRun[],
    private readonly meta: ResponseMeta,
    private readonly options: StreamOptions,
    private readonly keep: KeepCompletion | null,
  ) {
    this.collected = keep ? new StreamedCompletion() : null;
    this.formatters = runs.map((_, i) => (i === 0 ? meta.logprobs : meta.logprobs?.another()));
    // As vLLM's: the prompt's tokens and the choice's completion tokens so far, in every chunk of the choice.
    this.usageOf = options.continuousUsage ? (i: number): RunningUsage => runningUsage(runs[i]) : (): undefined => undefined;
    this.idsOf = chunkTokenIds(runs, meta);
    this.calls = meta.kind === 'chat' && meta.toolCalls ? new StreamedToolCalls(meta.toolCalls, runs.length) : null;
  }

  /** Sends a chunk (and collects it, where the completion is kept). */
  private emit(send: SendFrame, chunk: object): void {
    this.collected?.add(chunk);
    send(chunkFrame(this.meta, chunk));
  }

  begin(send: SendFrame): void {
    this.begun = true;
    const meta = this.meta;
    // "auto"'s role chunk waits for the reply to show what it is: its content is "" before text, null before calls.
    if (meta.kind === 'chat' && meta.toolCalls?.kind !== 'auto') for (let i = 0; i < this.runs.length; i++) this.sendRole(i, send);
  }

  private sendRole(index: number, send: SendFrame, content?: '' | null): void {
    const meta = this.meta;
    this.emit(send, roleChunk(meta, index, this.usageOf(index), meta.tokenIds ? this.runs[index].promptIds : undefined, content));
  }

  /** "auto": the role chunk, once the choice's reply shows text or calls (or ends). */
  private roleOnceDecided(index: number, send: SendFrame, ended = false): void {
    const calls = this.calls;
    if (calls === null || !calls.rolePending(index)) return;
    const kind = calls.kind(index);
    if (kind === 'undecided' && !ended) return;
    calls.roleSent(index);
    this.sendRole(index, send, kind === 'calls' ? null : '');
  }

  piece(index: number, segments: SourcedText[], send: SendFrame): void {
    const { meta, formatters, usageOf, idsOf, calls } = this;
    const piece = calls ? calls.piece(index, segments) : { text: segments };
    this.roleOnceDecided(index, send);
    if (piece === null) return;
    if ('text' in piece) this.emit(send, textChunk(meta, piece.text, index, formatters[index], usageOf(index), idsOf(index)));
    else this.emit(send, toolCallChunk(meta, [piece], index, formatters[index] ? formatters[index].format(tokensOf(segments)) : null, usageOf(index), idsOf(index)));
  }

  finished(index: number, summary: CompletionSummary, send: SendFrame): void {
    const { meta, formatters, usageOf, idsOf, calls } = this;
    this.endedUsages[index] = summary.usage;
    let finishReason: string = summary.finishReason;
    if (calls) {
      this.roleOnceDecided(index, send, true);
      const ended = calls.finish(index, finishReason);
      finishReason = ended.finishReason;
      if (ended.calls) this.emit(send, toolCallChunk(meta, ended.calls, index, ended.tokens && formatters[index] ? formatters[index].format(ended.tokens) : null, usageOf(index), idsOf(index)));
      else if (ended.text) this.emit(send, textChunk(meta, ended.text, index, formatters[index], usageOf(index), idsOf(index)));
    }
    this.emit(send, finishChunk(meta, finishReason, index, summary.stopReason, usageOf(index), idsOf(index)));
  }

  async ended(usages: CompletionUsage[], send: SendFrame): Promise<void> {
    const usage = combinedUsage(usages);
    if (this.options.includeUsage) this.emit(send, usageChunk(this.meta, usage));
    // Kept before the last frame, so a retrieve right after it finds it; not where a run was cut short (its client left).
    const completion = this.collected?.completion(usage);
    if (this.keep && completion && !this.runs.some((run) => run.outcome.cancelled)) await this.keep(completion);
  }

  failed(error: ApiError, send: SendFrame): void {
    // Cut off mid-reply: the usage of what was generated (what the request log bills), before the error, as at a
    // normal end; the Responses route's `response.failed` carries it too (review h228). None where no generation opened.
    if (this.options.includeUsage && this.begun) {
      this.emit(send, usageChunk(this.meta, combinedUsage(this.runs.map((run, i) => this.endedUsages[i] ?? run.usageSoFar()))));
    }
    send(dataFrame(error.toBody()));
  }

  close(send: SendFrame): void {
    send(dataFrame('[DONE]'));
  }
}

/**
 * The runs (one per choice, `n` of them) as one SSE stream: each choice's
 * chunks carry its `index`, as they come; a choice's finish chunk when it
 * ends; the usage (all choices) once all have. `keep`: given the whole
 * chat.completion the chunks add up to once every choice ended (a stream
 * that fails or whose client leaves keeps nothing).
 */
export function streamResponse(
  runs: readonly CompletionRun[],
  meta: ResponseMeta,
  options: StreamOptions,
  setting: Omit<StreamSetting, 'id' | 'smooth'> & { opening: Promise<void>; heartbeatMs: number },
  keep: KeepCompletion | null = null,
): Promise<Response> {
  return streamWhenOpened(runs, new ChatStreamFormat(runs, meta, options, keep), { ...setting, id: meta.id, smooth: options.smooth });
}

/**
 * vLLM's return_token_ids, chunk by chunk (undefined where not asked): the
 * choice's ids received since its previous chunk (text held back for a
 * possible stop string comes later than its ids), and in its first chunk the
 * prompt's (chat sends those with its role chunk instead).
 */
function chunkTokenIds(runs: readonly CompletionRun[], meta: ResponseMeta): (index: number) => ChunkTokenIds | undefined {
  if (!meta.tokenIds) return () => undefined;
  const idsSent = runs.map(() => 0);
  const promptSent = runs.map(() => meta.kind === 'chat');
  return (i) => {
    const output = runs[i].completionIds(idsSent[i]);
    idsSent[i] += output.length;
    if (promptSent[i]) return { output };
    promptSent[i] = true;
    return { output, prompt: runs[i].promptIds };
  };
}

function runningUsage(run: CompletionRun): RunningUsage {
  const prompt = run.promptTokens;
  const completion = run.completionTokens;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** A streamed call's piece: its list index, and in its first piece its id and name. */
type CallPiece = { index: number; id?: string; name?: string; arguments: string };

/**
 * Each choice's tool calls as a stream: a named function's arguments as
 * they come (its id, type and name with the first piece, as OpenAI streams a
 * call); `"required"`'s calls, whose names and arguments are known only once
 * their JSON array is whole, in one chunk at the end (text, where it never
 * became one: cut by max_tokens or a stop string); `"auto"`'s reply held
 * while it is whitespace, then streamed as text, or held as "required"'s
 * where it starts an array (tool-calls.ts).
 */
class StreamedToolCalls {
  private readonly ids: Array<string | null>;
  private readonly held: SourcedText[][];
  /** "auto": what each choice's reply turned out to be so far. */
  private readonly kinds: Array<'calls' | 'text' | 'undecided'>;
  /** "auto": whether each choice's role chunk is still to send. */
  private readonly rolesPending: boolean[];

  constructor(
    private readonly mode: ToolCallMode,
    choices: number,
  ) {
    this.ids = Array.from({ length: choices }, () => null);
    this.held = Array.from({ length: choices }, () => []);
    this.kinds = Array.from({ length: choices }, () => (mode.kind === 'auto' ? 'undecided' : 'calls'));
    this.rolesPending = Array.from({ length: choices }, () => mode.kind === 'auto');
  }

  kind(choice: number): 'calls' | 'text' | 'undecided' {
    return this.kinds[choice];
  }

  rolePending(choice: number): boolean {
    return this.rolesPending[choice];
  }

  roleSent(choice: number): void {
    this.rolesPending[choice] = false;
  }

  /** What to send of a piece now: a named call's piece, text ("auto"'s, with what was held before it), or null where it is held or says nothing. */
  piece(choice: number, segments: SourcedText[]): CallPiece | { text: SourcedText[] } | null {
    if (this.mode.kind === 'auto') {
      if (this.kinds[choice] === 'text') return { text: segments };
      this.held[choice].push(...segments);
      if (this.kinds[choice] === 'calls') return null;
      this.kinds[choice] = autoReplyKind(joinText(segments));
      if (this.kinds[choice] !== 'text') return null;
      const text = this.held[choice];
      this.held[choice] = [];
      return { text };
    }
    if (this.mode.kind === 'required') {
      this.held[choice].push(...segments);
      return null;
    }
    const text = joinText(segments);
    const id = this.ids[choice];
    if (id !== null) return text === '' && tokensOf(segments).length === 0 ? null : { index: 0, arguments: text };
    this.ids[choice] = toolCallId();
    return { index: 0, id: this.ids[choice]!, name: this.mode.name, arguments: text };
  }

  /** What a choice's end sends before its finish chunk: its calls (or, unparsed, its text), and its finish reason. */
  finish(choice: number, finishReason: string): { calls: CallPiece[] | null; text: SourcedText[] | null; tokens: TokenLogprob[] | null; finishReason: string } {
    if (this.mode.kind === 'named') {
      // A call with no piece yet (nothing generated) still says which it is.
      const calls = this.ids[choice] === null ? [{ index: 0, id: (this.ids[choice] = toolCallId()), name: this.mode.name, arguments: '' }] : null;
      // A named call ends as the reply did (`stop`, as OpenAI's and vLLM's forced calls end).
      return { calls, text: null, tokens: null, finishReason };
    }
    const held = this.held[choice];
    this.held[choice] = [];
    const calls = this.kinds[choice] === 'calls' ? toolCallsOf(this.mode, joinText(held)) : null;
    // "required"'s role chunk said content null (calls coming): a reply that stayed text sends its content, `""` where
    // empty (cut at once by a stop string), as the whole reply's message has it.
    if (calls === null) return { calls: null, text: held.length > 0 || this.mode.kind === 'required' ? held : null, tokens: null, finishReason };
    return {
      calls: calls.map((call, index) => ({ index, id: call.id, name: call.function.name, arguments: call.function.arguments })),
      text: null,
      tokens: tokensOf(held),
      finishReason: toolFinishReason(this.mode, finishReason, calls),
    };
  }
}
