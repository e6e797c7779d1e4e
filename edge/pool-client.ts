/**
 * HTTP client for one pool (shared/protocol.ts, docs/protocol.md): info,
 * tokenizer, generation as an NDJSON event stream, trie pushes, cancellation.
 */
import type { z } from 'zod';
import type { generateRequestSchema, PoolEvent, PoolHealth, PoolInfo, PushTrieRequest } from '../shared/protocol';
import { POOL_EVENT_FRAMES_ACCEPT } from '../shared/pool-event-frames';
import { poolEventFormat, readPoolEvents } from '../shared/pool-event-stream';
import { clipped } from './request-schema';

/** The pool could not take the request (unreachable, busy, 5xx): try another one. */
export class PoolUnavailableError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
    /** What a busy pool said (which limit), for the client's 503; never the pool's address. */
    readonly poolMessage?: string,
  ) {
    super(message);
    this.name = 'PoolUnavailableError';
  }
}

/**
 * The pool did not answer at all (connection refused or reset, no such
 * host): down, or not there. Told apart from an answer (busy, 5xx, a
 * refusal) and from silence (a timeout): with the other pools refusing the
 * edge's token, an unreachable one leaves nothing to retry for
 * (no-pool-error.ts).
 */
export class PoolUnreachableError extends PoolUnavailableError {
  constructor(message: string) {
    super(message);
    this.name = 'PoolUnreachableError';
  }
}

/**
 * This pool cannot serve this edge at all, whatever the request: it serves
 * another model (421 `model_mismatch`), refuses the edge's token (401), or
 * its URL names no pool (403, 404, 405: a proxy, a path such as `/v1` added
 * to the base URL). Another pool may serve it; the operator must hear of it.
 */
export class PoolMisdirectedError extends PoolUnavailableError {
  constructor(
    readonly status: number,
    message: string,
    /** A 401 whose body is not a pool's own error: the URL may name something else (an edge, a proxy's login). */
    readonly notAPool = false,
  ) {
    super(message);
    this.name = 'PoolMisdirectedError';
  }
}

/** The pool refused the request itself (4xx other than busy): another pool would too. */
export class PoolRejectedError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** A 413 too_large's `maxTotalTokens`: the most tokens that pool holds (null: not said, an older pool or a body limit). */
    readonly maxTotalTokens: number | null = null,
  ) {
    super(message);
    this.name = 'PoolRejectedError';
  }
}

/** The body of POST /v1/generate as sent (fields with defaults may be left out). */
export type GenerateInput = z.input<typeof generateRequestSchema>;

/** Statuses that say the pool cannot serve this edge whatever it sends (PoolMisdirectedError). */
const MISDIRECTED = new Set([401, 403, 404, 405, 421]);

/** A trie push or a cancel the pool has not answered by then will not help (and a stream's close waits on a stop's cancel). */
const CONTROL_TIMEOUT_MS = 5_000;

export class PoolClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
  ) {}

  private headers(extra?: Record<string, string>): Record<string, string> {
    return { authorization: `Bearer ${this.token}`, ...extra };
  }

  async health(timeoutMs = 1000): Promise<PoolHealth> {
    const res = await fetch(`${this.baseUrl}/healthz`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) throw new PoolUnavailableError(`healthz answered ${res.status}`);
    return (await res.json()) as PoolHealth;
  }

  async info(timeoutMs = 5000): Promise<PoolInfo> {
    // The whole URL in what is said of it: a pool URL given with its own /v1 fetched /v1/v1/info.
    const url = `${this.baseUrl}/v1/info`;
    let res: Response;
    try {
      res = await fetch(url, { headers: this.headers(), signal: AbortSignal.timeout(timeoutMs) });
    } catch (err) {
      // Silent past the timeout is not unreachable: a hung pool may answer the next request.
      if (err instanceof Error && err.name === 'TimeoutError') throw err;
      throw new PoolUnreachableError(`pool ${url} unreachable: ${String(err)}`);
    }
    if (res.status === 401) throw refusedToken(url, await res.text().catch(() => ''));
    const why = res.status === 404 ? ' (no pool there: SSSD_POOL_URLS takes base URLs, without /v1)' : '';
    if (MISDIRECTED.has(res.status)) {
      await res.body?.cancel();
      throw new PoolMisdirectedError(res.status, `pool ${url} answered ${res.status}${why}`);
    }
    if (!res.ok) throw new PoolUnavailableError(`${url} answered ${res.status}`);
    return (await res.json()) as PoolInfo;
  }

  /**
   * The file at `path` on this pool (its /v1/info's tokenizer.path). Appended
   * to the base URL, not resolved against it: a pool behind a path prefix
   * (`https://host/poolA`) keeps it, and a path that names another host is
   * refused rather than sent the pool token.
   */
  async tokenizerBytes(path: string): Promise<Uint8Array> {
    if (!path.startsWith('/') || path.startsWith('//')) throw new PoolUnavailableError(`the pool at ${this.baseUrl} names its tokenizer ${JSON.stringify(path.slice(0, 80))}, not a path on it`);
    const url = `${this.baseUrl}${path}`;
    const res = await fetch(url, { headers: this.headers(), signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new PoolUnavailableError(`${path} answered ${res.status}`);
    return new Uint8Array(await res.arrayBuffer());
  }

  /** Opens a generation; resolves once the pool answered with a stream of events. */
  async generate(request: GenerateInput, signal?: AbortSignal): Promise<AsyncGenerator<PoolEvent>> {
    let res: Response;
    // `signal` aborts the fetch until the pool answers, and then ends the body by cancelling its reader
    // (readPoolEvents), not by aborting the fetch: an aborted body fails its pending read with an error whose
    // stack holds every generator awaiting it, and workerd keeps that error for good once the client has left
    // (a streamed request whose client left kept its whole run and request, ~60-100 KB each).
    const answer = new AbortController();
    const abortAnswer = (): void => answer.abort(signal?.reason);
    if (signal?.aborted) abortAnswer();
    else signal?.addEventListener('abort', abortAnswer, { once: true });
    try {
      res = await fetch(`${this.baseUrl}/v1/generate`, {
        method: 'POST',
        // Frames: a tokens event is bytes, not JSON to parse (this CPU is billed); a pool from before them answers NDJSON.
        headers: this.headers({ 'content-type': 'application/json', accept: POOL_EVENT_FRAMES_ACCEPT }),
        body: JSON.stringify(request),
        signal: answer.signal,
      });
    } catch (err) {
      throw new PoolUnreachableError(`pool ${this.baseUrl} unreachable: ${String(err)}`);
    } finally {
      signal?.removeEventListener('abort', abortAnswer);
    }
    if (!res.ok || !res.body) {
      const text = await res.text().catch(() => '');
      const retryAfter = Number(res.headers.get('retry-after'));
      if (res.status === 401) throw refusedToken(this.baseUrl, text);
      if (MISDIRECTED.has(res.status)) throw new PoolMisdirectedError(res.status, `pool ${this.baseUrl} answered ${res.status}: ${text.slice(0, 300)}`);
      if (res.status === 429 || res.status === 503 || res.status >= 500) {
        // The body's retryAfterMs is the pool's own hint to the millisecond; the header rounds it up to seconds.
        const said = poolErrorBody(text);
        const hintMs = typeof said.retryAfterMs === 'number' && said.retryAfterMs > 0 ? said.retryAfterMs : retryAfter > 0 ? retryAfter * 1000 : undefined;
        // Only a busy pool's words reach the client (which limit it hit); an internal error's are the operator's.
        const busyMessage = said.code === 'busy' && typeof said.message === 'string' ? said.message : undefined;
        throw new PoolUnavailableError(`pool ${this.baseUrl} answered ${res.status}: ${text.slice(0, 200)}`, hintMs, busyMessage);
      }
      // The pool's own words where it gave them (its JSON error), not the body quoted whole; a 413's limit as a number.
      const said = poolErrorBody(text);
      const limit = typeof said.maxTotalTokens === 'number' && Number.isSafeInteger(said.maxTotalTokens) && said.maxTotalTokens > 0 ? said.maxTotalTokens : null;
      throw new PoolRejectedError(res.status, clipped(typeof said.message === 'string' ? said.message : text, 500), limit);
    }
    return readPoolEvents(res.body, { format: poolEventFormat(res.headers.get('content-type')), signal });
  }

  /** Fire-and-forget: a fresh trie for a running generation. */
  async pushTrie(id: string, body: PushTrieRequest): Promise<void> {
    const res = await fetch(`${this.baseUrl}/v1/generations/${encodeURIComponent(id)}/trie`, {
      method: 'POST',
      signal: AbortSignal.timeout(CONTROL_TIMEOUT_MS),
      headers: this.headers({ 'content-type': 'application/json' }),
      body: JSON.stringify(body),
    });
    await res.body?.cancel();
  }

  /** `reason` 'stop': the edge found a stop string, and the generation is finished, not cut off. */
  async cancel(id: string, reason?: 'stop'): Promise<void> {
    const res = await fetch(`${this.baseUrl}/v1/generations/${encodeURIComponent(id)}${reason ? `?reason=${reason}` : ''}`, {
      method: 'DELETE',
      signal: AbortSignal.timeout(CONTROL_TIMEOUT_MS),
      headers: this.headers(),
    });
    await res.body?.cancel();
  }
}


/**
 * A 401 from `where`: a pool's own (its JSON error, code `unauthorized`)
 * refuses SSSD_POOL_TOKEN; any other body (an edge's OpenAI error, a proxy's
 * page) says the URL may name no pool, which a token would not fix.
 */
function refusedToken(where: string, text: string): PoolMisdirectedError {
  let code: unknown;
  try {
    const said = JSON.parse(text) as { type?: unknown; code?: unknown } | null;
    code = said?.type === 'error' ? said.code : undefined;
  } catch {
    // Not JSON: not a pool's.
  }
  if (code === 'unauthorized') return new PoolMisdirectedError(401, `pool ${where} answered 401 (it refuses SSSD_POOL_TOKEN)`);
  return new PoolMisdirectedError(401, `${where} answered 401, not as a pool does (SSSD_POOL_URLS may name something that is not a pool, such as an edge): ${text.slice(0, 200)}`, true);
}

/** A pool's JSON error body's message (`{"type":"error","code","message"}`), else the text as it came. */
/** A pool's JSON error as it said it, read once; empty where the body is none (a proxy's page: its status, or header, alone). */
function poolErrorBody(text: string): { retryAfterMs?: unknown; message?: unknown; code?: unknown; maxTotalTokens?: unknown } {
  try {
    const said: unknown = JSON.parse(text);
    return typeof said === 'object' && said !== null ? said : {};
  } catch {
    return {};
  }
}

/** Whether `err` is a pool's own 401: it refuses this edge's SSSD_POOL_TOKEN (not a URL that may name no pool). */
export function refusesToken(err: unknown): boolean {
  return err instanceof PoolMisdirectedError && err.status === 401 && !err.notAPool;
}
