/**
 * The Worker's bindings. Strings come from wrangler vars / secrets; numbers are
 * parsed by edge-config.ts so a typo falls back to a safe default.
 */
export interface EdgeEnv {
  /**
   * Per-user caches (`uc:<scope>`), stored responses (`resp:<hash>`) and hashed API keys (`key:<sha256>`).
   * Optional to the type: a Worker deployed without the binding has none (read it through kv-binding.ts).
   */
  SSSD_KV?: KVNamespace;
  /** Comma-separated pool base URLs. */
  SSSD_POOL_URLS?: string;
  /** Bearer token for the pools (secret; .dev.vars in local set-ups). */
  SSSD_POOL_TOKEN?: string;
  /** SHA-256 (hex) of the local development key; the plaintext never reaches the Worker. */
  SSSD_DEV_KEY_SHA256?: string;
  /** Secret: JSON object mapping key SHA-256 (hex) to a KeyRecord-like object. */
  SSSD_API_KEYS?: string;
  /** Request body limit in bytes (default 1 MiB). */
  SSSD_MAX_BODY_BYTES?: string;
  /** Upper bound of a stored user cache in bytes (default 64 KiB). */
  SSSD_USER_CACHE_MAX_BYTES?: string;
  /** Tokens of a user's latest requests kept verbatim in their cache (default 2048, 0 = none). */
  SSSD_USER_CACHE_HISTORY_TOKENS?: string;
  /** Days a user's cache stays in KV after its last write (default 30, 0 = for good). */
  SSSD_USER_CACHE_TTL_DAYS?: string;
  /** Draft nodes in the edge trie shipped with a request (default 128). */
  SSSD_EDGE_TRIE_NODES?: string;
  /** Fresh tries one generation pushes at most (default 32). */
  SSSD_EDGE_TRIE_PUSHES?: string;
  /** Milliseconds a request waits for the user's cache before it opens without it, its trie following (default 20). */
  SSSD_USER_CACHE_WAIT_MS?: string;
  /** Seconds a pool may send nothing on a generation before the edge takes it as hung and moves on (default 30). */
  SSSD_POOL_STALL_SECONDS?: string;
  /** Milliseconds a non-streamed reply is held back whole before its headers go and a space follows every as many, so a client that leaves is noticed (default 500, 0 = always whole). */
  SSSD_WHOLE_REPLY_HEARTBEAT_MS?: string;
  /** Milliseconds a stream may send nothing mid-reply before an SSE comment goes out, for proxies' read timeouts (default 5000). */
  SSSD_STREAM_QUIET_COMMENT_MS?: string;
  /** Seconds a request body may take to arrive whole before a 408 (default 30). */
  SSSD_BODY_TIMEOUT_SECONDS?: string;
  /** Days a stored response (Responses API) stays in KV (default 30, 0 = for good). */
  SSSD_RESPONSE_TTL_DAYS?: string;
  /** Bytes over which a response is not stored (default 4 MiB). */
  SSSD_RESPONSE_MAX_BYTES?: string;
  /** Seconds a background response (Responses API, `background: true`) may run before it is stopped and stored failed (default 25: Workers give waitUntil 30). */
  SSSD_BACKGROUND_DEADLINE_SECONDS?: string;
  /** Milliseconds a background run may go without writing its heartbeat; a reader takes it for lost at three of these where it ran (default 5000). */
  SSSD_BACKGROUND_HEARTBEAT_MS?: string;
  /** Defaults for keys without explicit limits. */
  SSSD_DEFAULT_RPM?: string;
  SSSD_DEFAULT_CONCURRENCY?: string;
  /** MiB a day a key without its own `storageMbPerDay` stores through conversations' routes and metadata updates (default 64). */
  SSSD_DEFAULT_STORAGE_MB_PER_DAY?: string;
  /** Seconds a request in flight may show no sign of life before its key's slot is taken back (default 5). */
  SSSD_CONCURRENCY_LEASE_SECONDS?: string;
  /** The checkpoint's SHA-256 (hex) the edge serves, whatever pools list first: pools with other weights are passed over (an operator's switch for a rolling upgrade across isolates). */
  SSSD_MODEL_SHA256?: string;
  /** "1" enables POST /bench/edge-cpu (CPU-time measurements inside workerd). */
  SSSD_BENCH_ROUTES?: string;
  /** "1": JSON goes to pools as a grammar of any depth (off: the depth-3 regex). */
  SSSD_JSON_GRAMMAR?: string;
  /** "0" (or "false") turns off the one JSON line per API request in the Worker's log (request-log.ts); on by default. */
  SSSD_REQUEST_LOG?: string;
}
