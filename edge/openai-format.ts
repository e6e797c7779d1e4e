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

export function roleChunk(meta: ResponseMeta): object {
  return {
    id: meta.id,
    object: 'chat.completion.chunk',
    created: meta.created,
    model: meta.model,
    choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }],
  };
}

export function textChunk(meta: ResponseMeta, segments: readonly SourcedText[]): object {
  const text = joinText(segments);
  const sources = segments.map((s) => ({ text: s.text, source: s.source }));
  if (meta.kind === 'chat') {
    return {
      id: meta.id,
      object: 'chat.completion.chunk',
      created: meta.created,
      model: meta.model,
      choices: [{ index: 0, delta: { content: text }, logprobs: null, finish_reason: null, sssd_sources: sources }],
    };
  }
  return {
    id: meta.id,
    object: 'text_completion',
    created: meta.created,
    model: meta.model,
    choices: [{ index: 0, text, logprobs: null, finish_reason: null, sssd_sources: sources }],
  };
}

export function finishChunk(meta: ResponseMeta, finishReason: string): object {
  if (meta.kind === 'chat') {
    return {
      id: meta.id,
      object: 'chat.completion.chunk',
      created: meta.created,
      model: meta.model,
      choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: finishReason }],
    };
  }
  return {
    id: meta.id,
    object: 'text_completion',
    created: meta.created,
    model: meta.model,
    choices: [{ index: 0, text: '', logprobs: null, finish_reason: finishReason }],
  };
}

export function usageChunk(meta: ResponseMeta, usage: CompletionUsage): object {
  return {
    id: meta.id,
    object: meta.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
    created: meta.created,
    model: meta.model,
    choices: [],
    usage,
  };
}

export function wholeResponse(meta: ResponseMeta, text: string, finishReason: string, usage: CompletionUsage): object {
  if (meta.kind === 'chat') {
    return {
      id: meta.id,
      object: 'chat.completion',
      created: meta.created,
      model: meta.model,
      choices: [{ index: 0, message: { role: 'assistant', content: text }, logprobs: null, finish_reason: finishReason }],
      usage,
    };
  }
  return {
    id: meta.id,
    object: 'text_completion',
    created: meta.created,
    model: meta.model,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }],
    usage,
  };
}
