/**
 * One JSON line per API request, written when the request is over: at its
 * response for most routes, for a completion when its generations have
 * ended (the stream finished, failed, or the client left), and for a
 * background response once its end is stored (or its write failed): a line
 * that said 200 at its generation's end was written for runs whose end an
 * edge stopped meanwhile never stored (review h223). So a request id a
 * user reports can be found in the Worker's logs (docs/deploy.md, "Logs").
 * It carries counts, codes and timings, never a prompt, an output or a key;
 * the tenant as the pool knows it (a hash), so the edge's and the pool's
 * lines of a request join.
 */

import { ApiError } from './api-error';
import { sha256Hex } from './api-keys';

/** The line as written (snake_case, as the API's own fields). Absent fields were not known or do not apply. */
export interface RequestLogLine {
  /** Always "request": what to filter Workers Logs by. */
  msg: 'request';
  /** `req-<hex>`, as the `x-request-id` header says; a completion's id carries the same hex. */
  id: string;
  method: string;
  /** The route as registered (`/v1/responses/:id`), never the path as sent; `/*` (`/v1/*` under /v1) for a path no route takes. */
  route: string;
  status: number;
  /** The error's `code` (else its type): the response's, one a stream ended with after its 200, or a background response's stored `failed` end's. */
  error?: string;
  /** sha256('tenant:' + JSON.stringify(name)), first 12 hex digits: the pool's tenant for the key. */
  tenant?: string;
  /** The key's SHA-256, first 12 hex digits (`sssd key create` prints the hash): two keys of one tenant told apart (review h143). */
  key?: string;
  model?: string;
  n?: number;
  stream?: boolean;
  prompt_tokens?: number;
  /** Of prompt_tokens, those the pool's prefix cache held (as usage's prompt_tokens_details.cached_tokens). */
  cached_tokens?: number;
  /** Every choice's, added up. */
  completion_tokens?: number;
  /** One per choice, in order: stop, length, or null for one that ended otherwise (an error, the client leaving). */
  finish_reasons?: Array<string | null>;
  /**
   * One per choice, in order: the place in SSSD_POOL_URLS (from 0) of the pool
   * that ran it last (after a resume: the one that went on with it), null for
   * one no pool took; load per pool, and moves, read from the log (review h147).
   */
  served_by?: Array<number | null>;
  /** Pool attempts it took to open the generations (1 each where the first pool took it). */
  pools_tried?: number;
  /** Times a generation moved to another pool mid-reply (completion-run.ts, MAX_RESUMES). */
  resumes?: number;
  /** The client went away before the reply was over. */
  client_left?: boolean;
  /** A background response's run stopped by a cancel or a delete asked through the API, at its deadline, or taken for lost (review h143: it was logged client_left). */
  stopped_by?: Exclude<CancelCause, 'client'>;
  /** From the request's arrival to its response's headers, and to the first generated token reaching the edge. */
  ttfb_ms?: number;
  first_token_ms?: number;
  /** From the request's arrival to the end of the line's subject. */
  ms: number;
}

/** Digits of the tenant hash a line carries: enough to tell tenants apart, too few to stand for the hash in a lookup. */
export const TENANT_HASH_DIGITS = 12;
/** Digits of the key's hash a line carries: as few, for the same reason. */
export const KEY_HASH_DIGITS = 12;

/** How one generation of a request went, as its CompletionRun knows it. */
export interface GenerationOutcome {
  finishReason: 'stop' | 'length' | null;
  completionTokens: number;
  poolsTried: number;
  resumes: number;
  /** What stopped it before its end (null: nothing did). */
  cancelled: CancelCause | null;
  /** Prompt tokens the pool's prefix cache held. */
  cachedTokens: number;
  /** The place in SSSD_POOL_URLS of the pool that ran it last (null: none took it). */
  pool: number | null;
  /** The code of the error it ended with (null: none). */
  error: string | null;
  /** Date.now() when its first token reached the edge (0: none did). */
  firstTokenAt: number;
}

/**
 * What stops a generation early: its client leaving (or its request ending), a background response's cancel, delete
 * or deadline, a reader that took its run for lost (its heartbeat late: background-response.ts), or its request
 * failing (a sibling choice could not start: the request's error says why).
 */
export type CancelCause = 'client' | 'cancel' | 'delete' | 'deadline' | 'lost' | 'request-failed';

/** What the key's tenant is hashed from for the pool (completion-handler.ts, poolTenant), and so for the line. */
export function tenantHashText(tenant: string): string {
  return `tenant:${JSON.stringify(tenant)}`;
}

/** A tenant as its requests' lines name it (`sssd key create` prints it beside the key). */
export async function loggedTenant(tenant: string): Promise<string> {
  return (await sha256Hex(tenantHashText(tenant))).slice(0, TENANT_HASH_DIGITS);
}

export class RequestLog {
  private readonly line: RequestLogLine;
  private readonly startedAt = Date.now();
  /** What the line waits for: the response, the generations where there are some, and a background response's stored end. */
  private pending = 1;

  constructor(hex: string, method: string) {
    // Every field named here, in the order the line gives them (JSON.stringify leaves out those still undefined).
    this.line = {
      msg: 'request',
      id: `req-${hex}`,
      method,
      route: '',
      status: 0,
      error: undefined,
      tenant: undefined,
      key: undefined,
      model: undefined,
      n: undefined,
      stream: undefined,
      prompt_tokens: undefined,
      cached_tokens: undefined,
      completion_tokens: undefined,
      finish_reasons: undefined,
      served_by: undefined,
      pools_tried: undefined,
      resumes: undefined,
      client_left: undefined,
      stopped_by: undefined,
      ttfb_ms: undefined,
      first_token_ms: undefined,
      ms: 0,
    };
  }

  /** The completion's own figures, known once it is planned (before any generation opens). */
  completion(model: string, n: number, stream: boolean, promptTokens: number, tenantHash: string): void {
    const line = this.line;
    line.model = model;
    line.n = n;
    line.stream = stream;
    line.prompt_tokens = promptTokens;
    line.tenant = tenantHash.slice(0, TENANT_HASH_DIGITS);
    this.pending++;
  }

  /** The key the request was made with (its record's keyId: a prefix of its hash). */
  keyOf(keyId: string): void {
    this.line.key = keyId.slice(0, KEY_HASH_DIGITS);
  }

  /** Whether the tenant is known already (a completion says it; the router then need not hash it). */
  get hasTenant(): boolean {
    return this.line.tenant !== undefined;
  }

  /** An error code the router knows of without an exception (its own 404 and 405). */
  failed(code: string): void {
    this.line.error ??= code;
  }

  /** The response is on its way (its headers); the line is written now unless generations run on. */
  responded(status: number, route: string, error: string | null, tenantHash: string | null): void {
    const line = this.line;
    line.status = status;
    line.route = route;
    if (error !== null) line.error = error;
    if (tenantHash !== null && line.tenant === undefined) line.tenant = tenantHash.slice(0, TENANT_HASH_DIGITS);
    line.ttfb_ms = Date.now() - this.startedAt;
    this.settle();
  }

  /** Every generation of the completion has ended (finished, failed or cancelled). */
  generationsEnded(outcomes: readonly GenerationOutcome[]): void {
    const line = this.line;
    let tokens = 0;
    let tried = 0;
    let resumes = 0;
    let firstToken = 0;
    let cached = 0;
    const reasons: Array<string | null> = [];
    const servedBy: Array<number | null> = [];
    for (const outcome of outcomes) {
      tokens += outcome.completionTokens;
      // The prompt is one for every choice: as usage says it, the most any choice found cached.
      cached = Math.max(cached, outcome.cachedTokens);
      tried += outcome.poolsTried;
      resumes += outcome.resumes;
      reasons.push(outcome.finishReason);
      servedBy.push(outcome.pool);
      if (outcome.cancelled === 'client') line.client_left = true;
      // A request that failed says so in `error`: its client did not leave (review h154).
      else if (outcome.cancelled !== null && outcome.cancelled !== 'request-failed') line.stopped_by = outcome.cancelled;
      if (outcome.error !== null && line.error === undefined) line.error = outcome.error;
      if (outcome.firstTokenAt > 0 && (firstToken === 0 || outcome.firstTokenAt < firstToken)) firstToken = outcome.firstTokenAt;
    }
    line.cached_tokens = cached;
    line.completion_tokens = tokens;
    line.finish_reasons = reasons;
    line.served_by = servedBy;
    if (tried > 0) line.pools_tried = tried;
    line.resumes = resumes;
    if (firstToken > 0) line.first_token_ms = firstToken - this.startedAt;
    this.settle();
  }

  /**
   * The reply's body goes on past its generations' end (a stream's last
   * frames, a whole reply held past its headers): the line waits for it too,
   * as its client may be found gone only then (replyEnded).
   */
  awaitsReplyEnd(): void {
    this.pending++;
  }

  /**
   * The reply's body is over: `clientLeft` where its client went before
   * taking all of it (its generations may have ended first, on their own:
   * ClientBody.taken).
   */
  replyEnded(clientLeft: boolean): void {
    if (clientLeft) this.line.client_left = true;
    this.settle();
  }

  /** A background response's run goes on after its answer: the line waits for its end to be stored too (endStored). */
  awaitsStoredEnd(): void {
    this.pending++;
  }

  /**
   * The background response's end is stored, or its storing is over: `error`
   * is the code of the end it stored failed (its deadline, a run taken for
   * lost: review h223, such a line had `stopped_by` and no `error`), or of
   * why none could be stored; null for one stored as it ended, or deleted.
   */
  endStored(error: string | null): void {
    if (error !== null) this.line.error ??= error;
    this.settle();
  }

  private settle(): void {
    if (--this.pending !== 0) return;
    const line = this.line;
    // Answered with an error (a busy pool's 503, a failed opening), the client was given no tokens: the line bills
    // none, as a request refused before it was planned (review h154: a busy pool's 503 billed its prompt).
    if (line.status >= 400) line.prompt_tokens = line.cached_tokens = line.completion_tokens = undefined;
    line.ms = Date.now() - this.startedAt;
    // console.info, not console.log: wrangler dev shows a Worker's console.log only at its `log` level, which also
    // prints its banner and bindings; the launcher runs it at `info`. Workers Logs and `wrangler tail` keep both.
    console.info(JSON.stringify(this.line));
  }
}

/** An error's code for the line: an API error's own (else its type); anything else, as the router answers it (500 internal_error). */
export function loggedErrorCode(err: unknown): string {
  return err instanceof ApiError ? (err.code ?? err.type) : 'internal_error';
}
