import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError, toApiError } from '../../edge/api-error';

afterEach(() => vi.restoreAllMocks());

describe('toApiError', () => {
  it("answers an unexpected error as a 500 without internals, and logs it with the request's id, which the user's report names", () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const e = toApiError(new Error('secret internals at /srv/edge.js:12'), 'req-00ff');
    expect(e.status).toBe(500);
    expect(JSON.stringify(e.toBody())).not.toContain('secret');
    expect(logged).toHaveBeenCalledOnce();
    expect(String(logged.mock.calls[0][0])).toContain('req-00ff');
  });

  it('passes an ApiError through as it is, unlogged', () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const e = new ApiError(429, 'slow down', 'rate_limit_error', 'rate_limit_exceeded');
    expect(toApiError(e, 'req-1')).toBe(e);
    expect(logged).not.toHaveBeenCalled();
  });
});
