/**
 * The pool's HTTP front (Node http, protocol v1 of shared/protocol.ts,
 * documented in docs/protocol.md). Thin: validation, auth, framing; the
 * Scheduler does the work. Errors outside a stream are one JSON error event
 * with the matching status; inside a stream they are an `error` event.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import {
  followsEdgeTries,
  generateRequestSchema,
  modelIdentity,
  modelIdentityDetails,
  sameModelIdentity,
  pushTrieSchema,
  PROTOCOL_VERSION,
  QUEUED_KEEPALIVE_MS,
  type GenerateRequest,
  type PoolEvent,
  type PoolHealth,
  type PoolInfo,
} from '../../shared/protocol';
import type { Scheduler } from '../scheduler/scheduler';
import { AdmissionError } from '../scheduler/admission-error';
import { decodeBase64, NOT_BASE64 } from '../scheduler/base64';
import type { HealthFigures, PoolMetrics } from '../metrics/pool-metrics';
import { BearerAuth } from './bearer-auth';
import { HttpError } from './http-error';
import { specificIssue } from '../../shared/specific-issue';
import { readJsonBody } from './read-body';
import { DEFAULT_STALLED_READER_MS, StalledReaders } from './stalled-readers';
import { pipelinedTurn } from './pipelined-turn';
import { resetDraftCache } from '../../shared/drafting/datastore-source';
import { logLine } from '../metrics/log-line';
import { BusyLog } from './busy-log';
import { eventEncodingFor } from './event-encoding';

/** A generate request pipelined behind a stream on its connection, until its turn: a cancel, or a trie pushed for it, is kept for then. */
interface WaitingTurn {
  cancelled: boolean;
  /** Whether its method reads edge tries (a push for one that does not is taken unread). */
  followsTries: boolean;
  pushed: { bytes: Uint8Array; outputLength: number } | null;
}

/**
 * Largest trie push body: the largest pushed trie's base64
 * (MAX_PUSHED_TRIE_CHARS, 38,252 characters) and room to spare. A push is
 * read on the pool's only thread, as often as a client sends one.
 */
export const PUSH_BODY_BYTES = 64 * 1024;

export interface PoolServerOptions {
  scheduler: Scheduler;
  metrics: PoolMetrics;
  info: PoolInfo;
  tokenizerBytes: Uint8Array;
  /** null = no authentication. */
  token: string | null;
  /** Tokens accepted besides `token` while edges move to it (SSSD_POOL_PREVIOUS_TOKENS). */
  previousTokens?: readonly string[];
  /**
   * The bearer token GET /metrics asks for (SSSD_METRICS_TOKEN); null or
   * absent = none. Its own token, not the pool's: a scraper that holds it can
   * read figures and tenant labels, not generate.
   */
  metricsToken?: string | null;
  /** Largest accepted request body (default 8 MiB: a 4 MiB base64 trie plus a long prompt). */
  maxBodyBytes?: number;
  /**
   * Longest a client may take to send a whole request, headers and body
   * (default 60 s); past it the request gets 408 and its connection is
   * closed. What follows the request, a generation's stream, has no limit.
   */
  requestTimeoutMs?: number;
  /** A forward pass running longer than this makes /healthz say `stuck` (503); 0 = never (--stuck-seconds). */
  stuckMs?: number;
  /**
   * A generation stream whose reader takes nothing for this long while its
   * events wait is cut, and its generation cancelled (default 300 s; 0 =
   * never; --stalled-reader-seconds): a reader that stopped otherwise holds
   * a generation's worth of bytes here for as long as its connection lasts.
   */
  stalledReaderMs?: number;
  /**
   * How long /healthz keeps saying `failing` after the latest of
   * FAILING_AFTER_BATCH_FAILURES whole-batch failures in a row when no pass
   * goes through meanwhile (default FAILING_HOLD_MS): a pool taken out of
   * the edge's picks gets no work to prove itself on, so it is let back
   * for a try, and says `failing` again at its next such failure.
   */
  failingHoldMs?: number;
  /** sssd-serve's version, for sssd_pool_build_info (default `unknown`). */
  version?: string;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
/** A pass is milliseconds long, a long prompt's chunk on a large model about a second: ten is a device that hangs. */
export const DEFAULT_STUCK_MS = 10_000;
/** Steps in a row whose pass failed for the whole batch before /healthz says `failing` (503): one is a bad moment, three a device or runtime that cannot run passes. */
export const FAILING_AFTER_BATCH_FAILURES = 3;
export const FAILING_HOLD_MS = 30_000;
/** How long close() lets ended streams reach readers that are behind before it closes their connections. */
export const CLOSE_FLUSH_MS = 5_000;

/** A generation's path; its id segment may be percent-encoded (`:` as %3A, as encodeURIComponent writes it). */
const GENERATION_PATH = /^\/v1\/generations\/([^/]{1,384})(\/trie)?$/;
/** The ids a generation may have (shared/protocol.ts's rule). */
const GENERATION_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** A path segment's id, percent-decoded; null where it does not decode to an id a generation may have. */
function generationIdOf(segment: string): string | null {
  let id = segment;
  if (segment.includes('%')) {
    try {
      id = decodeURIComponent(segment);
    } catch {
      return null;
    }
  }
  return GENERATION_ID.test(id) ? id : null;
}

export class PoolServer {
  readonly http: Server;
  private readonly auth: BearerAuth;
  /** GET /metrics's check: open unless SSSD_METRICS_TOKEN is set. */
  private readonly metricsAuth: BearerAuth;
  private readonly maxBodyBytes: number;
  /** Requests answered busy (503): a line at most once a minute while they come. */
  private readonly busyLog = new BusyLog(logLine);
  /** Requests refused for their token (401): noteUnauthorized logs the first and one a thousand. */
  private unauthorizedAnswers = 0;
  /** Scrapes of /metrics refused for their token, apart from the edges' (noteUnauthorizedScrape). */
  private unauthorizedScrapes = 0;
  /** Generation responses not yet written out to their readers. */
  private readonly streams = new Set<ServerResponse>();
  /** Generate requests waiting their turn behind a stream on their connection (pipelined-turn.ts), by id: whether a cancel came for one, and the latest trie pushed for it. */
  private readonly waitingTurn = new Map<string, WaitingTurn>();
  private readonly stalledReaders: StalledReaders;
  /** Streams cut for a stalled reader: noteStalled logs the first and one a hundred. */
  private stalledCuts = 0;
  /** The streams the stalled-reader sweep cut (their 'close' cancels their generation as `stalled_reader`). */
  private readonly cutForStalling = new WeakSet<ServerResponse>();

  constructor(private readonly options: PoolServerOptions) {
    this.auth = new BearerAuth(options.token, options.previousTokens);
    this.metricsAuth = new BearerAuth(options.metricsToken ?? null);
    this.maxBodyBytes = options.maxBodyBytes ?? 8 * 1024 * 1024;
    // Node's request timeout counts until the request has been received, not
    // the response: a stream runs as long as its generation does, while a
    // client that stops halfway through its body (a stuck edge, a slow-loris
    // one) cannot hold a connection and its buffered bytes for ever.
    const requestTimeout = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.http = createServer(
      {
        requestTimeout,
        headersTimeout: Math.min(requestTimeout, 60_000),
        // How often Node checks them (30 s by default, as long as the timeout itself): a tenth of it, at most 2 s, so
        // a timeout lands at most that late (a quarter made 60 s 70 s, review h113); one pass over the connections each.
        connectionsCheckingInterval: Math.min(2_000, Math.max(100, Math.floor(requestTimeout / 10))),
      },
      (req, res) => this.serve(req, res),
    );
    // `Expect: 100-continue` (curl's way with a large body): a body declared over the cap is answered 413 before the
    // client sends it, not after (Node's default writes 100 Continue first); the rest are told to go on.
    this.http.on('checkContinue', (req, res) => {
      const declared = Number(req.headers['content-length'] ?? NaN);
      if (Number.isFinite(declared) && declared > this.maxBodyBytes) res.setHeader('connection', 'close');
      else res.writeContinue();
      this.serve(req, res);
    });
    this.http.keepAliveTimeout = 30_000;
    this.stalledReaders = new StalledReaders(options.stalledReaderMs ?? DEFAULT_STALLED_READER_MS, (res, waiting) => {
      this.cutForStalling.add(res);
      this.noteStalled(waiting);
    });
    const { limits, protocol, runtime } = options.info;
    options.metrics.watchHealth(() => this.health(), limits);
    options.metrics.setBuildInfo({ version: options.version ?? 'unknown', protocol, executionProvider: runtime?.executionProvider ?? 'unknown' });
  }

  async listen(port: number, host: string): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    const address = this.http.address() as AddressInfo;
    const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `http://${shownHost}:${address.port}`;
  }

  /** Whether drain() has begun. */
  get draining(): boolean {
    return this.options.scheduler.isDraining;
  }

  /**
   * Stops taking generations and waits up to `timeoutMs` for the admitted
   * ones to finish (their streams end normally); true when all did. The
   * server keeps answering meanwhile: streams, trie pushes, cancels, health
   * (503, draining) and metrics. close() ends whatever is left.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), Math.max(0, timeoutMs));
    });
    try {
      return await Promise.race([this.options.scheduler.drain().then(() => true), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Ends every stream (close() of the scheduler sends each its `done`), lets
   * what they were sent reach their readers, then closes the server. Without
   * the wait, http.close() takes a connection whose response has ended as
   * idle and destroys it with its last events, `done` among them, still in
   * the socket's buffer: a reader behind by more than that lost its end.
   */
  async close(flushMs = CLOSE_FLUSH_MS): Promise<void> {
    await this.options.scheduler.close();
    await this.flushed(flushMs);
    this.stalledReaders.close();
    this.busyLog.close();
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }

  /** Resolves once every generation stream has been written out (or closed), or after `ms`. */
  private async flushed(ms: number): Promise<void> {
    if (this.streams.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const waits = [...this.streams].map((res) => new Promise<void>((resolve) => {
      if (res.writableFinished || res.destroyed) return resolve();
      res.once('finish', () => resolve());
      res.once('close', () => resolve());
    }));
    await Promise.race([Promise.all(waits), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
    clearTimeout(timer);
  }

  health(): PoolHealth & HealthFigures {
    const s = this.options.scheduler.stats();
    const { maxActive, maxTotalTokens } = this.options.info.limits;
    const draining = this.options.scheduler.isDraining;
    const stuckMs = this.options.stuckMs ?? DEFAULT_STUCK_MS;
    const stuck = stuckMs > 0 && s.passRunningMs > stuckMs;
    const failing = s.batchFailuresInARow >= FAILING_AFTER_BATCH_FAILURES && s.batchFailuresShared && s.batchFailedMsAgo !== null && s.batchFailedMsAgo < (this.options.failingHoldMs ?? FAILING_HOLD_MS);
    return {
      ok: !draining && !stuck && !failing,
      active: s.active,
      queued: s.queued,
      // Slots or tokens, whichever is fuller: a pool whose token reservations are spent refuses as surely as a full one.
      load: Math.min(1, Math.max((s.active + s.queued) / Math.max(1, maxActive), s.reservedTokens / Math.max(1, maxTotalTokens))),
      tokensPerSecond: Math.round(this.options.metrics.currentTokensPerSecond(performance.now()) * 10) / 10,
      draining,
      stuck,
      failing,
      reservedTokens: s.reservedTokens,
      maxTotalTokens,
      maxActive,
      ...(this.options.info.features ? { features: this.options.info.features } : {}),
    };
  }

  /** Answers a request; whatever it throws is answered as its error. */
  private serve(req: IncomingMessage, res: ServerResponse): void {
    this.handle(req, res).catch((err: unknown) => this.fail(res, err));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = requestUrl(req.url);
    const method = req.method ?? 'GET';
    const route = url.pathname;

    // vLLM's /health too: a probe copied from a vLLM deployment reads the same.
    if (route === '/healthz' || route === '/health') {
      // A draining pool, or one whose pass has hung, is up but must get no new work: 503 takes it out of load balancers and the edge's picks.
      return this.expect(method, 'GET', res, () => {
        const health = this.health();
        sendJson(res, health.ok ? 200 : 503, health);
      });
    }
    if (route === '/metrics') {
      if (!this.metricsAuth.check(req.headers.authorization)) {
        // Apart from the edges' refusals: a scraper without the token must not read as (nor hide) an edge with a stale one (review h241).
        this.options.metrics.rejected.inc({ reason: 'metrics_unauthorized' });
        this.noteUnauthorizedScrape();
        res.setHeader('www-authenticate', 'Bearer');
        throw new HttpError(401, 'unauthorized', 'missing or wrong bearer token for /metrics (Authorization: Bearer $SSSD_METRICS_TOKEN)');
      }
      return this.expect(method, 'GET', res, async () => {
        const { contentType, body } = await this.options.metrics.render();
        res.writeHead(200, { 'content-type': contentType });
        res.end(body);
      });
    }
    if (!route.startsWith('/v1/')) throw new HttpError(404, 'not_found', `no route ${method} ${route}`);
    // An OpenAI client pointed at the pool instead of the edge: said in OpenAI's error shape (its SDK showed "401 status code (no body)").
    if (OPENAI_ROUTES.has(route) || route.startsWith('/v1/models/')) {
      this.options.metrics.recordErrorResponse(404);
      sendJson(res, 404, {
        error: {
          message: `This is an SSSD verification pool, which speaks the edge's protocol (docs/protocol.md); the OpenAI API (${route}) is served by the edge (sssd up prints its URL).`,
          type: 'invalid_request_error',
          param: null,
          code: 'not_found',
        },
      });
      return;
    }
    if (!this.auth.check(req.headers.authorization)) {
      // Counted, and logged the first time and once a thousand (a scanner would fill the log): an edge with a stale token shows here.
      this.options.metrics.rejected.inc({ reason: 'unauthorized' });
      this.noteUnauthorized(method, route);
      res.setHeader('www-authenticate', 'Bearer');
      throw new HttpError(401, 'unauthorized', 'missing or wrong bearer token (Authorization: Bearer $SSSD_POOL_TOKEN)');
    }
    if (route === '/v1/info') return this.expect(method, 'GET', res, () => sendJson(res, 200, this.options.info));
    if (route === '/v1/tokenizer') {
      return this.expect(method, 'GET', res, () => {
        const etag = `"${this.options.info.tokenizer.sha256}"`;
        // An edge that kept the file asks with If-None-Match: the same file is a 304, not its bytes again.
        const held = req.headers['if-none-match'];
        if (held !== undefined && (held.trim() === '*' || held.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag))) {
          res.writeHead(304, { etag });
          res.end();
          return;
        }
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-length': this.options.tokenizerBytes.byteLength,
          etag,
        });
        res.end(this.options.tokenizerBytes);
      });
    }
    if (route === '/v1/generate') return this.expect(method, 'POST', res, () => this.generate(req, res));
    if (route === '/v1/prefix-cache') {
      // An operator's: forget cached prompts (all, or one cacheSalt's: a tenant's), e.g. on a deletion request.
      return this.expect(method, 'DELETE', res, () => {
        // Only `salt`, once: a misspelt one (?slat=, ?tenant=) cleared every tenant's cache, and of two one was used (review h175).
        for (const name of new Set(url.searchParams.keys())) {
          if (name !== 'salt') throw new HttpError(400, 'bad_request', `unknown query parameter ${JSON.stringify(name.slice(0, 40))}: the only one is salt`);
        }
        if (url.searchParams.getAll('salt').length > 1) throw new HttpError(400, 'bad_request', 'salt is given twice: send one (forget each salt by a request of its own)');
        // The same rule as a request's cacheSalt.
        const salt = generateRequestSchema.shape.cacheSalt.safeParse(url.searchParams.get('salt') ?? undefined);
        if (!salt.success) throw new HttpError(400, 'bad_request', describeIssues(salt.error, 'salt'));
        const cleared = this.options.scheduler.clearPrefixCache(salt.data);
        sendJson(res, 200, cleared ? { enabled: true, cleared: cleared.sequences, bytes: cleared.bytes } : { enabled: false, cleared: 0, bytes: 0 });
      });
    }
    if (route === '/v1/draft-cache') {
      // For measurements that replay the same requests (bench-serve): each replay drafts as cold as the first did.
      return this.expect(method, 'DELETE', res, () => {
        resetDraftCache();
        this.options.metrics.draftCacheClears.inc();
        sendJson(res, 200, { cleared: true });
      });
    }
    const m = GENERATION_PATH.exec(route);
    const id = m ? generationIdOf(m[1]) : null;
    if (m && id !== null) {
      if (m[2]) return this.expect(method, 'POST', res, () => this.pushTrie(id, req, res));
      return this.expect(method, 'DELETE', res, () => {
        const reason = url.searchParams.get('reason');
        if (reason !== null && reason !== 'stop') throw new HttpError(400, 'bad_request', `reason: "stop" or none, not "${reason.slice(0, 40)}"`);
        const waiting = this.options.scheduler.cancel(id, reason === 'stop', 'delete') ? null : this.waitingTurn.get(id);
        if (waiting === undefined) {
          // The edge's cancel often races the generation's own end: that is done, not an error (and not a 404 to count).
          if (this.options.scheduler.endedRecently(id)) return sendJson(res, 200, { id, cancelled: false });
          throw new HttpError(404, 'not_found', `no running generation '${id}'`);
        }
        if (waiting) waiting.cancelled = true;
        sendJson(res, 200, { id, cancelled: true });
      });
    }
    throw new HttpError(404, 'not_found', `no route ${method} ${route}`);
  }

  /** Runs `run` for the route's method (HEAD too where it is GET: load balancers check health so; Node sends no body), else 405 with Allow. */
  private async expect(method: string, wanted: 'GET' | 'POST' | 'DELETE', res: ServerResponse, run: () => void | Promise<void>): Promise<void> {
    if (method !== wanted && !(wanted === 'GET' && method === 'HEAD')) {
      res.setHeader('allow', wanted === 'GET' ? 'GET, HEAD' : wanted);
      throw new HttpError(405, 'bad_request', `use ${wanted} here, not ${method}`);
    }
    await run();
  }

  /** 421 unless the caller tokenized for this pool's model (another pool may serve it). */
  private checkModel(expected: NonNullable<GenerateRequest['model']>): void {
    const served = modelIdentity(this.options.info);
    if (sameModelIdentity(expected, served)) return;
    // Counted: an upgraded pool an edge passes over otherwise just shows no traffic.
    this.options.metrics.rejected.inc({ reason: 'model_mismatch' });
    throw new HttpError(
      421,
      'model_mismatch',
      `this pool serves ${served.name} (${modelIdentityDetails(served)}), not ${expected.name.slice(0, 80)} (${modelIdentityDetails(expected)})`,
    );
  }

  /**
   * What is read of a generate body before its schema: its `protocol` (a
   * 421 for another version's: that version's body need not pass this
   * one's schema, and a 400 would be final where another pool may serve
   * it), its `model` (a 421, which comes before any check of the ids), then
   * its prompt's length (a 400 without reading a million ids).
   */
  private checkBeforeSchema(body: unknown): void {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return;
    const { protocol, model, promptIds } = body as Record<string, unknown>;
    if (typeof protocol === 'number' && Number.isInteger(protocol) && protocol >= 1 && protocol !== PROTOCOL_VERSION) {
      // An edge of another release: one that read this pool's events, or this pool its request, by another version's rules would be wrong.
      this.options.metrics.rejected.inc({ reason: 'protocol_mismatch' });
      throw new HttpError(421, 'protocol_mismatch', `this pool speaks edge-pool protocol ${PROTOCOL_VERSION}, not ${protocol}`);
    }
    const expected = generateRequestSchema.shape.model.safeParse(model);
    if (expected.success && expected.data) this.checkModel(expected.data);
    const contextLength = this.options.info.model.contextLength;
    if (Array.isArray(promptIds) && promptIds.length > contextLength) {
      throw new HttpError(400, 'bad_request', `prompt has ${promptIds.length} tokens, more than the model's context length ${contextLength}`);
    }
  }

  private async generate(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readJsonBody(req, this.maxBodyBytes);
    this.checkBeforeSchema(body);
    const parsed = generateRequestSchema.safeParse(body);
    if (!parsed.success) throw new HttpError(400, 'bad_request', describeIssues(parsed.error));
    const request = parsed.data;
    // Pipelined behind a stream still running on this connection: it runs when its response can flow. Meanwhile a
    // cancel of its id is kept for its turn (it is no generation yet), which it then takes without running.
    const waiting: WaitingTurn | null = !res.socket && !this.waitingTurn.has(request.id) ? { cancelled: false, followsTries: followsEdgeTries(request.speculation), pushed: null } : null;
    if (waiting) this.waitingTurn.set(request.id, waiting);
    let turn: boolean;
    try {
      turn = await pipelinedTurn(req, res);
    } finally {
      if (waiting) this.waitingTurn.delete(request.id);
    }
    if (!turn) return;
    // The closures below live as long as the stream: they hold the id, not the request (a trie's text, predicted tokens).
    const id = request.id;
    const encoding = eventEncodingFor(req.headers.accept);
    let open = true;
    // The loop may emit `start` synchronously inside submit(): headers go out with the first byte.
    const head = (): void => {
      if (res.headersSent) return;
      req.socket.setNoDelay(true);
      this.options.metrics.eventStreams[encoding.name].inc();
      res.writeHead(200, { 'content-type': encoding.contentType, 'cache-control': 'no-store', 'x-accel-buffering': 'no', vary: 'accept' });
      res.flushHeaders();
    };
    // A step's events for this generation (tokens, a trie hint, done) and the
    // headers with `start` leave in one write: each socket write is a syscall,
    // ~50-90 µs on the development VM, as much as a fifth of a decode step.
    let corked = false;
    const uncork = (): void => {
      corked = false;
      res.uncork();
    };
    // While it waits for a batch slot, nothing else comes: a `queued` event now and then says the pool is alive.
    let started = false;
    let keepAlive: NodeJS.Timeout | null = null;
    const stopKeepAlive = (): void => {
      if (keepAlive) clearInterval(keepAlive);
      keepAlive = null;
    };
    const sink = {
      send: (event: PoolEvent): void => {
        if (event.type === 'start') {
          started = true;
          stopKeepAlive();
        }
        if (!open) return;
        if (!corked) {
          corked = true;
          res.cork();
          process.nextTick(uncork);
        }
        head();
        res.write(encoding.encode(event));
      },
      end: (): void => {
        stopKeepAlive();
        if (open) {
          head();
          res.end();
        }
        open = false;
      },
      // Preempted (gpu-pool/scheduler/preemption.ts): queued again, so `queued` events again until it has a row.
      paused: (): void => {
        stopKeepAlive();
        const pausedAt = performance.now();
        keepAlive = setInterval(() => sink.send({ type: 'queued', queuedMs: Math.round(performance.now() - pausedAt) }), QUEUED_KEEPALIVE_MS);
      },
      resumed: stopKeepAlive,
    };
    // The client went away before `done`: free the row (within one step).
    res.on('close', () => {
      stopKeepAlive();
      this.streams.delete(res);
      this.stalledReaders.forget(res);
      if (open) {
        open = false;
        this.options.scheduler.cancel(id, false, this.cutForStalling.has(res) ? 'stalled_reader' : 'disconnected');
      }
    });
    res.on('finish', () => {
      this.streams.delete(res);
      this.stalledReaders.forget(res);
    });
    // Gone while its body was read (a 'close' before the listener is not replayed): nothing to run.
    if (req.socket.destroyed) {
      open = false;
      return;
    }
    if (waiting?.cancelled) {
      // As a generation cancelled while queued ends: `done` alone, never having joined the batch; counted for its tenant too.
      const { metrics } = this.options;
      metrics.recordFinished('cancelled', metrics.tenants.slotOf(request.tenant ?? '', performance.now()));
      const speculation = { drafts: 0, draftTokens: 0, acceptedTokens: 0, steps: 0, meanAcceptanceLength: 0 };
      sink.send({ type: 'done', finishReason: 'cancelled', usage: { promptTokens: request.promptIds.length, completionTokens: 0, cachedPromptTokens: 0, speculation } });
      sink.end();
      return;
    }
    try {
      this.options.scheduler.submit(request, sink);
      // A trie pushed while it waited (checked then): taken now, before its first step, as one pushed at once would be.
      if (waiting?.pushed) this.options.scheduler.pushTrie(id, waiting.pushed.bytes, waiting.pushed.outputLength);
    } catch (err) {
      open = false;
      throw toHttpError(err);
    }
    this.streams.add(res);
    if (!res.writableFinished) this.stalledReaders.watch(res);
    if (open) head();
    if (open && !started) {
      const queuedAt = performance.now();
      keepAlive = setInterval(() => sink.send({ type: 'queued', queuedMs: Math.round(performance.now() - queuedAt) }), QUEUED_KEEPALIVE_MS);
    }
  }

  /**
   * A fresh trie for a generation: read only where it would be used. One
   * whose method reads no tries (pld, context, off) takes it unread (202:
   * a push to every generation is what an edge does); one queued or running
   * that follows tries gets it checked and applied, and one pipelined behind
   * a stream gets it checked and kept for its turn; one that has just ended
   * gets it checked (its shape: a client's bad trie is a 400 whether or not
   * it raced the end) and answered 200.
   */
  private async pushTrie(id: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readJsonBody(req, PUSH_BODY_BYTES);
    const parsed = pushTrieSchema.safeParse(body);
    if (!parsed.success) throw new HttpError(400, 'bad_request', describeIssues(parsed.error));
    const { trie, outputLength } = parsed.data;
    const scheduler = this.options.scheduler;
    // Pipelined behind a stream on its connection: no generation yet, but it will be one.
    const waiting = this.waitingTurn.get(id);
    const waits = waiting !== undefined && !waiting.cancelled && !scheduler.has(id);
    const reader = scheduler.trieReader(id) ?? (waits ? (waiting.followsTries ? 'follows' : 'ignores') : null);
    const ended = reader === null && scheduler.endedRecently(id);
    if (reader === null && !ended) {
      this.options.metrics.triePushes.inc({ result: 'unknown' });
      throw new HttpError(404, 'not_found', `no running generation '${id}'`);
    }
    if (reader === 'ignores') {
      this.options.metrics.triePushes.inc({ result: 'ignored' });
      return sendJson(res, 202, { id, accepted: true });
    }
    const bytes = decodeBase64(trie);
    if (!bytes) throw new HttpError(400, 'bad_request', `trie: ${NOT_BASE64}`);
    try {
      if (ended) scheduler.checkPushedTrie(bytes, outputLength, Number.POSITIVE_INFINITY);
      else if (waits) {
        // Kept for its turn (the latest push wins, as at a running one), checked now, so the caller hears of a bad one here.
        scheduler.checkPushedTrie(bytes, outputLength, 0);
        waiting.pushed = { bytes, outputLength };
      } else scheduler.pushTrie(id, bytes, outputLength);
    } catch (err) {
      this.options.metrics.triePushes.inc({ result: 'invalid' });
      throw toHttpError(err);
    }
    if (ended) {
      // The race every edge runs (a trie sent as its generation ends): answered, not an error, as a DELETE of it is.
      this.options.metrics.triePushes.inc({ result: 'ended' });
      return sendJson(res, 200, { id, accepted: false });
    }
    this.options.metrics.triePushes.inc({ result: 'applied' });
    sendJson(res, 202, { id, accepted: true });
  }

  /** A refused token, said without the token sent (review h124: only the counter showed an edge with a stale one). */
  private noteUnauthorized(method: string, route: string): void {
    const count = ++this.unauthorizedAnswers;
    if (count === 1 || count % 1000 === 0) {
      logLine(
        `pool: refused ${count} request(s) so far for a missing or wrong bearer token, the latest ${method} ${route.slice(0, 80)} (sssd_pool_rejected_requests_total{reason="unauthorized"}; an edge whose SSSD_POOL_TOKEN is not this pool's, or SSSD_POOL_PREVIOUS_TOKENS for a rotation)`,
      );
    }
  }

  /** A scrape refused for its token: the first, then one a thousand (a scraper retries every interval). */
  private noteUnauthorizedScrape(): void {
    const count = ++this.unauthorizedScrapes;
    if (count === 1 || count % 1000 === 0) {
      logLine(`pool: refused ${count} scrape(s) of /metrics so far for a missing or wrong bearer token (sssd_pool_rejected_requests_total{reason="metrics_unauthorized"}; a scraper without this pool's SSSD_METRICS_TOKEN)`);
    }
  }

  private noteStalled(waitingBytes: number): void {
    this.options.metrics.stalledStreams.inc();
    const count = ++this.stalledCuts;
    if (count === 1 || count % 100 === 0) {
      logLine(
        `pool: cut a generation stream whose reader took nothing for ${((this.options.stalledReaderMs ?? DEFAULT_STALLED_READER_MS) / 1000).toFixed(0)} s with ${waitingBytes} bytes waiting (${count} so far; sssd_pool_stalled_streams_total; --stalled-reader-seconds)`,
      );
    }
  }

  private fail(res: ServerResponse, err: unknown): void {
    const e = toHttpError(err);
    if (e.code === 'busy') {
      // Refused while draining: the pool is stopping, not short of capacity (no advice to raise limits).
      if (!this.draining) this.busyLog.note(e.message);
    } else if (e.status >= 500) logLine(`pool: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    if (res.headersSent) {
      if (!res.writableEnded) res.end();
      return;
    }
    this.options.metrics.recordErrorResponse(e.status);
    const event: PoolEvent = { type: 'error', code: e.code, message: e.message };
    // The limit as a number: an edge picks the largest of several pools' without reading their prose (review h139).
    if (e.maxTotalTokens !== undefined) event.maxTotalTokens = e.maxTotalTokens;
    if (e.retryAfterMs !== undefined) {
      event.retryAfterMs = e.retryAfterMs;
      res.setHeader('retry-after', String(Math.max(1, Math.ceil(e.retryAfterMs / 1000))));
    }
    sendJson(res, e.status, event);
  }
}

/**
 * The request's path and query. Appended to a fixed origin rather than
 * resolved against it: `//v1/info` is a path here, not a host. A target
 * that is no URL at all (`//[`) is the client's mistake: 400, not a 500
 * with a stack in the log for every one sent.
 */
function requestUrl(target: string | undefined): URL {
  const raw = target ?? '/';
  try {
    return raw.startsWith('/') ? new URL(`http://pool${raw}`) : new URL(raw, 'http://pool');
  } catch {
    throw new HttpError(400, 'bad_request', `not a request target: ${JSON.stringify(raw.slice(0, 80))}`);
  }
}

function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof AdmissionError) {
    if (err.kind === 'busy') return new HttpError(503, 'busy', err.message, err.retryAfterMs ?? 1000);
    if (err.kind === 'conflict') return new HttpError(409, 'bad_request', err.message);
    if (err.kind === 'too_large') return new HttpError(413, 'too_large', err.message, undefined, err.maxTotalTokens);
    return new HttpError(400, 'bad_request', err.message);
  }
  return new HttpError(500, 'internal', err instanceof Error ? err.message : String(err));
}

/** The OpenAI API's routes, which the edge serves and the pool does not. */
const OPENAI_ROUTES: ReadonlySet<string> = new Set(['/v1/completions', '/v1/chat/completions', '/v1/models', '/v1/embeddings', '/v1/responses']);

/**
 * `whole`: what an issue at the top names (the body; a query parameter names
 * itself). A null where a value was expected is said to be one: Go's nil
 * pointers and Python's None write optional fields as null, which no field
 * takes (an optional one is left out).
 */
function describeIssues(error: z.ZodError, whole = 'body'): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => specificIssue(issue) ?? issue)
    .map((i) => `${i.path.length > 0 ? i.path.join('.') : whole}: ${i.message}${i.code === 'invalid_type' && / received null$/.test(i.message) ? ' (leave an optional field out rather than send null)' : ''}`)
    .join('; ');
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
