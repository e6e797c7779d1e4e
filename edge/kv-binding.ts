/**
 * The Worker's KV namespace (SSSD_KV): API keys not in SSSD_API_KEYS, user
 * caches, stored responses, chat completions and conversations. A Worker
 * deployed without it (wrangler.toml's `[[kv_namespaces]]` missing, or its
 * `binding` named otherwise) failed every such request with a TypeError and
 * its stack, answered as a KV outage to retry (review h137): the binding is
 * looked for here, said once by edgeConfig, and its absence answered as the
 * operator's to fix.
 */
import { ApiError } from './api-error';
import type { EdgeEnv } from './env';

/** Whether `value` has a KV namespace's methods (`all`: every one the edge calls, else its reads'). */
function isKvNamespace(value: unknown, all: boolean): value is KVNamespace {
  if (typeof value !== 'object' || value === null) return false;
  const kv = value as Record<string, unknown>;
  return typeof kv.get === 'function' && (!all || (typeof kv.put === 'function' && typeof kv.delete === 'function' && typeof kv.list === 'function'));
}

/** The KV namespace bound as SSSD_KV, or null where the Worker has none. */
export function kvNamespace(env: EdgeEnv): KVNamespace | null {
  return isKvNamespace(env.SSSD_KV, false) ? env.SSSD_KV : null;
}

/** The names of the Worker's other KV bindings: a namespace bound under another name than SSSD_KV is the likely mistake. */
export function otherKvBindings(env: EdgeEnv): string[] {
  return Object.entries(env as unknown as Record<string, unknown>)
    .filter(([name, value]) => name !== 'SSSD_KV' && isKvNamespace(value, true))
    .map(([name]) => name);
}

/**
 * A request that needs KV where the Worker has no SSSD_KV binding: no retry
 * helps until the operator binds it (`x-should-retry: false`, as for a pool
 * token the pools refuse), and it is the service's fault, not the client's.
 */
export function kvBindingMissing(): ApiError {
  return new ApiError(
    500,
    "This edge has no SSSD_KV binding (its KV namespace), which this request needs; the service's operator must bind it in wrangler.toml's [[kv_namespaces]] and deploy again.",
    'server_error',
    'kv_binding_missing',
    null,
    undefined,
    false,
  );
}

/** SSSD_KV, or the 500 kvBindingMissing where the Worker has none. */
export function requireKv(env: EdgeEnv): KVNamespace {
  const kv = kvNamespace(env);
  if (kv === null) throw kvBindingMissing();
  return kv;
}

/** The log's line for a Worker without SSSD_KV (edgeConfig says it once per isolate). */
export function kvMissingLine(env: EdgeEnv): string {
  const others = otherKvBindings(env);
  const found = others.length > 0 ? ` (a KV namespace is bound as ${others.join(', ')}: name its binding SSSD_KV)` : '';
  return `edge: the SSSD_KV binding is missing${found}; wrangler.toml's [[kv_namespaces]] must say binding = "SSSD_KV". API keys other than the dev key and SSSD_API_KEYS' cannot be looked up, and nothing is stored (user caches, responses, chat completions, conversations): those requests get 500 kv_binding_missing, and /readyz answers 503`;
}
