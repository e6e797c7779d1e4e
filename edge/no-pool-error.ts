/**
 * What a client is told when no pool would take its request because the
 * pools refuse this edge's credentials: the operator's to fix, as a
 * protocol mismatch is (docs/protocol.md), so a 503 with
 * `x-should-retry: false` and `Retry-After: 60`, not an outage's "retry in
 * 2 s", which clients and SDKs repeat for ever (review h191: one pool up with
 * another token, the other down, and every request was told to retry).
 */
import { PROTOCOL_VERSION } from '../shared/protocol';
import { ApiError } from './api-error';

/** How the pools asked for one request (or for the served model) failed, counted. */
export interface PoolFailures {
  /** Pools asked. */
  tries: number;
  /** Of them, those that answered 401. */
  tokenRefusals: number;
  /** Of those, the pools' own 401s (the others did not answer as a pool does: SSSD_POOL_URLS may name no pool). */
  poolTokenRefusals: number;
  /** Those that did not answer at all (connection refused or reset): down, or not there. */
  unreachable: number;
}

/** A misconfiguration's retry hint: long, since a retry cannot succeed until someone acts. */
export const MISCONFIGURED_RETRY_S = 60;

/**
 * The 503 for pools that refuse this edge's token where no other pool
 * answered at all: every pool asked refused it (401), or refused it or was
 * unreachable. Null where some pool answered otherwise (busy, draining,
 * another model, silent past its window): an outage a retry may outlast.
 */
export function misconfiguredPoolsError(failures: PoolFailures): ApiError | null {
  const { tries, tokenRefusals, poolTokenRefusals, unreachable } = failures;
  if (tokenRefusals === 0 || tokenRefusals + unreachable < tries) return null;
  if (unreachable === 0) return poolsRefuseTokenError(poolTokenRefusals === 0);
  // Some refuse the token and the others are down: a retry may reach one of those once it is back, but the fleet is
  // misconfigured either way, and the refusing pools will not serve until the operator acts.
  const one = tokenRefusals === 1;
  const refusing = one ? 'the one inference pool that answers refuses' : `the ${tokenRefusals} inference pools that answer refuse`;
  const what =
    poolTokenRefusals === 0
      ? `${refusing} this edge's credentials and ${one ? 'does' : 'do'} not answer as a pool does (${one ? 'it' : 'they'} may not be ${one ? 'a pool' : 'pools'})`
      : `${refusing} this edge's credentials (its pool token)`;
  const down = unreachable === 1 ? 'the other is unreachable' : `the other ${unreachable} are unreachable`;
  return new ApiError(503, `The service is misconfigured: ${what}, and ${down}; the service's operator must fix its configuration.`, 'service_unavailable', 'pool_unavailable', null, MISCONFIGURED_RETRY_S, false);
}

/**
 * Every pool tried answered 401: reachable, and refusing this edge's
 * SSSD_POOL_TOKEN. Not an outage a client's retry outlasts but the
 * operator's to fix; said so, with a long retry hint, not "retry shortly".
 * `notAPool`: none of those answers was a pool's own (another edge, a
 * proxy's login at SSSD_POOL_URLS), which no token would fix.
 */
export function poolsRefuseTokenError(notAPool = false): ApiError {
  const message = notAPool
    ? "The addresses this edge has for its inference pools refuse its credentials, and do not answer as pools do (they may not be pools); the service's operator must fix its configuration."
    : "The inference pools refuse this edge's credentials (its pool token); the service's operator must fix its configuration.";
  return new ApiError(503, message, 'service_unavailable', 'pool_unavailable', null, MISCONFIGURED_RETRY_S, false);
}

/** Pools whose latest answer was a refusal this edge's configuration causes, by cause (PoolPicker.configRefusal). */
export interface ConfigRefusals {
  /** Pools whose /v1/info named other weights than SSSD_MODEL_SHA256. */
  weights: number;
  /** Pools whose /v1/info named another edge-pool protocol version. */
  protocol: number;
  /** The last such version seen (null: none). */
  otherProtocol: number | null;
  /** Pools that refused this edge's credentials (401). */
  token: number;
  /** SSSD_MODEL_SHA256 (null: no weights pinned). */
  pin: string | null;
}

/**
 * Every pool refuses this edge for its configuration: its pinned weights,
 * its release (protocol), its token. No client's retry can help until the
 * operator acts, so the long hint and no retry, whether the edge finds this
 * loading its model or, serving already, when its pools all moved on (review
 * h229: "retry in 2 s" for ever there, while the load said no retry helps).
 */
export function everyPoolRefusesError(refusals: ConfigRefusals): ApiError {
  const { weights, protocol, otherProtocol, token, pin } = refusals;
  const fix = (message: string): ApiError => new ApiError(503, message, 'service_unavailable', 'pool_unavailable', null, MISCONFIGURED_RETRY_S, false);
  if (weights > 0 && pin !== null) {
    const refusing = protocol + token > 0 ? ' or refuses this edge (its pool token, or another release)' : '';
    return fix(
      `No inference pool serves the weights this edge is pinned to (SSSD_MODEL_SHA256 ${pin.slice(0, 12)}…): every pool serves other weights${refusing}; the service's operator must pin the weights the pools serve, or start pools with these.`,
    );
  }
  if (protocol > 0 && token === 0) {
    return fix(
      `The inference pools speak another edge-pool protocol version (${typeof otherProtocol === 'number' ? otherProtocol : 'none named'}) than this edge (${PROTOCOL_VERSION}); the service's operator must run an edge and pools of one release.`,
    );
  }
  if (protocol === 0) return poolsRefuseTokenError();
  return fix(
    `The inference pools refuse this edge: ${protocol === 1 ? 'one speaks' : `${protocol} speak`} another edge-pool protocol version than this edge (${PROTOCOL_VERSION}), and ${token === 1 ? 'one refuses' : `${token} refuse`} its credentials (its pool token); the service's operator must fix its configuration.`,
  );
}
