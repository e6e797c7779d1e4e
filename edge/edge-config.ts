import { DEFAULT_USER_CACHE_HISTORY_TOKENS } from '../shared/drafting/user-cache';
import type { EdgeEnv } from './env';
import { LEASE_MS } from './rate-limiter';

export interface EdgeConfig {
  poolUrls: string[];
  poolToken: string;
  maxBodyBytes: number;
  userCacheMaxBytes: number;
  /** Tokens of the user's latest requests kept verbatim in their cache (0: none; see shared/drafting/user-cache.ts). */
  userCacheHistoryTokens: number;
  edgeTrieNodes: number;
  defaultRpm: number;
  defaultConcurrency: number;
  /** A request in flight that shows no sign of life this long gives its key's slot back (ms; see rate-limiter.ts). */
  concurrencyLeaseMs: number;
  benchRoutes: boolean;
}

/** The Worker's defaults for the user cache and the trie it ships (bench-serve plays the edge with them). */
export const EDGE_USER_CACHE_MAX_BYTES = 64 * 1024;
export const EDGE_TRIE_NODES = 128;

function intVar(value: string | undefined, fallback: number, min: number, max: number): number {
  const n = value === undefined || value.trim() === '' ? NaN : Number(value);
  return Number.isInteger(n) && n >= min && n <= max ? n : fallback;
}

// The env object is stable for an isolate's lifetime: parse it once.
const parsed = new WeakMap<object, EdgeConfig>();

export function edgeConfig(env: EdgeEnv): EdgeConfig {
  const hit = parsed.get(env);
  if (hit) return hit;
  const config: EdgeConfig = {
    poolUrls: (env.SSSD_POOL_URLS ?? '')
      .split(',')
      .map((u) => u.trim().replace(/\/+$/, ''))
      .filter((u) => u.length > 0),
    poolToken: env.SSSD_POOL_TOKEN ?? '',
    maxBodyBytes: intVar(env.SSSD_MAX_BODY_BYTES, 1024 * 1024, 1024, 64 * 1024 * 1024),
    userCacheMaxBytes: intVar(env.SSSD_USER_CACHE_MAX_BYTES, EDGE_USER_CACHE_MAX_BYTES, 1024, 16 * 1024 * 1024),
    userCacheHistoryTokens: intVar(env.SSSD_USER_CACHE_HISTORY_TOKENS, DEFAULT_USER_CACHE_HISTORY_TOKENS, 0, 1 << 20),
    edgeTrieNodes: intVar(env.SSSD_EDGE_TRIE_NODES, EDGE_TRIE_NODES, 0, 4096),
    defaultRpm: intVar(env.SSSD_DEFAULT_RPM, 600, 1, 1_000_000),
    defaultConcurrency: intVar(env.SSSD_DEFAULT_CONCURRENCY, 8, 1, 10_000),
    concurrencyLeaseMs: 1000 * intVar(env.SSSD_CONCURRENCY_LEASE_SECONDS, LEASE_MS / 1000, 1, 3600),
    benchRoutes: env.SSSD_BENCH_ROUTES === '1' || env.SSSD_BENCH_ROUTES === 'true',
  };
  parsed.set(env, config);
  return config;
}
