/**
 * Whether a parsed NDJSON line is a PoolEvent its readers can use (see
 * docs/protocol.md). A pool of another version, a proxy or a pool bug can send
 * valid JSON of the wrong shape (`null`, a `tokens` without ids); read as an
 * event, it threw deep in the edge as a plain error and cost the client its
 * generation, where an unparsable line fails over or resumes. Checked by hand,
 * not with a schema library: it runs on every event of every stream, and a
 * `tokens` event is checked in one pass over its ids.
 *
 * Event types it does not know pass (readers ignore them: protocol 1 grows by
 * adding events); the fields of the known ones that readers act on are checked.
 */
import { isNonNegativeInteger } from './protocol';

/** Why `value` is not a usable event (a short phrase), or null when it is. */
export function poolEventMalformation(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not an object';
  const event = value as Record<string, unknown>;
  const type = event.type;
  if (typeof type !== 'string') return 'no type';
  switch (type) {
    case 'start':
      return typeof event.id === 'string' ? null : 'start without an id';
    case 'tokens':
      return tokensMalformation(event);
    case 'prompt-logprobs':
      if (!Array.isArray(event.logprobs)) return 'prompt-logprobs without logprobs';
      return event.ranks === undefined || (Array.isArray(event.ranks) && event.ranks.length === event.logprobs.length) ? null : 'prompt-logprobs whose ranks do not match its logprobs';
    case 'trie-exhausted':
      return isNonNegativeInteger(event.outputLength) ? null : 'trie-exhausted without an output length';
    case 'done': {
      if (typeof event.finishReason !== 'string') return 'done without a finish reason';
      const usage = event.usage as Record<string, unknown> | null | undefined;
      if (typeof usage !== 'object' || usage === null || typeof usage.speculation !== 'object' || usage.speculation === null) return 'done without usage';
      return isNonNegativeInteger(usage.promptTokens) && isNonNegativeInteger(usage.completionTokens) ? null : 'done without token counts';
    }
    case 'error':
      return typeof event.code === 'string' && typeof event.message === 'string' ? null : 'error without a code and message';
    default:
      return null;
  }
}

function tokensMalformation(event: Record<string, unknown>): string | null {
  const { ids, sources, logprobs, topLogprobs } = event;
  if (!Array.isArray(ids)) return 'tokens without ids';
  for (let i = 0; i < ids.length; i++) if (!isNonNegativeInteger(ids[i])) return 'a token id that is not a count';
  if (!Array.isArray(sources) || sources.length !== ids.length) return 'tokens whose sources do not match its ids';
  if (typeof event.drafted !== 'number' || typeof event.accepted !== 'number') return 'tokens without drafted and accepted counts';
  if (logprobs !== undefined && (!Array.isArray(logprobs) || logprobs.length !== ids.length)) return 'tokens whose logprobs do not match its ids';
  if (topLogprobs !== undefined && (!Array.isArray(topLogprobs) || topLogprobs.length !== ids.length)) return 'tokens whose top logprobs do not match its ids';
  return null;
}
