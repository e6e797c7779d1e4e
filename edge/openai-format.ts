/**
 * OpenAI response objects for completions and chat completions, streamed
 * (chunks) or whole. Each streamed chunk's choice carries a non-standard
 * `sssd_sources` field: the chunk's text split into segments with the draft
 * source of their tokens (OpenAI SDKs ignore unknown fields).
 */
import type { CompletionUsage } from './completion-run';
import type { SourcedText } from './token-text';

export type EndpointKind = 'completion' | 'chat';

export interface ResponseMeta {
  id: string;
  created: number;
  model: string;
  kind: EndpointKind;
}

export function joinText(segments: readonly SourcedText[]): string {
  let text = '';
  for (const s of segments) text += s.text;
  return text;
}

/** A streamed chunk: the endpoint's chunk object around `choices` (and `usage`, for the last one). */
function chunk(meta: ResponseMeta, choices: object[], usage?: CompletionUsage): object {
  const object = meta.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  return { id: meta.id, object, created: meta.created, model: meta.model, choices, ...(usage ? { usage } : {}) };
}

export function roleChunk(meta: ResponseMeta): object {
  return chunk(meta, [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]);
}

export function textChunk(meta: ResponseMeta, segments: readonly SourcedText[]): object {
  const text = joinText(segments);
  const sssd_sources = segments.map((s) => ({ text: s.text, source: s.source }));
  const content = meta.kind === 'chat' ? { delta: { content: text } } : { text };
  return chunk(meta, [{ index: 0, ...content, logprobs: null, finish_reason: null, sssd_sources }]);
}

export function finishChunk(meta: ResponseMeta, finishReason: string): object {
  const content = meta.kind === 'chat' ? { delta: {} } : { text: '' };
  return chunk(meta, [{ index: 0, ...content, logprobs: null, finish_reason: finishReason }]);
}

export function usageChunk(meta: ResponseMeta, usage: CompletionUsage): object {
  return chunk(meta, [], usage);
}

export function wholeResponse(meta: ResponseMeta, text: string, finishReason: string, usage: CompletionUsage): object {
  const chat = meta.kind === 'chat';
  const content = chat ? { message: { role: 'assistant', content: text } } : { text };
  return {
    id: meta.id,
    object: chat ? 'chat.completion' : 'text_completion',
    created: meta.created,
    model: meta.model,
    choices: [{ index: 0, ...content, logprobs: null, finish_reason: finishReason }],
    usage,
  };
}
