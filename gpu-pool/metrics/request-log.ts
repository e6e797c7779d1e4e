/**
 * One line per finished generation (`sssd pool --log-requests`), as JSON so
 * log pipelines can parse it: what it asked for, how it ended, where its time
 * went and what speculation bought it. Counts and timings only, never the
 * prompt or the output: the pool serves many tenants and logs outlive requests.
 */
import type { FinishReason, PoolErrorCode } from '../../shared/protocol';

/**
 * Where a generation's cancellation came from, as far as the pool can tell:
 * `delete` (a DELETE of its id: an edge whose client went away, that moved it
 * to another pool, or cancels an n > 1 sibling; the pool cannot tell which),
 * `disconnected` (its stream's connection closed before its end),
 * `stalled_reader` (its stream cut, its reader having taken nothing for
 * --stalled-reader-seconds), `shutdown` (the pool stopping, after a drain
 * or without one).
 */
export type CancelReason = 'delete' | 'disconnected' | 'stalled_reader' | 'shutdown';

/** The codes a generation's stream can end with (an `error` event): the request's fault, or the pool's. */
export type GenerationErrorCode = Extract<PoolErrorCode, 'bad_request' | 'internal'>;
export const GENERATION_ERROR_CODES: readonly GenerationErrorCode[] = ['bad_request', 'internal'];

/** Longest error message a request log line carries (runtime errors can run long). */
const MAX_LOGGED_MESSAGE = 300;

export interface FinishedGeneration {
  id: string;
  /** Its tenant as admission knew it (the edge's hash), null when it named none: whose queue wait a line is. */
  tenant: string | null;
  speculation: string;
  temperature: number;
  /** `displaced`: it gave its place in the queue to another tenant's generation before it ran (its stream said busy). */
  finishReason: FinishReason | 'displaced';
  promptTokens: number;
  cachedPromptTokens: number;
  completionTokens: number;
  /** Waiting for a batch slot (null: never admitted). */
  queueMs: number | null;
  /** From arrival to the first tokens event (null: none emitted). */
  timeToFirstTokenMs: number | null;
  /** From arrival to the end. */
  durationMs: number;
  steps: number;
  drafts: number;
  draftTokens: number;
  acceptedTokens: number;
  /** Why it was cancelled (finishReason `cancelled` only; absent where nothing cancelled it). */
  cancelReason?: CancelReason;
  /** The error its stream ended with (finishReason `error` only). */
  error?: { code: GenerationErrorCode; message: string };
  /** Of its prompt, the tokens a failed pool had output before an edge resumed it here (the request's resumedOutputTokens, when > 0). */
  resumedOutputTokens?: number;
  /** Times its row went to another tenant's generation and it resumed by recompute (--preempt), when > 0. */
  preemptions?: number;
}

/** The line for one generation (no newline): `{"event":"request",...}` with times rounded to 0.1 ms. */
export function requestLogLine(g: FinishedGeneration, at: Date = new Date()): string {
  const ms = (v: number | null): number | null => (v === null ? null : Math.round(v * 10) / 10);
  return JSON.stringify({
    time: at.toISOString(),
    event: 'request',
    id: g.id,
    // 12 characters of the hash tell tenants apart in a log, as the pool's other hash prefixes do.
    tenant: g.tenant === null ? null : g.tenant.slice(0, 12),
    speculation: g.speculation,
    temperature: g.temperature,
    finishReason: g.finishReason,
    promptTokens: g.promptTokens,
    cachedPromptTokens: g.cachedPromptTokens,
    completionTokens: g.completionTokens,
    queueMs: ms(g.queueMs),
    timeToFirstTokenMs: ms(g.timeToFirstTokenMs),
    durationMs: ms(g.durationMs),
    steps: g.steps,
    drafts: g.drafts,
    draftTokens: g.draftTokens,
    acceptedTokens: g.acceptedTokens,
    // Output tokens per step (1.0 without speculation): the usage's meanAcceptanceLength.
    tokensPerStep: g.steps === 0 ? null : Math.round((g.completionTokens / g.steps) * 100) / 100,
    // Only where they apply: a line has them when the generation was cancelled, failed, or resumed.
    ...(g.cancelReason !== undefined ? { cancelReason: g.cancelReason } : {}),
    ...(g.error !== undefined ? { error: { code: g.error.code, message: g.error.message.slice(0, MAX_LOGGED_MESSAGE) } } : {}),
    ...(g.resumedOutputTokens !== undefined && g.resumedOutputTokens > 0 ? { resumedOutputTokens: g.resumedOutputTokens } : {}),
    ...(g.preemptions !== undefined && g.preemptions > 0 ? { preemptions: g.preemptions } : {}),
  });
}
