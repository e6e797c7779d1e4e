/**
 * An HTTP proxy in front of a real pool that breaks generation streams the way
 * a failing pool does, after a set number of `tokens` events: `cut` drops the
 * connection (a pool that crashed, a network that failed), `cancel` ends the
 * stream with the `done` / `cancelled` a pool sends when it shuts down under
 * a generation, `stall` sends nothing more and keeps the connection open (a
 * pool that hangs), `drop-done` passes every event but the last and drops
 * the connection there (a pool that died with the generation whole), `hang`
 * never answers the generate request at all (a pool stopped dead: SIGSTOP,
 * a stuck device, a partition). `busyAnswers`: that many generate requests
 * are refused as a full pool refuses them first. `displace` takes a generation
 * in, keeps it queued for `displaceAfterMs`, then ends it as a full pool does
 * when its place goes to another tenant's. `garble` sends `garbledLine` in
 * place of the tokens event and ends the stream (a pool of another version,
 * a proxy or a pool bug sending valid JSON of the wrong shape).
 * `delay` holds the stream at that `tokens` event for `delayMs`, then passes
 * it and everything after (a pool that took the generation in and is slow
 * to its first tokens: a long prefill, a queue). `slow` holds the generate
 * request itself for `delayMs` before it passes, so no answer and no event
 * comes until then (a live pool slow to answer: its event loop behind under
 * a flood).
 * `health: 'draining'` answers `/healthz` as a draining pool does (503),
 * while the pool behind still serves everything else. A cancel of a
 * generation the proxy broke is answered 404 by the proxy itself, as the
 * separate pool it stands for would (the generation is over there).
 * `cancelDelayMs` holds each `DELETE` that long before it passes: an edge
 * far from its pool, whose cancel at a stop string comes late.
 * `forgets` stands for a pool from before some features
 * (shared/pool-features.ts): its /healthz and /v1/info list only the others
 * (`'all'`: no list at all, a pool from before the list), and its generate
 * requests reach the pool without those fields, as such a pool's schema
 * drops them unread.
 * Everything else passes through untouched. In a mode that breaks streams, a
 * generation is asked of the pool as NDJSON (its `accept` dropped, so the pool
 * answers as pools from before binary frames do), whose events the proxy can
 * cut at their lines; the edge reads either form.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { POOL_FEATURES, type PoolFeature } from '../../shared/pool-features';
import type { PoolEvent } from '../../shared/protocol';

/** What a draining pool sends a generation still running when its time is up (docs/protocol.md, "Shutdown"). */
const shutDown: PoolEvent = {
  type: 'done',
  finishReason: 'cancelled',
  usage: { promptTokens: 0, completionTokens: 0, speculation: { drafts: 0, draftTokens: 0, acceptedTokens: 0, steps: 0, meanAcceptanceLength: 0 } },
};

export type FaultMode = 'pass' | 'cut' | 'cancel' | 'fail' | 'stall' | 'drop-done' | 'hang' | 'displace' | 'garble' | 'delay' | 'slow';

/** What `fail` sends: the pool's internal error, with text (a path, a runtime's words) that is the operator's, not a client's. */
export const INTERNAL_FAILURE_MARKER = 'verification step failed: /srv/models/secret-checkpoint.onnx node MatMul_17';

export interface FaultProxy {
  url: string;
  /** What happens to the next generation streams. */
  mode: FaultMode;
  /** `tokens` events let through before the fault (which comes at the next one). */
  afterTokenEvents: number;
  /** What `/healthz` says: the pool's own answer, or a draining pool's 503. */
  health: 'pass' | 'draining';
  /** Which generations to break, by id (default: not the resumed ones, ids ending `.r<k>`), or by what the edge asked of the pool (its generate body). */
  breaks: (id: string, body: GenerateBody) => boolean;
  /** A mode of its own for a generation broken, by id, in place of `mode`'s (null: `mode` for all); for `cut`, `cancel`, `fail`, `stall`, `drop-done`, `garble`. */
  modeOf: ((id: string) => FaultMode) | null;
  /** Ids of the generations opened through the proxy, and of those broken. */
  readonly opened: string[];
  readonly broken: string[];
  /** The content-type the pool answered each generation opened through the proxy with (frames or NDJSON). */
  readonly answeredAs: string[];
  /** The path and query of each cancel (`DELETE`) sent through the proxy, in order. */
  readonly cancels: string[];
  /** `displace`: how long the generation waits "queued" (a `queued` event every 400 ms) before its place goes to another tenant's. */
  displaceAfterMs: number;
  /** Generate requests answered as a full pool answers (503 busy, with busyHintMs) before they pass again; counted down. */
  busyAnswers: number;
  /** The retry hint of those answers (default 200 ms). */
  busyHintMs: number;
  /** `delay`: how long the stream is held at its tokens event before it passes on; `slow`: the request before it is passed (default 5 s). */
  delayMs: number;
  /** `garble`: the line sent in place of the tokens event (default `null`). */
  garbledLine: string;
  /** How long each DELETE (a cancel) is held before it passes (0: not at all). */
  cancelDelayMs: number;
  /** Features the pool behind stands as not knowing (`'all'`: a pool from before the list); null: none. */
  forgets: readonly PoolFeature[] | 'all' | null;
  /** The edge-pool protocol version its /v1/info names in place of the pool's (a pool of another release); null: the pool's own. */
  protocol: number | null;
  /** Health checks and /v1/info answered with `forgets` or `protocol` applied: a test waits on it, not on a clock. */
  listsAnswered: number;
  /** Sends what comes next to another pool (a pool replaced at the same address). */
  retarget(target: string): void;
  close(): Promise<void>;
}

/** A generate request's body as the edge sent it (shared/protocol.ts, GenerateRequest), read only for what picks a generation to break. */
export type GenerateBody = { id: string } & Record<string, unknown>;

/** A generate body as a pool that does not know `forgets` reads it: those fields gone (sampling's from `sampling`). */
function forgotten(body: Record<string, unknown>, forgets: readonly PoolFeature[] | 'all'): Record<string, unknown> {
  const out: Record<string, unknown> = { ...body };
  const sampling: Record<string, unknown> = { ...((body.sampling as Record<string, unknown> | undefined) ?? {}) };
  for (const feature of forgets === 'all' ? POOL_FEATURES : forgets) {
    if (feature.startsWith('sampling.')) delete sampling[feature.slice('sampling.'.length)];
    else delete out[feature];
  }
  if (body.sampling !== undefined) out.sampling = sampling;
  return out;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  let upstream = new URL(target);
  const proxy: FaultProxy = {
    url: '',
    mode: 'pass',
    health: 'pass',
    afterTokenEvents: 2,
    busyAnswers: 0,
    displaceAfterMs: 1000,
    busyHintMs: 200,
    garbledLine: 'null',
    delayMs: 5_000,
    cancelDelayMs: 0,
    forgets: null,
    protocol: null,
    listsAnswered: 0,
    breaks: (id) => !/\.r\d+$/.test(id),
    modeOf: null,
    opened: [],
    broken: [],
    answeredAs: [],
    cancels: [],
    retarget: (to) => {
      upstream = new URL(to);
    },
    close: async () => undefined,
  };

  /** `answerHeld`: a `slow` generate request held already, now passed on untouched. */
  const forward = (req: IncomingMessage, res: ServerResponse, body: Buffer, answerHeld = false): void => {
    // A generation this proxy broke is over, as a pool of its own would have it: its cancel is answered here. Passed
    // on, it reached the one pool behind every proxy of a test, where another proxy's attempt under the same id ran.
    const cancelled = req.method === 'DELETE' ? /^\/v1\/generations\/([^/?]+)/.exec(req.url ?? '') : null;
    if (cancelled && proxy.broken.includes(decodeURIComponent(cancelled[1]))) {
      const notFound = JSON.stringify({ type: 'error', code: 'not_found', message: `no running generation '${cancelled[1]}'` });
      res.writeHead(404, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(notFound) });
      res.end(notFound);
      return;
    }
    if (proxy.busyAnswers > 0 && req.method === 'POST' && req.url === '/v1/generate') {
      proxy.busyAnswers--;
      const refusal = JSON.stringify({ type: 'error', code: 'busy', message: 'the pool is at capacity (1 of its 1 rows running and 1 of its 1 queued places taken); retry after the time given', retryAfterMs: proxy.busyHintMs });
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1', 'content-length': Buffer.byteLength(refusal) });
      res.end(refusal);
      return;
    }
    if (proxy.mode === 'displace' && req.method === 'POST' && req.url === '/v1/generate') {
      const asked = JSON.parse(body.toString('utf8')) as GenerateBody;
      const id = asked.id;
      if (proxy.breaks(id, asked)) {
        // As a full pool does: taken in, queued, then its place given to another tenant's request.
        proxy.broken.push(id);
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        const queuedAt = Date.now();
        const beat = setInterval(() => res.write(JSON.stringify({ type: 'queued', queuedMs: Date.now() - queuedAt }) + '\n'), 400);
        setTimeout(() => {
          clearInterval(beat);
          res.end(JSON.stringify({ type: 'error', code: 'busy', message: "the pool is at capacity and this generation's place in the queue went to another tenant's", retryAfterMs: 100 }) + '\n');
        }, proxy.displaceAfterMs);
        res.on('close', () => clearInterval(beat));
        return;
      }
    }
    if (proxy.mode === 'hang' && req.method === 'POST' && req.url === '/v1/generate') {
      const asked = JSON.parse(body.toString('utf8')) as GenerateBody;
      const id = asked.id;
      if (proxy.breaks(id, asked)) {
        proxy.broken.push(id);
        return; // No answer, ever: the connection stays open until the edge lets go.
      }
    }
    if (proxy.mode === 'slow' && !answerHeld && req.method === 'POST' && req.url === '/v1/generate') {
      const asked = JSON.parse(body.toString('utf8')) as GenerateBody;
      const id = asked.id;
      if (proxy.breaks(id, asked)) {
        proxy.broken.push(id);
        setTimeout(() => {
          // The edge let go meanwhile (it gave up on the pool): nothing to pass on.
          if (!res.destroyed && !req.socket.destroyed) forward(req, res, body, true);
        }, proxy.delayMs);
        return;
      }
    }
    const generate = req.method === 'POST' && req.url === '/v1/generate';
    const headers = { ...req.headers };
    if (generate && proxy.mode !== 'pass' && proxy.mode !== 'slow') delete headers.accept;
    if (generate && proxy.forgets !== null) {
      body = Buffer.from(JSON.stringify(forgotten(JSON.parse(body.toString('utf8')) as Record<string, unknown>, proxy.forgets)));
      headers['content-length'] = String(body.length);
    }
    const listed = req.method === 'GET' && ((req.url === '/healthz' && proxy.forgets !== null) || (req.url === '/v1/info' && (proxy.forgets !== null || proxy.protocol !== null)));
    const out = http.request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers }, (up) => {
      if (listed) {
        const parts: Buffer[] = [];
        up.on('data', (c: Buffer) => parts.push(c));
        up.on('end', () => {
          const said = JSON.parse(Buffer.concat(parts).toString('utf8')) as { features?: string[]; protocol?: number };
          if (proxy.protocol !== null && req.url === '/v1/info') said.protocol = proxy.protocol;
          const forgets = proxy.forgets;
          if (forgets === 'all') delete said.features;
          else if (forgets !== null) said.features = (said.features ?? []).filter((f) => !(forgets as readonly string[]).includes(f));
          const text = JSON.stringify(said);
          res.writeHead(up.statusCode ?? 502, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
          res.end(text);
          proxy.listsAnswered++;
        });
        return;
      }
      res.writeHead(up.statusCode ?? 502, up.headers);
      const asked = req.method === 'POST' && req.url === '/v1/generate' ? (JSON.parse(body.toString('utf8')) as GenerateBody) : null;
      const id = asked?.id ?? null;
      if (id !== null && up.statusCode === 200) {
        proxy.opened.push(id);
        proxy.answeredAs.push(String(up.headers['content-type']));
      }
      const faulty = id !== null && asked !== null && proxy.mode !== 'pass' && proxy.mode !== 'slow' && up.statusCode === 200 && proxy.breaks(id, asked);
      if (!faulty) {
        up.pipe(res);
        return;
      }
      const mode = proxy.modeOf?.(id) ?? proxy.mode;
      // The edge let go (it took the stall for a hung pool): so does the pool's stream.
      res.on('close', () => up.destroy());
      let seen = 0;
      let pending = '';
      let broke = false;
      // `delay`: the lines held from its tokens event on (null: none held), and whether they were let go.
      let held: string[] | null = null;
      let released = false;
      let upEnded = false;
      up.on('data', (chunk: Buffer) => {
        // Chunks read before the upstream was destroyed still arrive: after the fault, nothing passes.
        if (broke || res.destroyed || res.writableEnded) return;
        pending += chunk.toString('utf8');
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl + 1);
          pending = pending.slice(nl + 1);
          if (held !== null) {
            held.push(line);
            continue;
          }
          const type = (JSON.parse(line) as { type: string }).type;
          if (mode === 'delay') {
            if (!released && seen >= proxy.afterTokenEvents && type === 'tokens') {
              held = [line];
              setTimeout(() => {
                if (res.destroyed || res.writableEnded) return;
                for (const kept of held ?? []) res.write(kept);
                held = null;
                released = true;
                if (upEnded) res.end();
              }, proxy.delayMs);
              continue;
            }
            res.write(line);
            if (type === 'tokens') seen++;
            continue;
          }
          // At a tokens event: what comes before the first one (start, the prompt's log-probabilities) passes.
          if (mode === 'drop-done' ? type === 'done' : seen >= proxy.afterTokenEvents && type === 'tokens') {
            broke = true;
            proxy.broken.push(id);
            if (mode === 'stall') return;
            if (mode === 'cancel') {
              // As a pool that ends the generation itself: ended there first (its id free again), then the
              // `done` / `cancelled` (cut off at once, the pool behind still held the id another proxy's attempt took).
              const headers = req.headers.authorization ? { authorization: req.headers.authorization } : {};
              http.request({ host: upstream.hostname, port: upstream.port, path: `/v1/generations/${encodeURIComponent(id)}`, method: 'DELETE', headers }, (r) => r.resume()).end();
              up.on('end', () => {
                if (!res.destroyed && !res.writableEnded) res.end(JSON.stringify(shutDown) + '\n');
              });
              return;
            }
            up.destroy();
            // Closed once what was sent before the cut is out (a reset may discard it at the edge).
            if (mode === 'cut' || mode === 'drop-done') res.socket?.destroySoon();
            else if (mode === 'fail') res.end(JSON.stringify({ type: 'error', code: 'internal', message: INTERNAL_FAILURE_MARKER }) + '\n');
            else res.end(proxy.garbledLine + '\n');
            return;
          }
          res.write(line);
          if (type === 'tokens') seen++;
        }
      });
      up.on('end', () => {
        upEnded = true;
        if (!broke && held === null && !res.destroyed && !res.writableEnded) res.end();
      });
    });
    out.on('error', () => res.destroy());
    out.end(body);
  };

  const server = http.createServer((req, res) => {
    if (proxy.health === 'draining' && req.url === '/healthz') {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: false, active: 1, queued: 0, load: 0.01, tokensPerSecond: 0, draining: true, stuck: false }));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'DELETE') proxy.cancels.push(req.url ?? '');
      if (req.method === 'DELETE' && proxy.cancelDelayMs > 0) setTimeout(() => forward(req, res, Buffer.concat(chunks)), proxy.cancelDelayMs);
      else forward(req, res, Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  proxy.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return proxy;
}
