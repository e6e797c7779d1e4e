/**
 * OpenAI-shaped errors: `{error:{message,type,param,code}}` with the matching
 * HTTP status, plus Retry-After for 429/503.
 */
export type ApiErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'rate_limit_error'
  | 'server_error'
  | 'service_unavailable';

export class ApiError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 405 | 408 | 413 | 415 | 429 | 500 | 503,
    message: string,
    readonly type: ApiErrorType,
    readonly code: string | null = null,
    readonly param: string | null = null,
    readonly retryAfterS?: number,
    /**
     * false: no retry of the same request can succeed until someone acts (an
     * operator's misconfiguration, a request that failed every try), said as
     * `x-should-retry: false`, which the OpenAI SDKs obey over Retry-After:
     * without it they slept out 60 s twice before reporting the error.
     */
    readonly shouldRetry?: boolean,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  toBody(): { error: { message: string; type: ApiErrorType; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/**
 * A request asking more choices (`n`) at once than the key or its only pool
 * runs: it asked for too much at once, not too often, so it spends no rate
 * token (docs/edge.md, "Keys and limits"). A malformed `n` is a plain 400.
 */
export class TooManyChoicesError extends ApiError {
  constructor(message: string) {
    super(400, message, 'invalid_request_error', 'invalid_value', 'n');
    this.name = 'TooManyChoicesError';
  }
}

export function badRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, 'invalid_request_error', code, param);
}

/** Retry-After's whole seconds for a wait of `s`: at least 1. */
export function retryAfterSeconds(s: number): number {
  return Math.max(1, Math.ceil(s));
}

/** The OpenAI SDKs' own header: `false` makes them report an error at once instead of retrying it. */
export const SHOULD_RETRY_HEADER = 'x-should-retry';

export function errorResponse(err: ApiError, extraHeaders?: HeadersInit): Response {
  const headers = new Headers(extraHeaders);
  headers.set('content-type', 'application/json');
  if (err.retryAfterS !== undefined) headers.set('retry-after', String(retryAfterSeconds(err.retryAfterS)));
  if (err.shouldRetry === false) headers.set(SHOULD_RETRY_HEADER, 'false');
  return new Response(JSON.stringify(err.toBody()), { status: err.status, headers });
}

/**
 * Any thrown value as an ApiError: unknown errors become a 500 without
 * internals, logged with `id` (the request's `req-<hex>` or its completion's
 * `cmpl-<hex>`, the same hex), so the id a user reports finds the log line.
 */
export function toApiError(err: unknown, id?: string): ApiError {
  if (err instanceof ApiError) return err;
  console.error(`edge: unexpected error${id ? ` in ${id}` : ''}`, err);
  return new ApiError(500, 'Internal error while serving the request.', 'server_error', 'internal_error');
}
