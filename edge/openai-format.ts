/**
 * OpenAI response objects for completions and chat completions, streamed
 * (chunks) or whole. Each streamed chunk's choice carries a non-standard
 * `sssd_sources` field: the chunk's text split into segments with the draft
 * source of their tokens (OpenAI SDKs ignore unknown fields).
 */
import type { CompletionUsage } from './completion-run';
import type { SourcedText, TokenLogprob } from './token-text';

export type EndpointKind = 'completion' | 'chat';

export interface ResponseMeta {
  id: string;
  created: number;
  model: string;
  kind: EndpointKind;
  /** Present when the request asked for log-probabilities. */
  logprobs?: LogprobsFormatter;
}

const utf8 = new TextEncoder();

/**
 * Tokens' log-probabilities in the endpoint's shape: chat's `{content: [{token,
 * logprob, bytes, top_logprobs}]}`, or legacy completions' `{tokens,
 * token_logprobs, top_logprobs, text_offset}` (offsets run on across the
 * chunks of a response, so one formatter serves one response).
 */
export class LogprobsFormatter {
  private offset = 0;

  constructor(
    private readonly kind: EndpointKind,
    /** A token's own text. */
    private readonly tokenText: (id: number) => string,
    /** Alternatives were asked for (legacy completions: `top_logprobs` is null otherwise). */
    private readonly withTop: boolean,
  ) {}

  format(tokens: readonly TokenLogprob[]): object {
    if (this.kind === 'chat') {
      const entry = (id: number, logprob: number) => {
        const token = this.tokenText(id);
        return { token, logprob, bytes: [...utf8.encode(token)] };
      };
      return { content: tokens.map((t) => ({ ...entry(t.id, t.logprob), top_logprobs: t.top.map(([id, lp]) => entry(id, lp)) })), refusal: null };
    }
    const texts = tokens.map((t) => this.tokenText(t.id));
    const textOffset = texts.map((text) => {
      const at = this.offset;
      this.offset += text.length;
      return at;
    });
    return {
      tokens: texts,
      token_logprobs: tokens.map((t) => t.logprob),
      top_logprobs: this.withTop ? tokens.map((t) => Object.fromEntries(t.top.map(([id, lp]) => [this.tokenText(id), lp]))) : null,
      text_offset: textOffset,
    };
  }
}

/** The tokens carried by these segments, in order. */
export function tokensOf(segments: readonly SourcedText[]): TokenLogprob[] {
  const out: TokenLogprob[] = [];
  for (const s of segments) if (s.tokens) for (const t of s.tokens) out.push(t);
  return out;
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
  const logprobs = meta.logprobs ? meta.logprobs.format(tokensOf(segments)) : null;
  return chunk(meta, [{ index: 0, ...content, logprobs, finish_reason: null, sssd_sources }]);
}

export function finishChunk(meta: ResponseMeta, finishReason: string): object {
  const content = meta.kind === 'chat' ? { delta: {} } : { text: '' };
  return chunk(meta, [{ index: 0, ...content, logprobs: null, finish_reason: finishReason }]);
}

export function usageChunk(meta: ResponseMeta, usage: CompletionUsage): object {
  return chunk(meta, [], usage);
}

export function wholeResponse(meta: ResponseMeta, text: string, finishReason: string, usage: CompletionUsage, tokens: readonly TokenLogprob[] = []): object {
  const chat = meta.kind === 'chat';
  const content = chat ? { message: { role: 'assistant', content: text } } : { text };
  const logprobs = meta.logprobs ? meta.logprobs.format(tokens) : null;
  return {
    id: meta.id,
    object: chat ? 'chat.completion' : 'text_completion',
    created: meta.created,
    model: meta.model,
    choices: [{ index: 0, ...content, logprobs, finish_reason: finishReason }],
    usage,
  };
}
