// What a request no pool took is told where pools refuse the edge's token: the operator's to fix (no retry), or an
// outage a retry may outlast, by how every pool asked failed (review h191).
import { describe, expect, it } from 'vitest';
import { errorResponse } from '../../edge/api-error';
import { everyPoolRefusesError, misconfiguredPoolsError, type PoolFailures } from '../../edge/no-pool-error';

const failures = (tries: number, tokenRefusals: number, unreachable: number, poolTokenRefusals = tokenRefusals): PoolFailures => ({ tries, tokenRefusals, poolTokenRefusals, unreachable });

describe('misconfiguredPoolsError', () => {
  it('answers every pool refusing the token, or refusing it with the rest unreachable, as a misconfiguration: 503, Retry-After 60, x-should-retry false', () => {
    for (const [given, message] of [
      [failures(2, 2, 0), "The inference pools refuse this edge's credentials (its pool token); the service's operator must fix its configuration."],
      [failures(2, 1, 1), "The service is misconfigured: the one inference pool that answers refuses this edge's credentials (its pool token), and the other is unreachable; the service's operator must fix its configuration."],
      [failures(5, 2, 3), "The service is misconfigured: the 2 inference pools that answer refuse this edge's credentials (its pool token), and the other 3 are unreachable; the service's operator must fix its configuration."],
      [failures(2, 1, 1, 0), "The service is misconfigured: the one inference pool that answers refuses this edge's credentials and does not answer as a pool does (it may not be a pool), and the other is unreachable; the service's operator must fix its configuration."],
      [failures(1, 1, 0, 0), "The addresses this edge has for its inference pools refuse its credentials, and do not answer as pools do (they may not be pools); the service's operator must fix its configuration."],
    ] as const) {
      const err = misconfiguredPoolsError(given);
      expect(err, JSON.stringify(given)).toMatchObject({ status: 503, type: 'service_unavailable', code: 'pool_unavailable', retryAfterS: 60, shouldRetry: false, message });
      const res = errorResponse(err!);
      expect([res.headers.get('retry-after'), res.headers.get('x-should-retry')]).toEqual(['60', 'false']);
    }
  });

  it('leaves an outage to the caller: no refusal, or a pool that answered otherwise (busy, draining, silent)', () => {
    for (const given of [failures(0, 0, 0), failures(2, 0, 2), failures(3, 1, 1), failures(2, 1, 0)]) expect(misconfiguredPoolsError(given), JSON.stringify(given)).toBeNull();
  });
});

describe('everyPoolRefusesError', () => {
  const pin = 'b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696';
  it("names the cause every pool refuses this edge for (weights, release, token) and asks for no retry (review h229)", () => {
    for (const [given, message] of [
      [{ weights: 2, protocol: 0, otherProtocol: null, token: 0, pin }, "No inference pool serves the weights this edge is pinned to (SSSD_MODEL_SHA256 b0a507e7ad0f…): every pool serves other weights; the service's operator must pin the weights the pools serve, or start pools with these."],
      [{ weights: 1, protocol: 0, otherProtocol: null, token: 1, pin }, "No inference pool serves the weights this edge is pinned to (SSSD_MODEL_SHA256 b0a507e7ad0f…): every pool serves other weights or refuses this edge (its pool token, or another release); the service's operator must pin the weights the pools serve, or start pools with these."],
      [{ weights: 0, protocol: 2, otherProtocol: 2, token: 0, pin: null }, "The inference pools speak another edge-pool protocol version (2) than this edge (1); the service's operator must run an edge and pools of one release."],
      [{ weights: 0, protocol: 0, otherProtocol: null, token: 3, pin }, "The inference pools refuse this edge's credentials (its pool token); the service's operator must fix its configuration."],
      [{ weights: 0, protocol: 1, otherProtocol: 2, token: 2, pin: null }, "The inference pools refuse this edge: one speaks another edge-pool protocol version than this edge (1), and 2 refuse its credentials (its pool token); the service's operator must fix its configuration."],
    ] as const) {
      const err = everyPoolRefusesError(given);
      expect(err, JSON.stringify(given)).toMatchObject({ status: 503, code: 'pool_unavailable', retryAfterS: 60, shouldRetry: false, message });
      expect(errorResponse(err).headers.get('x-should-retry')).toBe('false');
    }
  });
});
