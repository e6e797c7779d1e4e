/**
 * A streamed completion or chat completion read as an SSE client reads it,
 * chunk by chunk as the bytes come, so that a test can act mid-reply (freeze
 * the pool, send another tenant's request) once the first text has come.
 */

export interface StreamedReply {
  id: string;
  text: string;
  finish: string | null;
  completionTokens: number;
  /** The stream's error event's message, if it ended with one. */
  error: string | null;
  /** SSE comments sent after the first chunk: a silence mid-reply that the edge filled. */
  quietComments: number;
  /** Each data chunk as it came: `text`, `usage` (choices [] with usage), or `error`. */
  kinds: Array<'text' | 'usage' | 'error'>;
  /** When (performance.now()) the first text came, and the stream ended. */
  firstTextAt: number;
  endedAt: number;
}

export interface ReplyRequest {
  url: string;
  key: string;
  route: 'completions' | 'chat/completions';
  body: Record<string, unknown>;
  /** Called once, as the first chunk with text is read (the reply is mid-way from then on). */
  onFirstText?: () => void;
}

interface Chunk {
  id?: string;
  choices?: Array<{ text?: string; delta?: { content?: string | null }; finish_reason: string | null }>;
  usage?: { completion_tokens: number };
  error?: { message: string };
}

export async function streamReply({ url, key, route, body, onFirstText }: ReplyRequest): Promise<StreamedReply> {
  const res = await fetch(`${url}/v1/${route}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ stream: true, stream_options: { include_usage: true }, ...body }),
  });
  if (res.status !== 200 || !res.body) throw new Error(`${route} answered ${res.status}: ${await res.text()}`);
  const out: StreamedReply = { id: '', text: '', finish: null, completionTokens: 0, error: null, quietComments: 0, kinds: [], firstTextAt: 0, endedAt: 0 };
  const onBlock = (block: string): void => {
    if (block.startsWith(':') && out.id !== '') out.quietComments++;
    if (!block.startsWith('data: ') || block === 'data: [DONE]') return;
    const chunk = JSON.parse(block.slice(6)) as Chunk;
    if (chunk.error) out.error = chunk.error.message;
    out.kinds.push(chunk.error ? 'error' : chunk.usage && chunk.choices?.length === 0 ? 'usage' : 'text');
    if (chunk.id) out.id = chunk.id;
    for (const choice of chunk.choices ?? []) {
      const text = choice.text ?? choice.delta?.content ?? '';
      if (text !== '' && out.firstTextAt === 0) {
        out.firstTextAt = performance.now();
        onFirstText?.();
      }
      out.text += text;
      out.finish = choice.finish_reason ?? out.finish;
    }
    if (chunk.usage) out.completionTokens = chunk.usage.completion_tokens;
  };
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += value;
    const blocks = pending.split('\n\n');
    pending = blocks.pop() ?? '';
    for (const block of blocks) onBlock(block);
  }
  if (pending.trim() !== '') onBlock(pending.trim());
  out.endedAt = performance.now();
  return out;
}
