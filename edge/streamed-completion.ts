/**
 * The chat.completion a chat stream adds up to, from the chunks it sent
 * (openai-format.ts's): each choice's text joined, its tool calls put
 * together by their index, its log-probabilities in order, its finish.
 * Built from the chunks rather than the runs, so a stored stream says what
 * its client was sent (its tool calls' ids included), as OpenAI's does.
 */
import type { CompletionUsage } from './completion-run';
import { assistantMessage } from './openai-format';
import type { ToolCall } from './tool-calls';

/** A streamed call's delta: its id and name in its first (its type is always function). */
interface CallDelta {
  index: number;
  id?: string;
  function?: { name?: string; arguments?: string };
}

/** What is read of a chat chunk (openai-format.ts makes them). */
interface ChatChunk {
  id: string;
  created: number;
  model: string;
  system_fingerprint: string;
  choices: Array<{
    index: number;
    delta: { role?: string; content?: string | null; tool_calls?: CallDelta[] };
    logprobs: { content?: unknown[] | null } | null;
    finish_reason: string | null;
    stop_reason?: string | number | null;
    token_ids?: readonly number[];
  }>;
  prompt_token_ids?: readonly number[];
}

interface ChoiceSoFar {
  content: string | null;
  calls: ToolCall[];
  logprobs: unknown[] | null;
  finishReason: string | null;
  stopReason: string | number | null;
  tokenIds: number[] | null;
}

export class StreamedCompletion {
  private readonly choices: ChoiceSoFar[] = [];
  private head: { id: string; created: number; model: string; fingerprint: string } | null = null;
  private promptTokenIds: readonly number[] | null = null;

  /** One chunk as sent (a chat.completion.chunk object). */
  add(sent: object): void {
    const chunk = sent as ChatChunk;
    this.head ??= { id: chunk.id, created: chunk.created, model: chunk.model, fingerprint: chunk.system_fingerprint };
    if (chunk.prompt_token_ids) this.promptTokenIds = chunk.prompt_token_ids;
    for (const part of chunk.choices) {
      const choice = (this.choices[part.index] ??= { content: null, calls: [], logprobs: null, finishReason: null, stopReason: null, tokenIds: null });
      if (typeof part.delta.content === 'string') choice.content = (choice.content ?? '') + part.delta.content;
      for (const call of part.delta.tool_calls ?? []) {
        const whole = (choice.calls[call.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } });
        if (call.id !== undefined) whole.id = call.id;
        if (call.function?.name !== undefined) whole.function.name = call.function.name;
        whole.function.arguments += call.function?.arguments ?? '';
      }
      if (part.logprobs?.content) (choice.logprobs ??= []).push(...part.logprobs.content);
      if (part.token_ids) (choice.tokenIds ??= []).push(...part.token_ids);
      if (part.finish_reason !== null) {
        choice.finishReason = part.finish_reason;
        choice.stopReason = part.stop_reason ?? null;
      }
    }
  }

  /** The whole chat.completion, with the request's usage (sent in a chunk or not); null before any chunk. */
  completion(usage: CompletionUsage): object | null {
    if (this.head === null) return null;
    const { id, created, model, fingerprint } = this.head;
    return {
      id,
      object: 'chat.completion',
      created,
      model,
      choices: this.choices.map((choice, index) => ({
        index,
        // As a whole reply's: content null where the reply was calls.
        message: assistantMessage(choice.content ?? '', choice.calls.length > 0 ? choice.calls : null),
        logprobs: choice.logprobs ? { content: choice.logprobs, refusal: null } : null,
        finish_reason: choice.finishReason,
        stop_reason: choice.stopReason,
        ...(choice.tokenIds ? { token_ids: choice.tokenIds } : {}),
      })),
      usage,
      system_fingerprint: fingerprint,
      ...(this.promptTokenIds ? { prompt_token_ids: this.promptTokenIds } : {}),
    };
  }
}
