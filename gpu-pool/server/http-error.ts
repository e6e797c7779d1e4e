/** An error with the HTTP status and protocol error code it should be answered with. */
import type { PoolErrorCode } from '../../shared/protocol';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: PoolErrorCode,
    message: string,
    readonly retryAfterMs?: number,
    /** A 413 too_large's limit, sent as the error's `maxTotalTokens`. */
    readonly maxTotalTokens?: number,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}
