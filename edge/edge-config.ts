import { bearerTokenProblem } from '../shared/bearer-token';
import { DEFAULT_USER_CACHE_HISTORY_TOKENS } from '../shared/drafting/user-cache';
import { MAX_PUSHED_TRIE_NODES } from '../shared/protocol';
import type { EdgeEnv } from './env';
import { kvMissingLine, kvNamespace } from './kv-binding';
import { LEASE_MS } from './rate-limiter';

export interface EdgeConfig {
  poolUrls: string[];
  poolToken: string;
  maxBodyBytes: number;
  /** A request body not read whole within this long is refused with 408 (ms). */
  bodyTimeoutMs: number;
  userCacheMaxBytes: number;
  /** Tokens of the user's latest requests kept verbatim in their cache (0: none; see shared/drafting/user-cache.ts). */
  userCacheHistoryTokens: number;
  /** A user's cache expires from KV this long after its last write (seconds; 0 = never). */
  userCacheTtlSeconds: number;
  edgeTrieNodes: number;
  /** Fresh tries one generation pushes at most (SSSD_EDGE_TRIE_PUSHES; each a subrequest; 0: only the trie it opens with). */
  edgeTriePushes: number;
  /** How long a request waits for the user's cache from KV before it opens without it (ms; its trie is pushed when the cache comes). */
  userCacheWaitMs: number;
  /** A pool silent this long on a generation has hung (ms; see stall-watch.ts). */
  poolStallMs: number;
  /** A non-streamed reply not done this long goes out as 200 headers and spaces, one each as long (ms; 0 = always whole; see whole-response.ts). */
  wholeReplyHeartbeatMs: number;
  /** A stream silent this long mid-reply gets an SSE comment (ms; see sse-response.ts). */
  streamQuietCommentMs: number;
  /** A stream whose sent text waits this long with none of it taken takes its client for gone (ms, 0 = never; see sse-response.ts). */
  streamStalledClientMs: number;
  defaultRpm: number;
  defaultConcurrency: number;
  /** MiB a day a key stores (its stored records and conversations), where its record names none (storage-budget.ts). */
  defaultStorageMbPerDay: number;
  /** A request in flight that shows no sign of life this long gives its key's slot back (ms; see rate-limiter.ts). */
  concurrencyLeaseMs: number;
  benchRoutes: boolean;
  /**
   * JSON (schemas, JSON mode, tool calls) sent to pools as a GBNF grammar of
   * any depth rather than the regex whose open values and recursion nest 3
   * deep (SSSD_JSON_GRAMMAR; off by default: its automaton's building costs
   * ~30x the regex's a new state, docs/edge.md).
   */
  jsonGrammar: boolean;
  /** One JSON line per API request in the Worker's log (SSSD_REQUEST_LOG; on unless 0 or false; request-log.ts). */
  requestLog: boolean;
  /** A stored response (Responses API) expires this long after it is written (seconds; 0 = never). */
  responseTtlSeconds: number;
  /** A stored response over this many bytes is not stored (response-store.ts). */
  responseMaxBytes: number;
  /** A background response running this long is stopped and stored failed (ms; background-response.ts). */
  backgroundDeadlineMs: number;
  /** The most a background run goes without writing its heartbeat; a reader takes it for lost at three of these (ms; background-response.ts). */
  backgroundHeartbeatMs: number;
  /** SSSD_MODEL_SHA256, lower case: the weights to serve; null = those of the first pool that answers. */
  modelSha256: string | null;
}

/** How long Workers let a request's waitUntil run on after its response. */
export const WORKERS_WAIT_UNTIL_MS = 30_000;
/** SSSD_BACKGROUND_DEADLINE_SECONDS's default: Workers give a request's waitUntil 30 s, and the end's write takes some (background-response.ts). */
export const DEFAULT_BACKGROUND_DEADLINE_S = 25;
/** What the default leaves of waitUntil for a run's end to be written: a deadline past the default leaves less (warned of). */
const END_WRITE_MS = WORKERS_WAIT_UNTIL_MS - DEFAULT_BACKGROUND_DEADLINE_S * 1000;
/** SSSD_BACKGROUND_HEARTBEAT_MS's default: a background run writes its heartbeat at least this often where nothing else is written for it (each such one a KV write). */
export const BACKGROUND_ALIVE_EVERY_MS = 5_000;

/** The Worker's defaults for the user cache and the trie it ships (bench-serve plays the edge with them). */
export const EDGE_USER_CACHE_MAX_BYTES = 64 * 1024;
export const EDGE_TRIE_NODES = 128;
/**
 * Fresh tries one generation pushes at most: each is a subrequest, which
 * Workers bound per request (1,000 on the paid plan, 50 on the free one;
 * review h151), and 8 choices of a request push 8 times as many. Past the
 * cap the pool drafts on from its own sources.
 */
export const EDGE_TRIE_PUSHES = 32;
/**
 * A read of a key KV holds near the Worker takes a millisecond or so; one it
 * must fetch from its central store can take tens to hundreds. Past this the
 * request opens without the cache (the pool drafts from its own sources), and
 * the trie follows when the cache comes.
 */
export const EDGE_USER_CACHE_WAIT_MS = 20;
/**
 * workerd does not notice a client that leaves before a response's headers
 * (nor one whose compressed body is still in the encoder): a non-streamed
 * reply still generating this long starts, and a space follows as often, so
 * the client's leaving fails a write and cancels the generation.
 */
export const WHOLE_REPLY_HEARTBEAT_MS = 500;

/**
 * A stream that has sent nothing this long mid-reply (its pool hangs until the
 * stall window moves the generation on) gets an SSE comment: proxies cut a
 * stream idle past their read timeout (nginx: 60 s), and a failed write
 * notices a client that left.
 */
export const QUIET_STREAM_COMMENT_MS = 5_000;

/**
 * A stream whose body the runtime has taken nothing of this long while
 * chunks wait takes its client for gone (sse-response.ts): a client that
 * reads is read for at once until buffers far larger than a reply's text
 * fill, and under wrangler dev one that left can have its body never read
 * again, with no cancel or abort to tell of it (review h223). A generation
 * that ends first waits as long, at most, for what it sent to be taken
 * before it is kept as read (ClientBody.taken).
 */
export const STALLED_CLIENT_MS = 2_000;

/** The Worker's integer vars: their range, and the default a missing or bad value takes (docs/edge.md's table of them is checked against these). */
export const INT_VARS = {
  SSSD_MAX_BODY_BYTES: { fallback: 1024 * 1024, min: 1024, max: 64 * 1024 * 1024 },
  // A body still arriving this long is refused (408): its key's in-flight slot is held while it is read.
  SSSD_BODY_TIMEOUT_SECONDS: { fallback: 30, min: 1, max: 600 },
  SSSD_USER_CACHE_MAX_BYTES: { fallback: EDGE_USER_CACHE_MAX_BYTES, min: 1024, max: 16 * 1024 * 1024 },
  SSSD_USER_CACHE_HISTORY_TOKENS: { fallback: DEFAULT_USER_CACHE_HISTORY_TOKENS, min: 0, max: 1 << 20 },
  // A `user` per session or per request would otherwise leave a value in KV for good.
  SSSD_USER_CACHE_TTL_DAYS: { fallback: 30, min: 0, max: 3650 },
  // A pool refuses a pushed trie past it (the edge pushes what it ships).
  SSSD_EDGE_TRIE_NODES: { fallback: EDGE_TRIE_NODES, min: 0, max: MAX_PUSHED_TRIE_NODES },
  SSSD_EDGE_TRIE_PUSHES: { fallback: EDGE_TRIE_PUSHES, min: 0, max: 1000 },
  SSSD_USER_CACHE_WAIT_MS: { fallback: EDGE_USER_CACHE_WAIT_MS, min: 0, max: 10_000 },
  // Past the pool's keep-alive for a queued generation (QUEUED_KEEPALIVE_MS, 1 s) with room to spare.
  SSSD_POOL_STALL_SECONDS: { fallback: 30, min: 2, max: 3600 },
  SSSD_WHOLE_REPLY_HEARTBEAT_MS: { fallback: WHOLE_REPLY_HEARTBEAT_MS, min: 0, max: 60_000 },
  SSSD_STREAM_QUIET_COMMENT_MS: { fallback: QUIET_STREAM_COMMENT_MS, min: 100, max: 600_000 },
  SSSD_STREAM_STALLED_CLIENT_MS: { fallback: STALLED_CLIENT_MS, min: 0, max: 600_000 },
  // OpenAI keeps a stored response 30 days.
  SSSD_RESPONSE_TTL_DAYS: { fallback: 30, min: 0, max: 3650 },
  // KV takes values up to 25 MiB.
  SSSD_RESPONSE_MAX_BYTES: { fallback: 4 * 1024 * 1024, min: 1024, max: 25 * 1024 * 1024 },
  SSSD_BACKGROUND_DEADLINE_SECONDS: { fallback: DEFAULT_BACKGROUND_DEADLINE_S, min: 1, max: 3600 },
  // KV takes one write a second of a key (the heartbeat's): a shorter beat would be refused. Tests shorten it to tell a lost run sooner.
  SSSD_BACKGROUND_HEARTBEAT_MS: { fallback: BACKGROUND_ALIVE_EVERY_MS, min: 1000, max: 60_000 },
  SSSD_DEFAULT_RPM: { fallback: 600, min: 1, max: 1_000_000 },
  SSSD_DEFAULT_CONCURRENCY: { fallback: 8, min: 1, max: 10_000 },
  // 64 MiB a day: kept SSSD_RESPONSE_TTL_DAYS (30), ~1.9 GiB a key at most; before, the rate alone (~860 GB a day at 600 rpm).
  SSSD_DEFAULT_STORAGE_MB_PER_DAY: { fallback: 64, min: 1, max: 1_000_000 },
  // At least three heartbeats (LEASE_HEARTBEAT_MS): a lease as short as one lapsed under a live request whose timer ran late.
  SSSD_CONCURRENCY_LEASE_SECONDS: { fallback: LEASE_MS / 1000, min: 3, max: 3600 },
} as const;
type IntVar = keyof typeof INT_VARS;

/** The Worker's vars an operator may set, besides the pool's URLs and token and the keys (the launcher passes these through). */
export const EDGE_TUNING_VARS: readonly string[] = [...Object.keys(INT_VARS), 'SSSD_BENCH_ROUTES', 'SSSD_JSON_GRAMMAR', 'SSSD_REQUEST_LOG', 'SSSD_MODEL_SHA256'];

const SHA256_HEX = /^[0-9a-fA-F]{64}$/;

/** What an on/off var (SSSD_BENCH_ROUTES, SSSD_JSON_GRAMMAR, SSSD_REQUEST_LOG) takes. */
const SWITCH_VALUES: readonly string[] = ['0', '1', 'true', 'false'];

function intValue(value: unknown, name: IntVar): number | null {
  const { min, max } = INT_VARS[name];
  // Decimal digits only, as the command line's flags take them: Number() also read "1e6", "0x100000" and "0b1".
  const n = typeof value === 'string' && /^\s*[+-]?\d+\s*$/.test(value) ? Number(value) : NaN;
  return Number.isInteger(n) && n >= min && n <= max ? n : null;
}

function intVar(env: Partial<Record<IntVar, string>>, name: IntVar): number {
  return intValue(env[name], name) ?? INT_VARS[name].fallback;
}

export interface InvalidEdgeVar {
  /** `NAME="value" is not an integer in [min, max]` */
  message: string;
  /** What the Worker uses instead. */
  fallback: number | string;
}

/**
 * The vars that are set but out of their range or not integers (the Worker
 * then uses the default: a typo must not take the edge down, but it must not
 * pass unnoticed either).
 */
export function invalidEdgeVars(env: Partial<Record<string, unknown>>): InvalidEdgeVar[] {
  const problems: InvalidEdgeVar[] = [];
  for (const name of Object.keys(INT_VARS) as IntVar[]) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    if (typeof value !== 'string' || intValue(value, name) === null) {
      const { min, max, fallback } = INT_VARS[name];
      problems.push({ message: `${name}=${JSON.stringify(value)} is not an integer in [${min}, ${max}]`, fallback });
    }
  }
  for (const [name, fallback] of [['SSSD_BENCH_ROUTES', 0], ['SSSD_JSON_GRAMMAR', 0], ['SSSD_REQUEST_LOG', 1]] as const) {
    const value = env[name];
    // "yes" or "on" meant on and quietly was off.
    if (value !== undefined && value !== '' && !(typeof value === 'string' && SWITCH_VALUES.includes(value))) {
      problems.push({ message: `${name}=${JSON.stringify(value)} is not one of ${SWITCH_VALUES.join(', ')}`, fallback });
    }
  }
  const pin = env.SSSD_MODEL_SHA256;
  if (pin !== undefined && pin !== '' && !(typeof pin === 'string' && SHA256_HEX.test(pin))) {
    problems.push({ message: `SSSD_MODEL_SHA256=${JSON.stringify(String(pin).slice(0, 80))} is not a SHA-256 in hex (64 digits)`, fallback: 'no pin: the first pool\'s model' });
  }
  return problems;
}

/** The pools' base URLs; an entry that is no http(s) URL is left out, said once (it could never be reached). */
function poolUrls(list: unknown): string[] {
  if (typeof list !== 'string') {
    console.warn(`edge: SSSD_POOL_URLS is not a comma-separated list of URLs (got ${JSON.stringify(list)?.slice(0, 200)}); no pool`);
    return [];
  }
  const urls: string[] = [];
  for (const entry of list.split(',')) {
    const url = entry.trim().replace(/\/+$/, '');
    if (url.length === 0) continue;
    if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) {
      console.warn(`edge: SSSD_POOL_URLS entry ${JSON.stringify(url.slice(0, 200))} is not an http(s) URL; left out`);
      continue;
    }
    urls.push(url);
  }
  return urls;
}

/** A host name that stays on the machine: localhost, 127.0.0.0/8, ::1 (URL writes IPv6 in brackets, IPv4 in dotted decimal). */
function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/**
 * Plain-HTTP pools off this machine: the pool token and users' prompts would
 * cross the network in clear (docs/deploy.md, "TLS in front of each pool").
 * Said, not refused: a private network may be the operator's choice.
 */
function warnPlainHttpPools(urls: readonly string[]): void {
  for (const url of urls) {
    const { protocol, hostname } = new URL(url);
    if (protocol === 'http:' && !isLoopbackHost(hostname)) {
      console.warn(`edge: pool ${url} is plain http:// off this machine: the pool token and the prompts cross the network in clear; put TLS in front of it and use https:// (docs/deploy.md)`);
    }
  }
}

/**
 * The vars as text. wrangler hands a var written in `wrangler.toml` as a TOML
 * number or boolean (`SSSD_DEFAULT_RPM = 60`) to the Worker as that, and an
 * array as an array: read as the text it stands for, not refused (it was a
 * 500 for every request, from a string method called on a number).
 */
function varsAsText(env: EdgeEnv): EdgeEnv {
  const raw = env as unknown as Record<string, unknown>;
  let text: Record<string, unknown> | null = null;
  for (const [name, value] of Object.entries(raw)) {
    if (!name.startsWith('SSSD_') || name === 'SSSD_KV') continue;
    let spelled: string | undefined;
    if (typeof value === 'number' || typeof value === 'boolean') spelled = String(value);
    else if (name === 'SSSD_POOL_URLS' && Array.isArray(value) && value.every((v) => typeof v === 'string')) spelled = value.join(',');
    if (spelled === undefined) continue;
    text ??= { ...raw };
    text[name] = spelled;
  }
  return (text ?? raw) as unknown as EdgeEnv;
}

// The env object is stable for an isolate's lifetime: parse it once.
const parsed = new WeakMap<object, EdgeConfig>();

export function edgeConfig(given: EdgeEnv): EdgeConfig {
  const hit = parsed.get(given);
  if (hit) return hit;
  const env = varsAsText(given);
  for (const { message, fallback } of invalidEdgeVars(env as unknown as Record<string, unknown>)) console.warn(`edge: ${message}; using ${fallback}`);
  // Pools refuse an edge without their token: every request would be a 503 with no other word of why.
  if (!env.SSSD_POOL_TOKEN) console.warn('edge: SSSD_POOL_TOKEN is not set (a secret: wrangler secret put SSSD_POOL_TOKEN); pools will refuse this edge');
  const tokenProblem = env.SSSD_POOL_TOKEN ? bearerTokenProblem('SSSD_POOL_TOKEN', env.SSSD_POOL_TOKEN) : null;
  if (tokenProblem) console.warn(`edge: ${tokenProblem}; pools will refuse this edge`);
  // Else each request that needs KV logged a TypeError's stack, and was answered as a KV outage to retry.
  if (kvNamespace(given) === null) console.error(kvMissingLine(given));
  const config: EdgeConfig = {
    poolUrls: poolUrls(env.SSSD_POOL_URLS ?? ''),
    poolToken: env.SSSD_POOL_TOKEN ?? '',
    maxBodyBytes: intVar(env, 'SSSD_MAX_BODY_BYTES'),
    bodyTimeoutMs: 1000 * intVar(env, 'SSSD_BODY_TIMEOUT_SECONDS'),
    userCacheMaxBytes: intVar(env, 'SSSD_USER_CACHE_MAX_BYTES'),
    userCacheHistoryTokens: intVar(env, 'SSSD_USER_CACHE_HISTORY_TOKENS'),
    userCacheTtlSeconds: 86_400 * intVar(env, 'SSSD_USER_CACHE_TTL_DAYS'),
    edgeTrieNodes: intVar(env, 'SSSD_EDGE_TRIE_NODES'),
    edgeTriePushes: intVar(env, 'SSSD_EDGE_TRIE_PUSHES'),
    userCacheWaitMs: intVar(env, 'SSSD_USER_CACHE_WAIT_MS'),
    poolStallMs: 1000 * intVar(env, 'SSSD_POOL_STALL_SECONDS'),
    wholeReplyHeartbeatMs: intVar(env, 'SSSD_WHOLE_REPLY_HEARTBEAT_MS'),
    streamQuietCommentMs: intVar(env, 'SSSD_STREAM_QUIET_COMMENT_MS'),
    streamStalledClientMs: intVar(env, 'SSSD_STREAM_STALLED_CLIENT_MS'),
    defaultRpm: intVar(env, 'SSSD_DEFAULT_RPM'),
    defaultConcurrency: intVar(env, 'SSSD_DEFAULT_CONCURRENCY'),
    defaultStorageMbPerDay: intVar(env, 'SSSD_DEFAULT_STORAGE_MB_PER_DAY'),
    concurrencyLeaseMs: 1000 * intVar(env, 'SSSD_CONCURRENCY_LEASE_SECONDS'),
    responseTtlSeconds: 86_400 * intVar(env, 'SSSD_RESPONSE_TTL_DAYS'),
    responseMaxBytes: intVar(env, 'SSSD_RESPONSE_MAX_BYTES'),
    backgroundDeadlineMs: 1000 * intVar(env, 'SSSD_BACKGROUND_DEADLINE_SECONDS'),
    backgroundHeartbeatMs: intVar(env, 'SSSD_BACKGROUND_HEARTBEAT_MS'),
    benchRoutes: env.SSSD_BENCH_ROUTES === '1' || env.SSSD_BENCH_ROUTES === 'true',
    jsonGrammar: env.SSSD_JSON_GRAMMAR === '1' || env.SSSD_JSON_GRAMMAR === 'true',
    // On by default: off only when said so (a value neither on nor off is warned of above, and leaves it on).
    requestLog: env.SSSD_REQUEST_LOG !== '0' && env.SSSD_REQUEST_LOG !== 'false',
    modelSha256: env.SSSD_MODEL_SHA256 && SHA256_HEX.test(env.SSSD_MODEL_SHA256) ? env.SSSD_MODEL_SHA256.toLowerCase() : null,
  };
  warnPlainHttpPools(config.poolUrls);
  // Allowed for wrangler dev and tests, which set no bound on waitUntil; deployed, a run past it is cut unstored (review h151).
  if (config.backgroundDeadlineMs > WORKERS_WAIT_UNTIL_MS - END_WRITE_MS) {
    console.warn(`edge: SSSD_BACKGROUND_DEADLINE_SECONDS=${config.backgroundDeadlineMs / 1000} leaves a background run's end less than ${END_WRITE_MS / 1000} s of Workers' ${WORKERS_WAIT_UNTIL_MS / 1000} s waitUntil: deployed, a run cut there stores no end, and reads failed once its heartbeat is late`);
  }
  if (config.poolUrls.length === 0) console.warn('edge: SSSD_POOL_URLS names no pool (a comma-separated list of http(s) URLs in [vars]); every generation will be a 503');
  parsed.set(given, config);
  return config;
}
