/**
 * OpenAI's request-budget headers on every completion answer, 429s included:
 * `x-ratelimit-limit-requests` (per minute), `x-ratelimit-remaining-requests`
 * and `x-ratelimit-reset-requests` (until the key's bucket is full again, in
 * OpenAI's duration form: `20ms`, `1.5s`, `6m0s`). Clients and gateways that
 * pace themselves by these read them as they do OpenAI's. Tokens are not
 * limited here, so the `-tokens` headers are not sent.
 */
import type { Context, Next } from 'hono';
import type { RequestQuota } from './rate-limiter';

export const RATE_LIMIT_HEADERS = ['x-ratelimit-limit-requests', 'x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests'] as const;

/** A duration as OpenAI writes it (Go's form): `0s`, `250ms`, `1.5s`, `6m0s`, `1h2m3s`. */
export function formatResetDuration(ms: number): string {
  const whole = Math.max(0, Math.ceil(ms));
  if (whole === 0) return '0s';
  if (whole < 1000) return `${whole}ms`;
  const hours = Math.floor(whole / 3_600_000);
  const minutes = Math.floor((whole % 3_600_000) / 60_000);
  const seconds = (whole % 60_000) / 1000;
  const secondsText = `${Number(seconds.toFixed(3))}s`;
  if (hours > 0) return `${hours}h${minutes}m${secondsText}`;
  if (minutes > 0) return `${minutes}m${secondsText}`;
  return secondsText;
}

type WithQuota = { Variables: { quota: RequestQuota | undefined } };

/** Middleware: stamps the quota the route's admission left in `quota` on whatever response it gives. */
export async function rateLimitHeaders(c: Context<WithQuota>, next: Next): Promise<void> {
  await next();
  const quota = c.get('quota');
  if (!quota) return;
  c.res.headers.set(RATE_LIMIT_HEADERS[0], String(quota.limit));
  c.res.headers.set(RATE_LIMIT_HEADERS[1], String(quota.remaining));
  c.res.headers.set(RATE_LIMIT_HEADERS[2], formatResetDuration(quota.resetMs));
}
