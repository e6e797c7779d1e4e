import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { formatResetDuration, rateLimitHeaders } from '../../edge/rate-limit-headers';
import type { RequestQuota } from '../../edge/rate-limiter';

describe('formatResetDuration', () => {
  it("writes durations as OpenAI's headers do", () => {
    expect(formatResetDuration(0)).toBe('0s');
    expect(formatResetDuration(17.2)).toBe('18ms');
    expect(formatResetDuration(1000)).toBe('1s');
    expect(formatResetDuration(1500)).toBe('1.5s');
    expect(formatResetDuration(360_000)).toBe('6m0s');
    expect(formatResetDuration(3_723_250)).toBe('1h2m3.25s');
  });
});

describe('rateLimitHeaders', () => {
  const app = new Hono<{ Variables: { quota: RequestQuota | undefined } }>();
  app.onError(() => new Response('refused', { status: 429 }));
  app.post('/ok', rateLimitHeaders, (c) => {
    c.set('quota', { limit: 600, remaining: 598, resetMs: 200 });
    return c.text('ok');
  });
  app.post('/refused', rateLimitHeaders, (c) => {
    c.set('quota', { limit: 2, remaining: 0, resetMs: 59_000 });
    throw new Error('limited');
  });
  app.post('/before-admission', rateLimitHeaders, () => {
    throw new Error('bad body');
  });

  it('stamps the budget on answers and on errors after admission, and nothing before it', async () => {
    const ok = await app.request('/ok', { method: 'POST' });
    expect([ok.headers.get('x-ratelimit-limit-requests'), ok.headers.get('x-ratelimit-remaining-requests'), ok.headers.get('x-ratelimit-reset-requests')]).toEqual(['600', '598', '200ms']);
    const refused = await app.request('/refused', { method: 'POST' });
    expect(refused.status).toBe(429);
    expect(refused.headers.get('x-ratelimit-reset-requests')).toBe('59s');
    const early = await app.request('/before-admission', { method: 'POST' });
    expect(early.headers.get('x-ratelimit-limit-requests')).toBeNull();
  });
});
