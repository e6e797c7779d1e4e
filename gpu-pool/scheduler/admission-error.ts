/**
 * Why a generation was not admitted. The server maps it to an HTTP status:
 * bad_request → 400, conflict → 409, too_large → 413 (more tokens than this
 * pool holds at all: another pool may hold them), busy → 503 with Retry-After.
 */
export type AdmissionErrorKind = 'bad_request' | 'conflict' | 'too_large' | 'busy';

export class AdmissionError extends Error {
  constructor(
    readonly kind: AdmissionErrorKind,
    message: string,
    readonly retryAfterMs?: number,
    /** too_large: the most tokens this pool holds (the 413's `maxTotalTokens`). */
    readonly maxTotalTokens?: number,
  ) {
    super(message);
    this.name = 'AdmissionError';
  }
}
