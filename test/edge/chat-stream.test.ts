/**
 * A chat stream's chunks against the whole reply: what a client assembles
 * from the stream is the message the whole reply sends.
 */
import { describe, expect, it } from 'vitest';
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
