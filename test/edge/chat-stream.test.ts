/**
 * A chat stream's chunks against the whole reply: what a client assembles
 * from the stream is the message the whole reply sends.
 */
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { ChatStreamFormat } from '../../edge/chat-stream';
import type { CompletionRun, CompletionSummary, CompletionUsage } from '../../edge/completion-run';
import { wholeResponse, type ResponseMeta } from '../../edge/openai-format';
import type { ToolCallMode } from '../../edge/tool-calls';
import type { SourcedText } from '../../edge/token-text';

const usage: CompletionUsage = {
  prompt_tokens: 5,
  completion_tokens: 0,
  total_tokens: 5,
  prompt_tokens_details: { cached_tokens: 0 },
  speculation: { method: 'sssd', drafts: 0, draft_tokens: 0, accepted_tokens: 0, steps: 0, mean_acceptance_length: 0, edge_accepted_tokens: 0, edge_trie_bytes: 0 },
};

type Delta = { content?: string | null };

/** The message content a client assembles from the chunks, as the OpenAI SDK does: null until a string arrives. */
function streamedContent(mode: ToolCallMode, pieces: string[]): string | null {
  const meta: ResponseMeta = { id: 'chatcmpl-x', created: 1, model: 'm', fingerprint: 'fp_0123456789', kind: 'chat', toolCalls: mode };
  // One choice; without return_token_ids or continuous usage the format reads nothing of its run.
  const runs = [{}] as unknown as CompletionRun[];
  const format = new ChatStreamFormat(runs, meta, { includeUsage: false, smooth: false }, null);
  const frames: string[] = [];
  const send = (frame: string): void => void frames.push(frame);
  format.begin(send);
  for (const text of pieces) format.piece(0, [{ text, source: 'model' } as SourcedText], send);
  const summary: CompletionSummary = { finishReason: 'stop', stopReason: '[', usage, promptLogprobs: null };
  format.finished(0, summary, send);
  let content: string | null = null;
  for (const frame of frames) {
    const chunk = JSON.parse(frame.slice('data: '.length)) as { choices: Array<{ delta: Delta }> };
    for (const choice of chunk.choices) if (typeof choice.delta.content === 'string') content = (content ?? '') + choice.delta.content;
  }
  return content;
}

function wholeContent(mode: ToolCallMode, text: string): unknown {
  const meta: ResponseMeta = { id: 'chatcmpl-x', created: 1, model: 'm', fingerprint: 'fp_0123456789', kind: 'chat', toolCalls: mode };
  const whole = wholeResponse(meta, [{ text, finishReason: 'stop', stopReason: '[', tokens: [] }], usage) as { choices: Array<{ message: { content: unknown } }> };
  return whole.choices[0].message.content;
}

describe('a tool-call reply that stayed text, streamed and whole', () => {
  it('sends "required"\'s empty text (a stop string at its first character) as "", as the whole reply does', () => {
    expect(wholeContent({ kind: 'required' }, '')).toBe('');
    expect(streamedContent({ kind: 'required' }, [])).toBe('');
    // Text that is no whole array: the same text either way.
    expect(streamedContent({ kind: 'required' }, ['[{"na'])).toBe(wholeContent({ kind: 'required' }, '[{"na'));
    // "auto" already agreed: "" before text.
    expect(streamedContent({ kind: 'auto' }, [])).toBe(wholeContent({ kind: 'auto' }, ''));
  });
});

describe('a chat stream that fails', () => {
  const meta: ResponseMeta = { id: 'chatcmpl-x', created: 1, model: 'm', fingerprint: 'fp_0123456789', kind: 'chat' };
  const error = new ApiError(503, 'The generation was cut off after 3 tokens.', 'service_unavailable', 'pool_unavailable');
  const used = (completion: number): CompletionUsage => ({ ...usage, completion_tokens: completion, total_tokens: usage.prompt_tokens + completion });
  /** Choices that generated so far what `soFar` says (the format reads only that of a run that did not end). */
  const runsOf = (soFar: number[]): CompletionRun[] => soFar.map((n) => ({ usageSoFar: () => used(n) })) as unknown as CompletionRun[];
  const parsed = (frames: string[]): Array<{ choices?: unknown[]; usage?: CompletionUsage; error?: unknown }> =>
    frames.map((frame) => JSON.parse(frame.slice('data: '.length)) as { choices?: unknown[]; usage?: CompletionUsage; error?: unknown });

  it('sends, with include_usage, the usage of what was generated before its error: every choice, ended or cut (review h228)', () => {
    const format = new ChatStreamFormat(runsOf([7, 3]), meta, { includeUsage: true, smooth: false }, null);
    const frames: string[] = [];
    const send = (frame: string): void => void frames.push(frame);
    format.begin(send);
    format.piece(1, [{ text: 'Once', source: 'model' } as SourcedText], send);
    // Choice 0 ended with 5 tokens (its summary's usage, not what a run would say so far); choice 1 is cut at 3.
    format.finished(0, { finishReason: 'stop', stopReason: null, usage: used(5), promptLogprobs: null }, send);
    format.failed(error, send);
    const [usageChunk, errorChunk] = parsed(frames).slice(-2);
    expect(usageChunk).toMatchObject({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 8, total_tokens: 13 } });
    expect(errorChunk).toMatchObject({ error: { code: 'pool_unavailable' } });
  });

  it('sends none without include_usage, nor where no generation opened', () => {
    for (const [includeUsage, begun] of [[false, true], [true, false]] as const) {
      const format = new ChatStreamFormat(runsOf([3]), meta, { includeUsage, smooth: false }, null);
      const frames: string[] = [];
      const send = (frame: string): void => void frames.push(frame);
      if (begun) format.begin(send);
      format.failed(error, send);
      expect(parsed(frames).filter((chunk) => chunk.usage !== undefined)).toEqual([]);
      expect(parsed(frames).at(-1)).toMatchObject({ error: { code: 'pool_unavailable' } });
    }
  });
});
