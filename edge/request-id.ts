/**
 * Every response of the API carries `x-request-id` (OpenAI's header: its SDKs
 * expose it as `_request_id`), errors included, so a user's report names the
 * request. A completion's id carries the same hex (`cmpl-<hex>`,
 * `chatcmpl-<hex>`), and so does the pool's generation id (`--log-requests`).
 */
import type { Context, Next } from 'hono';
import { bytesToHex } from './hex';

export const REQUEST_ID_HEADER = 'x-request-id';

/** 24 hex digits (96 random bits). */
export function newRequestHex(): string {
  return bytesToHex(crypto.getRandomValues(new Uint8Array(12)));
}

export function requestIdOf(hex: string): string {
  return `req-${hex}`;
}

type WithRequestHex = { Variables: { requestHex: string } };

/** Middleware: picks the request's hex, and stamps the header on whatever response the route gives. */
export async function requestId(c: Context<WithRequestHex>, next: Next): Promise<void> {
  const hex = newRequestHex();
  c.set('requestHex', hex);
  await next();
  c.res.headers.set(REQUEST_ID_HEADER, requestIdOf(hex));
}
