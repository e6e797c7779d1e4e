/**
 * The longest a live stream from this edge goes without a byte once its
 * headers are out, for clients that watch for a lost connection: a phone in
 * a tunnel leaves a half-open socket, and a browser's fetch never times out
 * a body's read (the demo page gives up at three times this).
 */

/**
 * Before its first chunk a stream sends `: waiting for the pool` every
 * `wholeReplyHeartbeatMs` (none at 0: its headers then wait for its first
 * tokens); mid-reply a comment once `streamQuietCommentMs` has passed
 * without a write, checked every half of it, so up to twice it on a late
 * tick (sse-response.ts; a background stream's `: the response is running`
 * comes within `streamQuietCommentMs`, background-stream.ts).
 */
export function longestStreamSilenceMs(wholeReplyHeartbeatMs: number, streamQuietCommentMs: number): number {
  return Math.max(wholeReplyHeartbeatMs, 2 * streamQuietCommentMs);
}
