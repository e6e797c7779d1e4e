/**
 * The longest a live stream from this edge goes without a byte once its
 * headers are out, for clients that watch for a lost connection: a phone in
 * a tunnel leaves a half-open socket, and a browser's fetch never times out
 * a body's read (the demo page gives up at three times this). Before the
 * headers, the longest wait is the pools' (longestWaitForHeadersMs).
 */
import { RESUME_POLL_MS } from './background-stream';
import { DOWN_POOL_ANSWER_MS } from './open-generation';

/**
 * Before its first chunk a stream sends `: waiting for the pool` every
 * `wholeReplyHeartbeatMs` (none at 0: its headers then wait for its first
 * tokens); mid-reply a comment once `streamQuietCommentMs` has passed
 * without a write, checked every half of it, so up to twice it on a late
 * tick (sse-response.ts). A background stream read again (`GET
 * ?stream=true`) reads its kept events every RESUME_POLL_MS and sends its
 * comment at the first read past `streamQuietCommentMs`: up to the two
 * added, which is more where the comment's window is under a second
 * (background-stream.ts, resumedEventStream; review h208).
 */
export function longestStreamSilenceMs(wholeReplyHeartbeatMs: number, streamQuietCommentMs: number): number {
  return Math.max(wholeReplyHeartbeatMs, 2 * streamQuietCommentMs, streamQuietCommentMs + RESUME_POLL_MS);
}

/**
 * The longest a streamed reply's headers take once its request is in (null:
 * no bound). They are not sent at once: the edge answers a clean 503 or 429,
 * which clients retry, until a pool has taken the generation (its 200) and
 * `wholeReplyHeartbeatMs` has passed (reply-start.ts), or its first tokens
 * came. A pool that answers nothing is given `poolStallMs`, and every pool
 * after one that went silent only DOWN_POOL_ANSWER_MS (doubted: the last
 * one too once a window was waited out, open-generation.ts, measured in its
 * test "waits the whole stall window once"): one window and a short one per
 * further pool, then the grace. At a heartbeat of 0 the
 * headers wait for the first tokens, which may wait in a pool's queue for
 * as long as its generations ahead take: no bound.
 */
export function longestWaitForHeadersMs(poolStallMs: number, pools: number, wholeReplyHeartbeatMs: number): number | null {
  if (wholeReplyHeartbeatMs <= 0) return null;
  return poolStallMs + Math.max(0, pools - 1) * Math.min(poolStallMs, DOWN_POOL_ANSWER_MS) + wholeReplyHeartbeatMs;
}
