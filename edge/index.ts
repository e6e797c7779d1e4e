/**
 * The edge Worker: OpenAI-compatible API in front of the verification pools.
 * Per request: auth (hashed keys) → limits → validate → tokenize → user cache
 * (one KV read) → edge trie → pool (failover) → SSE/JSON → cache write (waitUntil).
 */
import { Hono, type Context } from 'hono';
import { cors } from 'hono/cors';
import { routePath } from 'hono/route';
import { ApiError, badRequest, errorResponse, SHOULD_RETRY_HEADER, toApiError, TooManyChoicesError } from './api-error';
import { authenticate, type KeyRecord } from './api-keys';
import { checkDevKeyOrigin } from './dev-key-origin';
import { benchEdgeCpu } from './bench-route';
import { readLimitedBody, refuseByLength, refuseEmptyDeclaredBody } from './body-limit';
import { refuseDeepNesting } from './body-nesting';
import { answerOpenAi, handleCompletion, poolTenant, type Answerer, type ParsedRequest } from './completion-handler';
import { ChatCompletionStore, chatCompletionNotFound, completionObject } from './chat-completion-store';
import { keepChatCompletion, listQuery, messagesPage, metadataUpdate, storedChatCompletion, withServedModel } from './stored-chat-routes';
import { demoPageHeaders, demoPageHtml } from './demo-page';
import { longestStreamSilenceMs, longestWaitForHeadersMs } from './stream-silence';
import { edgeConfig } from './edge-config';
import type { EdgeEnv } from './env';
import { kvNamespace, requireKv } from './kv-binding';
import { refuseLoneSurrogates } from './lone-surrogates';
import { PoolPicker } from './pool-picker';
import { RATE_LIMIT_HEADERS, rateLimitHeaders } from './rate-limit-headers';
import { KeyLimiter, LEASE_HEARTBEAT_MS, type Admission, type RequestQuota } from './rate-limiter';
import { slotsHeldBy } from './slot-holders';
import { chatRequestSchema, clipped, completionRequestSchema, parseOpenAiBody, refuseStreamOptionsWithoutStream } from './request-schema';
import { REQUEST_ID_HEADER, requestId, requestIdOf } from './request-id';
import { loggedErrorCode, RequestLog } from './request-log';
import { jsonText } from './ordered-json';
import { responseId } from './responses-format';
import { BACKGROUND_STOP_POLL_MS, cancelledAnswer, haltRunHere, polledResponse } from './background-response';
import { resumedEventStream, startingAfter } from './background-stream';
import { BACKGROUND_RUNS_ROUTE, backgroundRunsPending } from './background-runs';
import { conversationItemNotFound, conversationNotFound, conversationObject, ConversationStore, withoutItem } from './conversation-store';
import { conversationItems, conversationItemsPage, createBody, checkInclude, itemList, itemsBody, updateBody } from './conversation-routes';
import { refuseUnreadableItems } from './conversation-fit';
import { STORAGE_FLOOR_BYTES, StorageBudget } from './storage-budget';
import { RequestWork } from './request-work';
import { HeldMeters, StorageMeter } from './storage-meter';
import { utf8Length } from './kv-record';
import { listedItem, inputItemsPage, planResponse, responsesAnswerer, storedResponse } from './responses-reply';
import { inResponsesTerms } from './responses-request';
import { ResponseStore, responseNotFound, type StoredResponse } from './response-store';
import { FINGERPRINT_HEADER, reproductionHeaders, SEED_HEADER } from './reproduction';
import { acceptsModelName, servedModel, unknownModel, type ServedModel } from './served-model';
import { detokenize, tokenize } from './tokenize-route';
import { cacheScope, UserCacheStore } from './user-cache-store';
import { userCacheUser } from './user-cache-user';
import { viewUserCache } from './user-cache-view';

/** `maxBodyBytes`: the route's body limit (limitBodyTo), counted against where its body is read. */
type AppEnv = { Bindings: EdgeEnv; Variables: { key: KeyRecord; requestHex: string; quota: RequestQuota | undefined; log: RequestLog | undefined; maxBodyBytes: number | undefined } };

// Per-isolate state: limiter buckets and pool health outlive a request.
const limiter = new KeyLimiter();
let picker: { source: string; picker: PoolPicker } | null = null;

function poolPicker(env: EdgeEnv): PoolPicker {
  const config = edgeConfig(env);
  const source = `${config.poolUrls.join(',')}|${config.poolToken}|${config.modelSha256 ?? ''}`;
  if (!picker || picker.source !== source) picker = { source, picker: new PoolPicker(config.poolUrls, config.poolToken, config.modelSha256) };
  return picker.picker;
}

const app = new Hono<AppEnv>();

// First, so that it stamps whatever comes after: the route's answer, onError's, and a preflight's.
app.use('*', requestId);
// One JSON line per API request (request-log.ts), its id the header's; not for the page, the probes or a preflight.
// After requestId, for the hex; before the rest, so that it sees their answer, an error's included.
app.use('*', async (c, next) => {
  const path = c.req.path;
  if (c.req.method === 'OPTIONS' || path === '/' || path === '/healthz' || path === '/health' || path === '/readyz' || path === BACKGROUND_RUNS_ROUTE || !edgeConfig(c.env).requestLog) return next();
  const log = new RequestLog(c.get('requestHex'), c.req.method);
  c.set('log', log);
  await next();
  // The key's tenant as the pool knows it (hashed once per isolate), where the route got as far as the key.
  const key = c.get('key') as KeyRecord | undefined;
  const tenant = key && !log.hasTenant ? await poolTenant(key.tenant) : null;
  if (key) log.keyOf(key.keyId);
  log.responded(c.res.status, routePath(c, -1), c.error ? loggedErrorCode(c.error) : null, tenant);
});
// Chrome's Private Network Access: a page on a public origin calling an edge on this machine or the LAN
// (`npm start`'s) asks leave in its preflight. The key still authorises every request, as for any origin.
app.use('*', async (c, next) => {
  await next();
  if (c.req.method === 'OPTIONS' && c.req.header('access-control-request-private-network') === 'true') c.res.headers.set('access-control-allow-private-network', 'true');
});
app.use(
  '*',
  cors({
    origin: '*',
    allowMethods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
    // No list: the headers a preflight asks for are allowed (the OpenAI SDK in a browser sends its x-stainless-* ones).
    // A key, not a cookie, authorises a request, so no header makes a cross-origin call more than the key allows.
    // allow: a 405's, naming the method the route takes.
    exposeHeaders: ['retry-after', SHOULD_RETRY_HEADER, REQUEST_ID_HEADER, ...RATE_LIMIT_HEADERS, 'allow', FINGERPRINT_HEADER, SEED_HEADER],
    maxAge: 600,
  }),
);

app.onError((err, c) => errorResponse(toApiError(err, requestIdOf(c.get('requestHex')))));
app.notFound((c) => {
  c.get('log')?.failed('not_found');
  return errorResponse(new ApiError(404, `No route for ${c.req.method} ${clipped(new URL(c.req.url).pathname, 200)}.`, 'invalid_request_error', 'not_found'));
});

// Hashed once per isolate (demo-page.ts); the page made once per isolate's config (its watches' bounds).
let demoHeaders: Promise<Record<string, string>> | null = null;
let demoPage: { config: ReturnType<typeof edgeConfig>; html: string } | null = null;
app.get('/', async (c) => {
  const config = edgeConfig(c.env);
  if (demoPage?.config !== config) {
    const { wholeReplyHeartbeatMs, streamQuietCommentMs, poolStallMs, poolUrls } = config;
    const silenceMs = longestStreamSilenceMs(wholeReplyHeartbeatMs, streamQuietCommentMs);
    demoPage = { config, html: demoPageHtml(silenceMs, longestWaitForHeadersMs(poolStallMs, poolUrls.length, wholeReplyHeartbeatMs)) };
  }
  return c.html(demoPage.html, 200, await (demoHeaders ??= demoPageHeaders()));
});
// Liveness: the Worker answers (also at vLLM's /health: a probe copied from a vLLM deployment works).
app.get('/healthz', (c) => c.json({ ok: true }));
app.get('/health', (c) => c.json({ ok: true }));
// Readiness: some pool can take work, by this isolate's own view of the pools (pool-picker.ts), and the KV namespace
// is bound: without it no key but the dev key and SSSD_API_KEYS' is found, and nothing is stored. Counts only, never
// URLs; `kv: "missing"` says why where the pools alone would be ready.
app.get('/readyz', async (c) => {
  const pools = await poolPicker(c.env).readiness();
  const kvBound = kvNamespace(c.env) !== null;
  const ok = pools.healthy > 0 && kvBound;
  return c.json({ ok, pools, ...(kvBound ? {} : { kv: 'missing' }) }, ok ? 200 : 503);
});

// The background responses this isolate still runs or stores the end of: a local stack stops its edge once none is
// left (launcher/stack.ts). A count, as /readyz's; per isolate (under `wrangler dev`, the edge's one).
app.get(BACKGROUND_RUNS_ROUTE, (c) => c.json({ running: backgroundRunsPending() }));

// Everything under /v1 and /bench needs a key.
const requireKey = async (c: Context<AppEnv>, next: () => Promise<void>): Promise<void> => {
  const key = await authenticate(c.req.header('authorization'), c.env, edgeConfig(c.env));
  if (key.dev) checkDevKeyOrigin(c.req.header('origin'));
  c.set('key', key);
  await next();
};
app.use('/v1/*', requireKey);
app.use('/bench/*', requireKey);
// vLLM's tokenizer routes sit at the root; under /v1 they have the key already.
app.use('/tokenize', requireKey);
app.use('/detokenize', requireKey);

function modelObject(model: ServedModel): { id: string; object: 'model'; created: number; owned_by: string; context_length: number; max_model_len: number } {
  const { name, created, contextLength } = model.info.model;
  // max_model_len: vLLM's ModelCard names the context so, and clients that size max_tokens by it read nothing else.
  return { id: name, object: 'model', created: created ?? 0, owned_by: 'sssd', context_length: contextLength, max_model_len: contextLength };
}

app.get('/v1/models', async (c) => {
  const model = await servedModel(poolPicker(c.env), (promise) => c.executionCtx.waitUntil(promise));
  return c.json({ object: 'list', data: [modelObject(model)] });
});

// The SDK's models.retrieve(id); 'default' names the served model, as in a completion's `model`.
app.get('/v1/models/:model{.+}', async (c) => {
  const model = await servedModel(poolPicker(c.env), (promise) => c.executionCtx.waitUntil(promise));
  const name = c.req.param('model');
  if (!acceptsModelName(model, name)) throw unknownModel(model, name);
  return c.json(modelObject(model));
});

/**
 * A route's body limit: a body past it by its Content-Length is a 413 here, before the key's limits (no rate token);
 * a chunked one is counted against it where the route reads it, after its key's limits let it in (readBodyBytes).
 */
function limitBodyTo(maxBytes: (c: Context<AppEnv>) => number): (c: Context<AppEnv>, next: () => Promise<void>) => Promise<void> {
  return async (c, next) => {
    const limit = maxBytes(c);
    c.set('maxBodyBytes', limit);
    await refuseByLength(c.req.raw, limit, edgeConfig(c.env).bodyTimeoutMs);
    await next();
  };
}

// SSSD_MAX_BODY_BYTES.
const limitBody = limitBodyTo((c) => edgeConfig(c.env).maxBodyBytes);

/**
 * A user-cache delete's body is `{"user": NAME}` at most (a name of 256
 * characters, each escaped: ~1.6 KB). It takes no concurrency slot, so a
 * body of SSSD_MAX_BODY_BYTES held while it trickles in would let one key
 * park its requests-per-minute worth of megabytes in the isolate.
 */
const USER_CACHE_BODY_BYTES = 4096;
const limitUserCacheBody = limitBodyTo(() => USER_CACHE_BODY_BYTES);

/** A request let in by its key's limits (with a slot or without). */
type Admitted = Extract<Admission, { ok: true }>;

/** How long a body may take to be read before its slot is said to be held for it (a lease's heartbeat). */
const BODY_HOLD_AFTER_MS = LEASE_HEARTBEAT_MS;

/**
 * The body's bytes, or a 408 past SSSD_BODY_TIMEOUT_SECONDS: a body sent slowly, or never finished, held its key's
 * in-flight slot as long as the client liked. `holding`: the slot it holds meanwhile, said held for the body until then.
 * Read only once the key's limits let the request in (its caller's admit), whatever its framing: a chunked body is
 * counted against the route's limit here, a 413 once past it (limitBodyTo).
 */
async function readBodyBytes(c: Context<AppEnv>, holding?: Admitted): Promise<Uint8Array> {
  const { bodyTimeoutMs, maxBodyBytes } = edgeConfig(c.env);
  const deadline = Date.now() + bodyTimeoutMs;
  // Held for the body only once it is still arriving a heartbeat on: a burst's small bodies, sent whole, are read in a
  // turn or two, and a 429 in that moment said "still uploading (a 408 in 31 s)" with a Retry-After of 31 s for slots
  // free in milliseconds (review h203).
  const arriving = holding ? setTimeout(() => holding.holdAs({ kind: 'body', until: deadline }), BODY_HOLD_AFTER_MS) : undefined;
  try {
    return await readLimitedBody(c.req.raw, c.get('maxBodyBytes') ?? maxBodyBytes, deadline, bodyTimeoutMs);
  } finally {
    if (arriving !== undefined) clearTimeout(arriving);
    holding?.holdAs({ kind: 'answering' });
  }
}

/** Bodies are UTF-8 (RFC 8259): one that is not is refused, not read with U+FFFD in place of its bad bytes and stored so (review h142). */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** The body's text, read whole first (a body left unread broke the next request under wrangler dev); a compressed one is a 415 (review h112: it was "not valid JSON"; the Worker is not sent one decompressed). */
async function readUncompressedText(c: Context<AppEnv>, holding?: Admitted): Promise<string> {
  const bytes = await readBodyBytes(c, holding);
  // Not "no body" (readLimitedBody checks a chunked one as it reads it; this, one sent with its length).
  refuseEmptyDeclaredBody(c.req.raw.headers, bytes.byteLength);
  const encoding = c.req.header('content-encoding')?.trim().toLowerCase();
  if (encoding && encoding !== 'identity') {
    throw new ApiError(415, `Content-Encoding ${clipped(encoding, 40)} is not supported for request bodies; send the JSON uncompressed.`, 'invalid_request_error', 'unsupported_media_type');
  }
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new ApiError(400, 'The request body is not valid UTF-8; send JSON encoded as UTF-8.', 'invalid_request_error', 'invalid_json');
  }
}

async function readJson(c: Context<AppEnv>, holding?: Admitted): Promise<unknown> {
  return parseJsonBody(await readUncompressedText(c, holding));
}

/** A body's JSON, its strings whole characters (lone-surrogates.ts: a half one is a 400, not U+FFFD for the model and kept as sent in what is stored). */
function parseJsonBody(text: string): unknown {
  // Before the parse, which deep nesting slows by ten times and more.
  refuseDeepNesting(text);
  let body: unknown;
  try {
    body = JSON.parse(text) as unknown;
  } catch {
    throw new ApiError(400, 'The request body is not valid JSON.', 'invalid_request_error', 'invalid_json');
  }
  refuseLoneSurrogates(text, body);
  return body;
}

/**
 * The key's admission for this request (its quota stamped for
 * rateLimitHeaders), or its 429. The request shows life while its code can
 * run, so its slot stays its own however long it takes (a slow body, KV far
 * away); one the runtime cancelled (client gone before the response) runs no
 * timers, and its lease lapses. `release` ends both.
 */
function admit(c: Context<AppEnv>, holdsSlot = true): Admitted {
  const key = c.get('key');
  const admission = limiter.acquire(key.keyId, key.rpm, holdsSlot ? key.concurrency : Infinity, edgeConfig(c.env).concurrencyLeaseMs);
  c.set('quota', admission.quota);
  if (admission.ok) {
    // A slotless admission has no lease to keep alive.
    if (!holdsSlot) return admission;
    const heartbeat = setInterval(admission.alive, LEASE_HEARTBEAT_MS);
    return {
      ...admission,
      release: () => {
        clearInterval(heartbeat);
        admission.release();
      },
    };
  }
  throw new ApiError(
    429,
    admission.reason === 'rate'
      ? `Rate limit reached: ${key.rpm} requests per minute for this key.`
      : // What holds the slots, and until when (review h177: "up to 5 s" was said of a background run's 25 s too).
        `Too many requests in flight: at most ${key.concurrency} at once for this key, held by ${slotsHeldBy(admission.holders, leaseSeconds(c))}.`,
    'rate_limit_error',
    'rate_limit_exceeded',
    null,
    admission.retryAfterS,
  );
}

/** SSSD_CONCURRENCY_LEASE_SECONDS, as a 429 says it. */
function leaseSeconds(c: Context<AppEnv>): number {
  return Math.round(edgeConfig(c.env).concurrencyLeaseMs / 1000);
}

/**
 * A body parsed, and how its reply is answered where not in its endpoint's own shape (a background response's answerer
 * detaches its generations from the client once answered: PreparedReply.detachFromClient); `background`: its run goes on
 * after its answer, so its slots are held as a background run's (a 429 meanwhile says so).
 */
type Handled = { parsed: ParsedRequest; answer?: Answerer; background?: boolean };

/**
 * A generating request, admitted, parsed (`parse` reserves in `meter` what it will store, and has its writes charged
 * there) and answered. The meter is settled once, when the request's work is over: refused or failed, or its reply's
 * work past the Response ended (RequestWork: a stream's last frame or its client gone, a whole reply's body, a
 * background run's end), so what it reserved and did not write (a stream cancelled, a turn not appended, a record
 * refused as too large, a write that failed) is given back, whichever path it took (review h227, finding 1).
 */
async function complete(c: Context<AppEnv>, parse: (body: unknown, meter: StorageMeter) => Handled | Promise<Handled>): Promise<Response> {
  const meter = storageMeter(c);
  const work = new RequestWork();
  try {
    return await answerAdmitted(c, (body) => parse(body, meter), work);
  } finally {
    void work.ended().then(() => {
      heldMeters.release(storageKey(c), meter);
      meter.settle();
    });
  }
}

/** complete's request, its reply's work past the Response told to `work`. */
async function answerAdmitted(c: Context<AppEnv>, parse: (body: unknown) => Handled | Promise<Handled>, work: RequestWork): Promise<Response> {
  const env = c.env;
  const config = edgeConfig(env);
  const key = c.get('key');
  // Limits first: a key past them costs no parse of its body (CPU is billed; a 1 MiB body took ~30 ms).
  const admission = admit(c);
  const release = admission.release;
  let parsed: ParsedRequest;
  let answer: Answerer | undefined;
  let background = false;
  try {
    ({ parsed, answer, background = false } = await parse(await readJson(c, admission)));
    refuseStreamOptionsWithoutStream(parsed.body);
    // Each of `n` choices is a generation in flight: `n` takes as many of the key's slots.
    const n = parsed.body.n ?? 1;
    if (n > key.concurrency) {
      throw new TooManyChoicesError(`n is ${n}, more than the ${key.concurrency} generations this key may run at once.`);
    }
    const busy = n > 1 ? admission.widen(n - 1) : null;
    if (busy !== null) {
      c.set('quota', admission.refund());
      throw new ApiError(429, `Too many requests in flight: at most ${key.concurrency} generations at once for this key (n = ${n} takes ${n}), held by ${slotsHeldBy(busy.holders, leaseSeconds(c))}.`, 'rate_limit_error', 'rate_limit_exceeded', null, busy.retryAfterS);
    }
  } catch (err) {
    refundIfRefusedForN(c, admission, err);
    release();
    throw err;
  }
  // A background run holds its slots until it ends, by its deadline from its answer (background-response.ts): said so
  // from here, and again from the answer (a run's deadline starts no later), so a 429 meanwhile tells that wait.
  const runsBy = (): void => admission.holdAs({ kind: 'background', until: Date.now() + config.backgroundDeadlineMs });
  if (background) runsBy();
  if (c.req.header('x-sssd-smooth') === '1') {
    parsed.body.stream_options = { ...(parsed.body.stream_options ?? {}), smooth: true };
  }
  try {
    const pools = poolPicker(env);
    const model = await servedModel(pools, (promise) => c.executionCtx.waitUntil(promise));
    const kv = kvNamespace(env);
    const answered = await handleCompletion(parsed, {
      key,
      model,
      picker: pools,
      // Without the binding the request runs without the user's cache (said once in the log: edge-config.ts).
      store: kv === null ? null : new UserCacheStore(kv, config.userCacheMaxBytes, model.tokenizer.vocabSize, config.userCacheHistoryTokens, config.userCacheTtlSeconds),
      waitUntil: (promise) => c.executionCtx.waitUntil(promise),
      edgeTrieNodes: config.edgeTrieNodes,
      edgeTriePushes: config.edgeTriePushes,
      userCacheWaitMs: config.userCacheWaitMs,
      poolStallMs: config.poolStallMs,
      wholeReplyHeartbeatMs: config.wholeReplyHeartbeatMs,
      streamQuietCommentMs: config.streamQuietCommentMs,
      streamStalledClientMs: config.streamStalledClientMs,
      jsonGrammar: config.jsonGrammar,
      onFinish: release,
      headers: {},
      clientSignal: c.req.raw.signal,
      requestHex: c.get('requestHex'),
      answer,
      log: c.get('log'),
      goesOn: (promise) => work.add(promise),
    });
    if (background) runsBy();
    return answered;
  } catch (err) {
    refundIfRefusedForN(c, admission, err);
    release();
    throw err;
  }
}

/** A request refused for asking too many choices at once gets its rate token back, as a concurrency 429 does. */
function refundIfRefusedForN(c: Context<AppEnv>, admission: Admitted, err: unknown): void {
  if (err instanceof TooManyChoicesError) c.set('quota', admission.refund());
}

/** What each key may store a day, per data scope (storage-budget.ts): the store routes' writes and generations'. */
const storageBudget = new StorageBudget();

/**
 * Takes the bytes of `written`, the JSON the request writes (at least STORAGE_FLOOR_BYTES), from the key's storage
 * budget for the day, before the write; a 429 `storage_limit_exceeded` where it is spent (storageLimitExceeded). What
 * is written, not the body: 10 `item_reference`s of 871 bytes wrote ~15 KB of items, and a metadata change of 1 KiB
 * wrote its record whole again with a fresh TTL (review h217, findings 1 and 3).
 */
function takeStorage(c: Context<AppEnv>, written: string): void {
  settleLapsedMeters(c);
  const key = c.get('key');
  const bytes = Math.max(STORAGE_FLOOR_BYTES, utf8Length(written));
  const retryAfterS = storageBudget.take(key.dataScope, key.keyId, bytes, key.storageBytesPerDay);
  if (retryAfterS !== null) throw storageLimitExceeded(key, bytes, retryAfterS);
}

/**
 * A generating request that stores (`store: true`, a conversation named): what it writes is charged to the key's
 * budget as written (storage-meter.ts), and `reserve` takes what it will write at least before the generation runs,
 * a 429 `storage_limit_exceeded` where the budget cannot cover it (no pool compute spent on it).
 */
function storageMeter(c: Context<AppEnv>): StorageMeter {
  const key = c.get('key');
  return new StorageMeter({
    take: (bytes) => storageBudget.takeAll(key.dataScope, key.keyId, bytes, key.storageBytesPerDay),
    charge: (bytes) => storageBudget.charge(key.dataScope, key.keyId, bytes, key.storageBytesPerDay),
  });
}

/** Generations' meters holding what they reserved, until settled (storage-meter.ts). */
const heldMeters = new HeldMeters();

/** The key's storage bucket, as heldMeters names it (storage-budget.ts: one a key within its data scope). */
function storageKey(c: Context<AppEnv>): string {
  const key = c.get('key');
  return `${key.dataScope}/${key.keyId}`;
}

/** What the key's requests the runtime cancelled still held comes back (their leases lapsed), before a take. */
function settleLapsedMeters(c: Context<AppEnv>): void {
  heldMeters.settleLapsed(storageKey(c), edgeConfig(c.env).concurrencyLeaseMs);
}

/** Takes `bytes` (what the request will store at least) into `meter`, or throws the 429. */
function reserveStorage(c: Context<AppEnv>, meter: StorageMeter, bytes: number): void {
  settleLapsedMeters(c);
  const retryAfterS = meter.reserve(bytes);
  if (retryAfterS !== null) throw storageLimitExceeded(c.get('key'), Math.max(STORAGE_FLOOR_BYTES, bytes), retryAfterS);
  heldMeters.hold(storageKey(c), meter);
  // Life shown while its code runs: a request the runtime cancels shows none, and its meter is settled for it (HeldMeters).
  meter.keepAlive(LEASE_HEARTBEAT_MS);
}

/**
 * The 429 of a spent storage budget: Retry-After when the request's bytes are back (past a minute, no retry: the SDKs would
 * try again at once). What goes through instead is said of requests it is true of: a `store: false` request refused for
 * its conversation turn was told `store: false` was not limited (review h227, finding 4).
 */
function storageLimitExceeded(key: KeyRecord, bytes: number, retryAfterS: number): ApiError {
  return new ApiError(
    429,
    `Storage limit reached: this key stores at most ${key.storageBytesPerDay / (1024 * 1024)} MiB a day (stored responses and chat completions, conversations and metadata updates; its record's storageMbPerDay, else SSSD_DEFAULT_STORAGE_MB_PER_DAY), refilled as the day goes: this request's ${bytes} bytes are back in ${retryAfterS} s. Requests with store: false that name no conversation store nothing, and are not limited so (a conversation's turns are stored whatever store says).`,
    'rate_limit_error',
    'storage_limit_exceeded',
    null,
    retryAfterS,
    retryAfterS <= 60,
  );
}

app.post('/v1/completions', rateLimitHeaders, limitBody, (c) => complete(c, (body) => ({ parsed: { kind: 'completion', body: parseOpenAiBody(completionRequestSchema, body) } })));
app.post('/v1/chat/completions', rateLimitHeaders, limitBody, (c) =>
  complete(c, (body, meter) => {
    const chat = parseOpenAiBody(chatRequestSchema, body, 'chat');
    // Only `store: true` is kept (OpenAI's default is false): any other request does no KV work for it.
    const sent = (body as { messages?: unknown }).messages;
    if (chat.store !== true) return { parsed: { kind: 'chat', body: chat } };
    // What it keeps is charged as written; its messages, before it runs.
    const { keep, inputBytes } = keepChatCompletion(chatCompletionStore(c), chat, sent, meter);
    reserveStorage(c, meter, inputBytes);
    return { parsed: { kind: 'chat', body: chat }, answer: (reply) => answerOpenAi(reply, keep) };
  }),
);

/** This key's stored responses (the Responses API's `store`), as read and written from this request's location; `meter`: where its writes are charged. */
function responseStore(c: Context<AppEnv>, meter: StorageMeter | null = null): ResponseStore {
  const config = edgeConfig(c.env);
  return new ResponseStore(requireKv(c.env), c.get('key').dataScope, config.responseTtlSeconds, config.responseMaxBytes, requestLocation(c), meter);
}

/**
 * The Cloudflare location (colo) the request came to, where the runtime says (wrangler dev says its stand-in's):
 * a background run's heartbeat is read at once there (background-response.ts, lostAfterMs).
 */
function requestLocation(c: Context<AppEnv>): string | null {
  const colo = (c.req.raw.cf as { colo?: unknown } | undefined)?.colo;
  return typeof colo === 'string' && colo !== '' ? colo : null;
}

// OpenAI's Responses API, run as the chat completion it amounts to (responses-request.ts): chat's limits, cache and path.
app.post('/v1/responses', rateLimitHeaders, limitBody, async (c) => {
  // Set once the body is planned: the errors after it are the chat path's, in chat's words. The plan's own already
  // name the Responses request's fields (a `response_format` sent was refused as "text.format is not a field").
  let planned = false;
  try {
    return await complete(c, async (body, meter) => {
      // The conversation store only where one is named: a request without one does no KV work for it.
      const named = typeof body === 'object' && body !== null && (body as { conversation?: unknown }).conversation != null;
      const plan = await planResponse(body, responseStore(c, meter), responseId(c.get('requestHex')), named ? conversationStore(c) : undefined, meter);
      planned = true;
      // What it stores is charged as written; its input, before it runs (`store: false` with no conversation: nothing).
      if (plan.storing) reserveStorage(c, plan.storing.meter, plan.storing.upFront);
      const background = plan.started.background ? { waitUntil: (promise: Promise<unknown>) => c.executionCtx.waitUntil(promise), deadlineMs: edgeConfig(c.env).backgroundDeadlineMs, stopPollMs: BACKGROUND_STOP_POLL_MS, aliveEveryMs: edgeConfig(c.env).backgroundHeartbeatMs } : null;
      return {
        parsed: { kind: 'chat', body: plan.translated.chat, truncation: plan.translated.body.truncation === 'auto' ? 'auto' : undefined },
        answer: responsesAnswerer(plan, background),
        background: background !== null,
      };
    });
  } catch (err) {
    throw planned ? inResponsesTerms(err) : err;
  }
});

/**
 * A route of one of the key's stores (responses, chat completions, conversations), answered as JSON (`written`'s
 * text): counted as a request of the key (each is KV work), taking no slot. `id`: the route's `:id`.
 */
async function keyStoreRoute<S>(c: Context<AppEnv>, store: (c: Context<AppEnv>) => S, answer: (store: S, id: string) => Promise<object>, written: (value: object) => string = JSON.stringify): Promise<Response> {
  const admission = admit(c, false);
  try {
    return c.body(written(await answer(store(c), c.req.param('id') ?? '')), 200, { 'content-type': 'application/json' });
  } finally {
    admission.release();
  }
}

function storedResponseRoute(c: Context<AppEnv>, answer: (store: ResponseStore, id: string) => Promise<object>): Promise<Response> {
  return keyStoreRoute(c, responseStore, answer);
}

/** A stored response's fingerprint and seed, told as its client was told them (records from before them have none). */
function tellReproduction(stored: StoredResponse, set: (name: string, value: string) => void): void {
  if (stored.reproduction) for (const [name, value] of Object.entries(reproductionHeaders(stored.reproduction))) set(name, value);
}

app.get('/v1/responses/:id', rateLimitHeaders, async (c) => {
  const query = new URL(c.req.url).searchParams;
  const stream = query.get('stream');
  // As a form or a query string writes true (`stream=1` was served as JSON, which the SDK read as no events).
  if (stream !== null && (stream.toLowerCase() === 'true' || stream === '1')) {
    // A background response made with stream, streamed again from `starting_after` (background-stream.ts).
    const admission = admit(c, false);
    try {
      const after = startingAfter(query);
      const store = responseStore(c);
      const stored = await storedResponse(store, c.req.param('id') ?? '');
      const events = resumedEventStream(stored, after, store, edgeConfig(c.env).streamQuietCommentMs);
      tellReproduction(stored, (name, value) => events.headers.set(name, value));
      return events;
    } finally {
      admission.release();
    }
  }
  return storedResponseRoute(c, async (store, id) => {
    if (query.has('starting_after')) throw badRequest('starting_after is for streaming a background response again; send it with stream=true.', 'starting_after', 'invalid_request_error');
    const stored = await storedResponse(store, id);
    tellReproduction(stored, (name, value) => c.header(name, value));
    return polledResponse(stored, store);
  });
});
app.delete('/v1/responses/:id', rateLimitHeaders, (c) =>
  storedResponseRoute(c, async (store, id) => {
    if (!(await store.delete(id))) throw responseNotFound(id, null);
    // A run of it in this isolate stops now; one elsewhere reads the stop mark the delete wrote.
    haltRunHere(store, id, 'delete');
    return { id, object: 'response', deleted: true };
  }),
);
app.get('/v1/responses/:id/input_items', rateLimitHeaders, (c) => storedResponseRoute(c, async (store, id) => inputItemsPage(await storedResponse(store, id), new URL(c.req.url).searchParams)));
// Only a background response can be cancelled: one still running is told to stop (at once where this isolate runs it,
// through its stop mark wherever it runs), one ended is answered as it is (vLLM's way; a cancel often races the end).
app.post('/v1/responses/:id/cancel', rateLimitHeaders, (c) =>
  storedResponseRoute(c, async (store, id) => {
    const stored = await storedResponse(store, id);
    if (!stored.response.background) throw badRequest('Only responses created with background: true can be cancelled.', null, 'invalid_request_error');
    tellReproduction(stored, (name, value) => c.header(name, value));
    const response = await polledResponse(stored, store);
    if (response.status !== 'queued' && response.status !== 'in_progress') return response;
    // The mark first: every poll from the answer on reads it, and shows the response cancelled.
    await store.requestStop(response.id, 'cancel');
    haltRunHere(store, response.id, 'cancel');
    // With the usage of what it generated where this isolate runs it (its output too, once stopped).
    return cancelledAnswer(store, response);
  }),
);

/** This key's stored chat completions (chat's `store: true`), under the Responses store's TTL and bound. */
function chatCompletionStore(c: Context<AppEnv>): ChatCompletionStore {
  const config = edgeConfig(c.env);
  return new ChatCompletionStore(requireKv(c.env), c.get('key').dataScope, config.responseTtlSeconds, config.responseMaxBytes);
}

function storedChatRoute(c: Context<AppEnv>, answer: (store: ChatCompletionStore, id: string) => Promise<object>): Promise<Response> {
  // jsonText: a completion's prompt_logprobs are read back in the order its client got (chat-completion-store.ts).
  return keyStoreRoute(c, chatCompletionStore, answer, jsonText);
}

// OpenAI's stored chat completions: list (GET /v1/chat/completions), retrieve, update its metadata, delete, its messages.
app.get('/v1/chat/completions', rateLimitHeaders, (c) =>
  storedChatRoute(c, async (store) => {
    const query = listQuery(new URL(c.req.url).searchParams);
    return store.list(await withServedModel(query, async () => (await servedModel(poolPicker(c.env), (promise) => c.executionCtx.waitUntil(promise))).info.model.name));
  }),
);
app.get('/v1/chat/completions/:id', rateLimitHeaders, (c) => storedChatRoute(c, async (store, id) => completionObject(await storedChatCompletion(store, id))));
app.post('/v1/chat/completions/:id', rateLimitHeaders, limitBody, (c) =>
  storedChatRoute(c, async (store, id) => {
    const text = await readUncompressedText(c);
    const updated = await store.updateMetadata(id, metadataUpdate(parseJsonBody(text)), (value) => takeStorage(c, value));
    if (updated === null) throw chatCompletionNotFound(id);
    return completionObject(updated);
  }),
);
app.delete('/v1/chat/completions/:id', rateLimitHeaders, (c) =>
  storedChatRoute(c, async (store, id) => {
    if (!(await store.delete(id))) throw chatCompletionNotFound(id);
    return { object: 'chat.completion.deleted', id, deleted: true };
  }),
);
app.get('/v1/chat/completions/:id/messages', rateLimitHeaders, (c) => storedChatRoute(c, async (store, id) => messagesPage(await storedChatCompletion(store, id), new URL(c.req.url).searchParams)));

/** This key's conversations (the Conversations API), under the Responses store's TTL and bound. */
function conversationStore(c: Context<AppEnv>): ConversationStore {
  const config = edgeConfig(c.env);
  return new ConversationStore(requireKv(c.env), c.get('key').dataScope, config.responseTtlSeconds, config.responseMaxBytes);
}

function conversationRoute(c: Context<AppEnv>, answer: (store: ConversationStore, id: string) => Promise<object>): Promise<Response> {
  return keyStoreRoute(c, conversationStore, answer);
}

// OpenAI's Conversations API: a conversation's items are the context of a response naming it, which appends its turn.
app.post('/v1/conversations', rateLimitHeaders, limitBody, (c) =>
  conversationRoute(c, async (store) => {
    const text = await readUncompressedText(c);
    // The SDK's create() with no argument sends no body (undefined); a JSON null is a body, and no object (a 400).
    const raw = text.trim() === '' ? undefined : parseJsonBody(text);
    const { items, metadata } = await createBody(raw, responseStore(c));
    if (items.length > 0) refuseUnreadableItems(items, [], await servedModel(poolPicker(c.env), (promise) => c.executionCtx.waitUntil(promise)));
    // The items as resolved (an item_reference brings in the item it names), not the body.
    takeStorage(c, JSON.stringify({ items, metadata }));
    return conversationObject(await store.create(items, metadata));
  }),
);
app.get('/v1/conversations/:id', rateLimitHeaders, (c) =>
  conversationRoute(c, async (store, id) => {
    const record = await store.get(id);
    if (record === null) throw conversationNotFound(id);
    return conversationObject(record);
  }),
);
app.post('/v1/conversations/:id', rateLimitHeaders, limitBody, (c) =>
  conversationRoute(c, async (store, id) => {
    const text = await readUncompressedText(c);
    const metadata = updateBody(parseJsonBody(text));
    // Taken where the conversation is there (a 404 stores nothing).
    const updated = await store.change(
      id,
      (record) => {
        // The record it writes whole again, with a fresh TTL: charged its body, 1 KiB a month kept 4 MiB for good.
        const changed = { ...record, metadata };
        takeStorage(c, JSON.stringify(changed));
        return changed;
      },
      'metadata',
    );
    if (updated === null) throw conversationNotFound(id);
    return conversationObject(updated);
  }),
);
app.delete('/v1/conversations/:id', rateLimitHeaders, (c) =>
  conversationRoute(c, async (store, id) => {
    if (!(await store.delete(id))) throw conversationNotFound(id);
    return { id, object: 'conversation.deleted', deleted: true };
  }),
);
app.post('/v1/conversations/:id/items', rateLimitHeaders, limitBody, (c) =>
  conversationRoute(c, async (store, id) => {
    checkInclude(new URL(c.req.url).searchParams);
    const text = await readUncompressedText(c);
    const raw = itemsBody(parseJsonBody(text));
    const current = await store.get(id);
    if (current === null) throw conversationNotFound(id);
    // Checked against the conversation as read here (ids, and the calls an output answers), and its ids again as
    // changed (an item added meanwhile is a duplicate too).
    const items = await conversationItems(raw, true, responseStore(c), current.items);
    refuseUnreadableItems(items, current.items, await servedModel(poolPicker(c.env), (promise) => c.executionCtx.waitUntil(promise)));
    takeStorage(c, JSON.stringify(items));
    const updated = await store.change(
      id,
      (record) => {
        const ids = new Set(record.items.map((item) => item.id));
        const twice = items.findIndex((item) => ids.has(item.id));
        if (twice >= 0) throw badRequest(`Duplicate item found with id ${clipped(items[twice].id, 100)}. Remove duplicate items from your input and try again.`, `items.${twice}`, 'invalid_value');
        return { ...record, items: [...record.items, ...items] };
      },
      'items',
    );
    if (updated === null) throw conversationNotFound(id);
    return itemList(items);
  }),
);
app.get('/v1/conversations/:id/items', rateLimitHeaders, (c) =>
  conversationRoute(c, async (store, id) => {
    const record = await store.get(id);
    if (record === null) throw conversationNotFound(id);
    return conversationItemsPage(record, new URL(c.req.url).searchParams);
  }),
);
app.get('/v1/conversations/:id/items/:item', rateLimitHeaders, (c) =>
  conversationRoute(c, async (store, id) => {
    checkInclude(new URL(c.req.url).searchParams);
    const record = await store.get(id);
    if (record === null) throw conversationNotFound(id);
    const itemId = c.req.param('item') ?? '';
    const item = record.items.find((candidate) => candidate.id === itemId);
    if (!item) throw conversationItemNotFound(itemId);
    return listedItem(item);
  }),
);
app.delete('/v1/conversations/:id/items/:item', rateLimitHeaders, (c) =>
  conversationRoute(c, async (store, id) => {
    const itemId = c.req.param('item') ?? '';
    const updated = await store.change(
      id,
      (record) => {
        const without = withoutItem(record, itemId);
        if (without === null) throw conversationItemNotFound(itemId);
        return without;
      },
      'item_id',
    );
    if (updated === null) throw conversationNotFound(id);
    return conversationObject(updated);
  }),
);

// The right path with the wrong method: 405 naming the one it takes, not "no route".
function methodNotAllowed(path: string, allow: string): void {
  // The path as asked (a route's `:id` said as the id sent).
  app.all(path, (c) => {
    c.get('log')?.failed('method_not_allowed');
    return errorResponse(new ApiError(405, `${clipped(c.req.path, 200)} takes ${allow}, not ${c.req.method}.`, 'invalid_request_error', 'method_not_allowed'), { allow });
  });
}
for (const path of ['/v1/completions', '/v1/responses', '/v1/responses/:id/cancel']) methodNotAllowed(path, 'POST');
methodNotAllowed('/v1/chat/completions', 'GET, POST');
methodNotAllowed('/v1/chat/completions/:id', 'GET, POST, DELETE');
methodNotAllowed('/v1/chat/completions/:id/messages', 'GET');
methodNotAllowed('/v1/responses/:id', 'GET, DELETE');
methodNotAllowed('/v1/responses/:id/input_items', 'GET');
methodNotAllowed('/v1/conversations', 'POST');
methodNotAllowed('/v1/conversations/:id', 'GET, POST, DELETE');
methodNotAllowed('/v1/conversations/:id/items', 'GET, POST');
methodNotAllowed('/v1/conversations/:id/items/:item', 'GET, DELETE');
// The models, the demo page and the probes too: a POST /v1/models was a 404 "No route" (review h141).
for (const path of ['/v1/models', '/v1/models/:model{.+}', '/', '/healthz', '/health', '/readyz']) methodNotAllowed(path, 'GET');

/**
 * A /v1/user-cache route: the key's own users only (the scope hashes the key's id with the name). Counted as a request
 * of the key (each costs KV a read, a delete a write too): a loop of them is limited as completions are. It takes no
 * slot: a user's erasure goes through while the key's generations fill them. `unavailable`: the 503's message where KV
 * fails.
 */
function userCacheRoute(unavailable: string, answer: (c: Context<AppEnv>, scope: string, user: string | null) => Promise<Response>): (c: Context<AppEnv>) => Promise<Response> {
  return async (c) => {
    const admission = admit(c, false);
    try {
      const user = userCacheUser(new URL(c.req.url).search, await readUncompressedText(c));
      return await answer(c, await cacheScope(c.get('key').dataScope, user), user).catch((err: unknown) => {
        if (err instanceof ApiError) throw err;
        console.error(`edge: user cache ${c.req.method} failed`, err);
        throw new ApiError(503, unavailable, 'service_unavailable', 'user_cache_unavailable', null, 2);
      });
    } finally {
      admission.release();
    }
  };
}

// A user's cache, forgotten.
app.delete(
  '/v1/user-cache',
  rateLimitHeaders,
  limitUserCacheBody,
  userCacheRoute('The user cache store is unavailable; retry shortly (the cache may not be forgotten yet).', async (c, scope, user) => {
    const store = new UserCacheStore(requireKv(c.env), edgeConfig(c.env).userCacheMaxBytes);
    const deleted = await store.delete(scope, (promise) => c.executionCtx.waitUntil(promise));
    return c.json({ object: 'user_cache.deleted', user, deleted });
  }),
);
// What is kept of a user: their verbatim history as text, and the n-gram table's size.
app.get(
  '/v1/user-cache',
  rateLimitHeaders,
  limitUserCacheBody,
  userCacheRoute('The user cache store is unavailable; retry shortly.', async (c, scope, user) => {
    const config = edgeConfig(c.env);
    const model = await servedModel(poolPicker(c.env), (promise) => c.executionCtx.waitUntil(promise));
    const bytes = await new UserCacheStore(requireKv(c.env), config.userCacheMaxBytes, model.tokenizer.vocabSize).read(scope);
    // A user's own text: no cache on the way may keep it.
    return c.json(viewUserCache(user, bytes, model.tokenizer, config.edgeTrieNodes > 0), 200, { 'cache-control': 'no-store' });
  }),
);
methodNotAllowed('/v1/user-cache', 'GET, DELETE');

// vLLM's tokenizer routes (edge/tokenize-route.ts), also under /v1. Each is a request of the key, with a slot while
// its body is read and its text encoded (up to ~0.1 s of the isolate's thread).
function tokenizerRoute(run: (body: unknown, model: ServedModel) => object): (c: Context<AppEnv>) => Promise<Response> {
  return async (c) => {
    const admission = admit(c);
    try {
      const model = await servedModel(poolPicker(c.env), (promise) => c.executionCtx.waitUntil(promise));
      return c.json(run(await readJson(c, admission), model));
    } finally {
      admission.release();
    }
  };
}
for (const prefix of ['', '/v1']) {
  app.post(`${prefix}/tokenize`, rateLimitHeaders, limitBody, tokenizerRoute(tokenize));
  app.post(`${prefix}/detokenize`, rateLimitHeaders, limitBody, tokenizerRoute(detokenize));
}
for (const prefix of ['', '/v1']) for (const path of ['/tokenize', '/detokenize']) methodNotAllowed(prefix + path, 'POST');

/** Disabled, the route is not there for any method (review h153: a GET was a 405 naming POST, a POST a 404). */
function benchRoutesDisabled(): ApiError {
  return new ApiError(404, 'Bench routes are disabled (set SSSD_BENCH_ROUTES=1).', 'invalid_request_error', 'not_found');
}
app.all('/bench/edge-cpu', async (c, next) => {
  if (!edgeConfig(c.env).benchRoutes) throw benchRoutesDisabled();
  await next();
});
app.post('/bench/edge-cpu', rateLimitHeaders, limitBody, async (c) => {
  // The key's limits, as for a completion: a run holds the isolate's thread for up to seconds.
  const admission = admit(c);
  try {
    const model = await servedModel(poolPicker(c.env), (promise) => c.executionCtx.waitUntil(promise));
    return c.json(await benchEdgeCpu(await readJson(c, admission), model, requireKv(c.env)));
  } finally {
    admission.release();
  }
});

methodNotAllowed('/bench/edge-cpu', 'POST');

export default app;
