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
  /** Present when the request asked for log-probabilities: the formatter of choice 0 (streams make one per choice with `newLogprobs`). */
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

  /** A fresh formatter of the same kind (another choice's text offsets start at 0). */
  another(): LogprobsFormatter {
    return new LogprobsFormatter(this.kind, this.tokenText, this.withTop);
  }

  format(tokens: readonly TokenLogprob[]): object {
    if (this.kind === 'chat') {
      const entry = (id: number, logprob: number) => {
        const token = this.tokenText(id);
        return { token, logprob, bytes: [...utf8.encode(token)] };
      };
      return { content: tokens.map((t) => ({ ...entry(t.id, t.logprob ?? 0), top_logprobs: (t.top ?? []).map(([id, lp]) => entry(id, lp)) })), refusal: null };
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
      top_logprobs: this.withTop ? tokens.map((t) => (t.top === null ? null : Object.fromEntries(t.top.map(([id, lp]) => [this.tokenText(id), lp])))) : null,
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

export function roleChunk(meta: ResponseMeta, index = 0): object {
  return chunk(meta, [{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]);
}

/** A chunk of choice `index`'s text; `logprobs` formats its tokens (one formatter per choice), when asked. */
export function textChunk(meta: ResponseMeta, segments: readonly SourcedText[], index = 0, logprobs: LogprobsFormatter | undefined = meta.logprobs): object {
  const text = joinText(segments);
  const sssd_sources = segments.map((s) => ({ text: s.text, source: s.source }));
  const content = meta.kind === 'chat' ? { delta: { content: text } } : { text };
  return chunk(meta, [{ index, ...content, logprobs: logprobs ? logprobs.format(tokensOf(segments)) : null, finish_reason: null, sssd_sources }]);
}

export function finishChunk(meta: ResponseMeta, finishReason: string, index = 0): object {
  const content = meta.kind === 'chat' ? { delta: {} } : { text: '' };
  return chunk(meta, [{ index, ...content, logprobs: null, finish_reason: finishReason }]);
}

export function usageChunk(meta: ResponseMeta, usage: CompletionUsage): object {
  return chunk(meta, [], usage);
}

/** One finished choice of a whole response; `logprobs` formats its tokens, when asked. */
export interface WholeChoice {
  text: string;
  finishReason: string;
  tokens: readonly TokenLogprob[];
  logprobs?: LogprobsFormatter;
}

export function wholeResponse(meta: ResponseMeta, choices: readonly WholeChoice[], usage: CompletionUsage): object {
  const chat = meta.kind === 'chat';
  return {
    id: meta.id,
    object: chat ? 'chat.completion' : 'text_completion',
    created: meta.created,
    model: meta.model,
    choices: choices.map((c, index) => ({
      index,
      ...(chat ? { message: { role: 'assistant', content: c.text } } : { text: c.text }),
      logprobs: c.logprobs ? c.logprobs.format(c.tokens) : null,
      finish_reason: c.finishReason,
    })),
    usage,
  };
}
