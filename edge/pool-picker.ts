/**
 * Which pool gets a request: healthy pools by load (least loaded first), then
 * the ones whose health is unknown or bad (they may have recovered; trying them
 * last costs only a failed connect). Health is cached briefly per isolate and
 * refreshed in the background, so the per-request path waits for a health
 * check only when no pool is known to be up.
 *
 * Cache affinity: each pool keeps its own prefix cache (finished sequences'
 * keys/values), so a chat whose turns land on different pools prefills its
 * history again on each. A request that names an affinity key (its tenant's
 * cache scope and the prompt's opening tokens) goes first to the pool that key
 * hashes to (rendezvous hashing: every edge picks the same pool, and only the
 * keys of a pool that leaves or joins move), unless that pool is loaded more
 * than AFFINITY_SLACK above the least loaded one: then load decides.
 */
import { featuresMissing, type PoolFeature } from '../shared/pool-features';
import { modelIdentity, PROTOCOL_VERSION, sameModelIdentity, type ModelIdentity, type PoolHealth, type PoolInfo } from '../shared/protocol';
import type { ConfigRefusals } from './no-pool-error';
import { PoolClient, PoolMisdirectedError, refusesToken } from './pool-client';

const HEALTH_TTL_MS = 2_000;
const FAILED_TTL_MS = 1_000;
/** A pool whose features are unconfirmed is asked for them at most this often by requests that need them, each ask this long at most. */
const CONFIRM_EVERY_MS = 250;
const CONFIRM_TIMEOUT_MS = 500;
/**
 * How long a pool that cannot serve this edge at all (another model, the
 * wrong token or URL) is tried only after every other; then it is tried in
 * its turn again (it may have been fixed).
 */
const MISDIRECTED_TTL_MS = 60_000;
/**
 * Readiness counts a pool only once it said, to this edge's token, that it
 * serves this edge (an authenticated /v1/info at this protocol and the pinned
 * weights, or a generation served): its open /healthz says ok to anyone (an
 * edge with the wrong token, another edge at a pool's URL). A pool said so is
 * asked again this long after, in case its token or release changed.
 */
const VERIFIED_TTL_MS = 60_000;
/** A pool not verified (never asked, refused, or silent when asked) is asked again by readiness at most this often. */
const VERIFY_RETRY_MS = 5_000;
/** A probe's /v1/info of a pool: not answered by then, the pool counts as it stood (a probe must answer soon). */
const VERIFY_TIMEOUT_MS = 2_000;
/** A probe's ask that has not ended by then (its request went away) no longer holds the next one back. */
const VERIFY_GIVEN_UP_MS = 10_000;
/** A pool passed over for the same reason is said in the log at most this often. */
const PASSED_OVER_LOG_MS = 60_000;
/** How much more loaded (load is 0..1) a request's own pool may be than the least loaded before load wins. */
export const AFFINITY_SLACK = 0.25;
/** Prompt tokens an affinity key covers: a system prompt or a chat's first turn opens the prompt. */
export const AFFINITY_TOKENS = 32;

/** 32-bit FNV-1a of a string's UTF-16 units from the state `h` (another hash, to hash a pair), with a final mix. */
function fnv(text: string, h = 0x811c9dc5): number {
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  h ^= h >>> 15;
  return Math.imul(h, 0x2c1b3c6d) >>> 0;
}

/** The affinity key of a prompt in a cache scope: the scope and the prompt's first AFFINITY_TOKENS ids. */
export function affinityKey(scope: string, promptIds: readonly number[]): string {
  return `${scope}:${promptIds.slice(0, AFFINITY_TOKENS).join(',')}`;
}

/**
 * The order to try pools in, given their health (null: unknown or down):
 * healthy ones first, by load, with the affinity key's rendezvous pool moved
 * to the front when its load is within AFFINITY_SLACK of the lowest.
 */
export function orderPools(pools: ReadonlyArray<{ url: string; health: PoolHealth | null }>, affinity: string | null = null): string[] {
  const load = (p: { health: PoolHealth | null }): number => (p.health && p.health.ok ? p.health.load : Number.POSITIVE_INFINITY);
  const order = [...pools].sort((a, b) => load(a) - load(b));
  if (affinity === null || order.length < 2 || !Number.isFinite(load(order[0]))) return order.map((p) => p.url);
  let home = -1;
  let best = -1;
  const key = fnv(affinity);
  order.forEach((p, i) => {
    if (!Number.isFinite(load(p))) return;
    const score = fnv(p.url, key);
    if (score > best) {
      best = score;
      home = i;
    }
  });
  if (home > 0 && load(order[home]) <= load(order[0]) + AFFINITY_SLACK) order.unshift(...order.splice(home, 1));
  return order.map((p) => p.url);
}

interface HealthEntry {
  health: PoolHealth | null;
  until: number;
  /** The last check, or call, failed (health null only means unknown while a first check is in flight). */
  down: boolean;
  /** When it was last found down (0: never). */
  downAt: number;
  /** Found down by its own health check (failed, timed out, or said not ok), not by a call marked failed. */
  downByCheck: boolean;
  /** When a health check last answered ok (0: never). */
  okAt: number;
}

/**
 * When a pool's generation streams last brought an event here (0: never):
 * one record per pool, written in place by each stream's watch, a timestamp
 * and nothing more on the per-event path.
 */
export interface PoolHeard {
  at: number;
}

/** What this isolate knows of whether a pool serves this edge (readiness's verification). */
interface Verification {
  /** It last said it does (its /v1/info to this edge's token, a generation served), and nothing refused this edge since. */
  ok: boolean;
  /** When it last said so, or a probe last asked it (0: never): the next ask is due from then. */
  at: number;
  /** When a probe's ask of it started, while it runs (0: none). */
  askingSince: number;
  /** When this edge was last refused by it (0: never): an answer asked before then says nothing of now. */
  refusedAt: number;
}

/**
 * How long after a pool went silent mid-request the others are doubted
 * until heard from: a fleet hangs together (a device stall, a partition
 * between the edge and the pools), and a request moving on from a hung pool
 * to another hung one waited the whole stall window on each.
 */
const STALL_DOUBT_MS = 60_000;

/** What readiness (GET /readyz) says of the pools: counts only, never their URLs. */
export interface Readiness {
  /** Pools that can take work: up, verified to serve this edge, not refused since. */
  healthy: number;
  total: number;
  /** Of the others, those up that refuse this edge's SSSD_POOL_TOKEN (401): left out where none does. */
  refusedToken?: number;
}

export class PoolPicker {
  private readonly clients: PoolClient[];
  private readonly entries = new Map<string, HealthEntry>();
  /** Pools found misdirected → until when they go last (their /healthz may well say ok). */
  private readonly misdirected = new Map<string, number>();
  /** Pools whose last /v1/info named other weights than the pinned ones (modelSha256): not tried at all. */
  private readonly unpinned = new Set<string>();
  /** Pools whose last /v1/info named another edge-pool protocol version than this edge's, with that version: not tried at all. */
  private readonly otherProtocol = new Map<string, number>();
  /** Pools whose last refusal of this edge was a 401 of their own (its SSSD_POOL_TOKEN), not verified since: readiness counts those up. */
  private readonly tokenRefusing = new Set<string>();
  /**
   * Pools whose latest answer was a refusal this edge's configuration causes
   * (its /v1/info named other pinned weights or another protocol, or it
   * refused the token), with when: where every pool's is, no retry helps
   * (configRefusal).
   */
  private readonly refusedForConfig = new Map<string, { cause: 'weights' | 'protocol' | 'token'; at: number }>();
  /** Whether each pool serves this edge, as last verified (readiness counts only those that do). */
  private readonly verifications = new Map<string, Verification>();
  /** `url reason` → when it was last said that the pool was passed over for it. */
  private readonly passedOverSaid = new Map<string, number>();
  /** When a pool last went silent past its stall window here (0: never). */
  private stalledAt = 0;
  /**
   * Each pool's last event on any generation: a pool that streams others is
   * live, whatever one stream of it did (review h203: under one tenant's
   * flood a stalled stream doubted the only pool while it served 128 rows,
   * and other tenants' requests were cut at 2 s into 503s).
   */
  private readonly heard = new Map<string, PoolHeard>();
  /**
   * Generations sent to each pool since its last health figure: a burst
   * within the health TTL (a product's requests that share one system
   * prompt) saw the same load for every request, and went to one pool
   * while the others idled.
   */
  private readonly sentSinceHealth = new Map<string, number>();
  /**
   * What each pool's last health figure listed of the features (undefined:
   * a pool from before the list), kept while it is marked failed or its
   * check fails, but unconfirmed then (featuresUnconfirmed). A pool never
   * heard from is in no such list.
   */
  private readonly advertised = new Map<string, readonly string[] | undefined>();
  /**
   * Pools that failed, or drained, since a health figure that said ok: what
   * they listed may be another build's by now (a pool restarted at the same
   * URL with older code; review h155: one got a bad_words request and
   * dropped it, 200). Until an ok figure they get no request that needs a
   * feature; others as before.
   */
  private readonly featuresUnconfirmed = new Set<string>();
  /** When confirmFeatures last asked each pool, and the pools it is asking now. */
  private readonly confirmAskedAt = new Map<string, number>();
  private readonly confirming = new Set<string>();

  /** `modelSha256`: the weights the edge serves (SSSD_MODEL_SHA256); pools with others are passed over. */
  constructor(
    urls: readonly string[],
    token: string,
    readonly modelSha256: string | null = null,
  ) {
    this.clients = urls.map((url) => new PoolClient(url, token));
  }

  get size(): number {
    return this.clients.length;
  }

  client(url: string): PoolClient | undefined {
    return this.clients.find((c) => c.baseUrl === url);
  }

  /** Mark a pool as failing (a generate call could not reach it) until its health is checked again. */
  markFailed(url: string): void {
    const now = Date.now();
    this.entries.set(url, { health: null, until: now + FAILED_TTL_MS, down: true, downAt: now, downByCheck: false, okAt: this.entries.get(url)?.okAt ?? 0 });
    this.featuresUnconfirmed.add(url);
  }

  /** The record a generation's stream on the pool at `url` stamps at each event (StallWatch). */
  hearing(url: string): PoolHeard {
    let heard = this.heard.get(url);
    if (!heard) this.heard.set(url, (heard = { at: 0 }));
    return heard;
  }

  /** When the pool was last heard from: a health check that answered ok, or an event on any of its generations. */
  private heardAt(url: string): number {
    return Math.max(this.entries.get(url)?.okAt ?? 0, this.heard.get(url)?.at ?? 0);
  }

  /** A pool went silent past its stall window: failed, and every pool not heard from since is doubted (`doubted`). */
  noteStalled(url: string): void {
    this.markFailed(url);
    this.stalledAt = Date.now();
  }

  /**
   * Whether a pool may be hung, and so is to get only a short window for its
   * first event where another pool can take the request: known down and not
   * heard from since, or, after a pool here went silent (noteStalled), not
   * heard from since (a health check answered ok, or an event came on any of
   * its generations). A live pool sends its first event within a second.
   */
  doubted(url: string): boolean {
    const heardAt = this.heardAt(url);
    const entry = this.entries.get(url);
    if (entry?.down === true && heardAt < entry.downAt) return true;
    if (this.stalledAt === 0 || Date.now() - this.stalledAt > STALL_DOUBT_MS) return false;
    return heardAt < this.stalledAt;
  }

  /**
   * Whether the pool's own health check found it down (failed, timed out,
   * said not ok) and nothing was heard from it since: a pool frozen whole,
   * not one whose single stream went silent under load.
   */
  checkedDown(url: string): boolean {
    const entry = this.entries.get(url);
    return entry?.down === true && entry.downByCheck && this.heardAt(url) < entry.downAt;
  }

  /**
   * Whether a pool other than `url` is not known down: where a stream cut from
   * `url` could go on. With none, cutting a reply only to resume it on the same
   * pool once it answers costs a second prefill and one of its resumes.
   */
  anotherUp(url: string): boolean {
    return this.clients.some((client) => client.baseUrl !== url && !this.isDown(client.baseUrl));
  }

  /**
   * Mark a pool that cannot serve this edge at all (PoolMisdirectedError):
   * tried after every other pool for a while, and said once in the log per
   * isolate and spell of it, since no client's error will show it.
   */
  markMisdirected(url: string, why: string): void {
    const now = Date.now();
    // Out of readiness until it is verified again: the mark's minute alone brought it back unfixed (review h137).
    const refused = this.verification(url);
    refused.ok = false;
    refused.refusedAt = now;
    if ((this.misdirected.get(url) ?? 0) <= now) console.error(`edge: pool ${url} cannot serve this edge (${why}); it is tried last for ${MISDIRECTED_TTL_MS / 1000} s`);
    this.misdirected.set(url, now + MISDIRECTED_TTL_MS);
    // Refused for another reason now (another model, weights, protocol): it took the token.
    this.tokenRefusing.delete(url);
  }

  /** markMisdirected for a pool's refusal (PoolMisdirectedError), noting whether it refused this edge's token (readiness says so). */
  markRefused(url: string, err: PoolMisdirectedError): void {
    this.markMisdirected(url, err.message);
    if (refusesToken(err)) this.tokenRefusing.add(url);
    // A 421 took the token, for a cause its /v1/info tells (another model, weights or release: settleRefusals).
    if (err.status === 401) this.refusedForConfig.set(url, { cause: 'token', at: Date.now() });
    else this.refusedForConfig.delete(url);
  }

  /**
   * Where every pool's latest answer was a refusal this edge's configuration
   * causes (other weights than the pinned ones, another protocol, the
   * token), those refusals by cause: no retry helps until the operator acts.
   * Null where some pool has not refused so, or is down now or was found
   * down since it refused (restarting: it may come back with what this edge
   * serves, mid-rollout).
   */
  configRefusal(): ConfigRefusals | null {
    const refusals: ConfigRefusals = { weights: 0, protocol: 0, otherProtocol: null, token: 0, pin: this.modelSha256 };
    for (const { baseUrl } of this.clients) {
      const refused = this.refusedForConfig.get(baseUrl);
      const entry = this.entries.get(baseUrl);
      if (!refused || entry?.down === true || (entry?.downAt ?? 0) > refused.at) return null;
      refusals[refused.cause]++;
      if (refused.cause === 'protocol') refusals.otherProtocol = this.otherProtocol.get(baseUrl) ?? null;
    }
    return this.clients.length > 0 ? refusals : null;
  }

  /**
   * Asks /v1/info now (each within VERIFY_TIMEOUT_MS) of the pools up whose
   * refusal is not known or may be out of date: `refused` (a generation's
   * 421: another model, weights or release), those refused before they were
   * last found down (restarted since), and those refused VERIFY_RETRY_MS
   * ago or more (one restarted between two requests, unseen down, may serve
   * this edge's weights again: the model check alone took a minute), none
   * that another request is asking. So the first request after the pools
   * moved on says why, and one after a pool came back is served. True where
   * a pool asked serves this edge now.
   */
  async settleRefusals(refused: readonly string[]): Promise<boolean> {
    const now = Date.now();
    const asked = this.clients.filter(({ baseUrl }) => {
      const entry = this.entries.get(baseUrl);
      if (entry?.down === true) return false;
      const known = this.refusedForConfig.get(baseUrl);
      if (known === undefined) return refused.includes(baseUrl);
      if ((entry?.downAt ?? 0) > known.at) return true;
      const asking = this.verifications.get(baseUrl)?.askingSince ?? 0;
      return now - known.at >= VERIFY_RETRY_MS && (asking === 0 || now - asking >= VERIFY_GIVEN_UP_MS);
    });
    await Promise.all(asked.map((client) => this.verify(client)));
    return asked.some(({ baseUrl }) => this.verifications.get(baseUrl)?.ok === true && !this.passedOverByInfo(baseUrl));
  }

  /**
   * A generation moved on from this pool before its first token (busy,
   * unreachable, silent, an error): said in the log once a minute per pool
   * and reason, so an operator sees why a pool takes no traffic (the edge has
   * no metrics of its own; `wrangler tail` shows it). `generationId` (the
   * request's hex within it) names the request the line was said for.
   */
  notePassedOver(url: string, reason: string, generationId?: string): void {
    // Its figures aside: a busy pool's words carry live counts ("479 of its 600 tokens are reserved"), which made
    // nearly every line new, ~85 a minute under load.
    const key = `${url} ${reason.replace(/\d+/g, '#')}`;
    const now = Date.now();
    if ((this.passedOverSaid.get(key) ?? 0) > now - PASSED_OVER_LOG_MS) return;
    // Bounded: pools times reasons, a handful; cleared whole if something odd grows it.
    if (this.passedOverSaid.size >= 1000) this.passedOverSaid.clear();
    this.passedOverSaid.set(key, now);
    console.warn(`edge: pool ${url} passed over before a generation's first token: ${reason} (said once a minute${generationId ? `; this time for ${generationId}` : ''})`);
  }

  /**
   * A pool took a generation to its first token: whatever marked it misdirected (a token it refused, a model it did
   * not serve) is mended, so it goes by its load again and counts as ready (review h124: /readyz said 503 for the
   * rest of the minute while its requests were served).
   */
  noteServing(url: string): void {
    this.misdirected.delete(url);
    this.noteVerified(url);
  }

  /** The pool answered this edge's token at its protocol and pinned weights: it counts as ready while its health says ok. */
  noteVerified(url: string, askedAt?: number): void {
    const verification = this.verification(url);
    // A probe's answer asked before a refusal came (a generation's 401 while it was on its way) does not undo it (review h139).
    if (askedAt !== undefined && askedAt < verification.refusedAt) return;
    verification.ok = true;
    verification.at = Date.now();
    this.tokenRefusing.delete(url);
    this.refusedForConfig.delete(url);
    this.strays.delete(url);
  }

  private verification(url: string): Verification {
    let verification = this.verifications.get(url);
    if (!verification) this.verifications.set(url, (verification = { ok: false, at: 0, askingSince: 0, refusedAt: 0 }));
    return verification;
  }

  /**
   * What a pool's /v1/info (asked with this edge's token) says of it: noted
   * (its protocol, the pinned weights), and whether it serves this edge
   * (then it is verified), speaks another protocol, or has other weights
   * than the pinned ones (then it is marked misdirected, said in the log).
   */
  noteInfo(url: string, info: PoolInfo, askedAt?: number): 'serves' | 'protocol' | 'pinned' | 'other-model' {
    this.noteProtocol(url, info.protocol);
    if (info.protocol !== PROTOCOL_VERSION) {
      this.refusedForConfig.set(url, { cause: 'protocol', at: Date.now() });
      return 'protocol';
    }
    if (this.modelSha256 !== null) {
      const matches = info.model.sha256 === this.modelSha256;
      this.notePinned(url, matches);
      if (!matches) {
        // Pinned: another checkpoint (or a pool too old to name its own) is not this edge's, whatever the list's order.
        this.markMisdirected(url, `it serves weights ${info.model.sha256?.slice(0, 12) ?? '(unnamed)'}, not SSSD_MODEL_SHA256 ${this.modelSha256.slice(0, 12)}`);
        this.refusedForConfig.set(url, { cause: 'weights', at: Date.now() });
        return 'pinned';
      }
    }
    if (this.served !== null && !sameModelIdentity(modelIdentity(info), this.served)) {
      // Unpinned, another model than this isolate serves: every generation sent there is a 421 and a detour, so it goes
      // last and is not counted ready (reviews h144, h147: it counted, and ranked first once its mark lapsed), while
      // the edge's model check still counts it in the vote (served-model.ts).
      this.markMisdirected(url, `it serves ${info.model.name}${info.model.sha256 ? ` (weights ${info.model.sha256.slice(0, 12)})` : ''}, not the model this edge serves`);
      // Not the configuration's: the edge's model check moves to the model most pools serve.
      this.refusedForConfig.delete(url);
      // Another checkpoint under the served name while another pool up serves the loaded one: a wrong file, not a move.
      if (info.model.name === this.served.name && this.clients.some((c) => c.baseUrl !== url && !this.isDown(c.baseUrl) && this.verifications.get(c.baseUrl)?.ok === true)) this.strays.add(url);
      return 'other-model';
    }
    this.noteVerified(url, askedAt);
    return 'serves';
  }

  /** The model this isolate serves (served-model.ts), which a pool's /v1/info is checked against where no weights are pinned. */
  noteServedModel(info: PoolInfo): void {
    this.served = modelIdentity(info);
  }

  /** The pool's place in SSSD_POOL_URLS (from 0; -1: not one of them), as the request log names it. */
  indexOf(url: string): number {
    return this.clients.findIndex((client) => client.baseUrl === url);
  }

  /** The model this isolate serves, once loaded (null: none yet, and no pool is checked against it). */
  private served: ModelIdentity | null = null;

  /**
   * Pools found serving another checkpoint under the served model's name while another pool up served the loaded one
   * (noteInfo), not seen serving it since: such a pool cannot switch the edge alone (served-model.ts; review h228:
   * one wrong file and one crash moved the name to other weights in 30 s). Cleared when the edge switches.
   */
  private readonly strays = new Set<string>();

  /** Whether the pool is one of `strays`. */
  isStray(url: string): boolean {
    return this.strays.has(url);
  }

  /** The served model changed: pools passed over for serving another (421) may serve this one, so none goes last for it. */
  forgetMisdirected(): void {
    // Those marked for serving the model now served are asked again at the next probe, not 5 s later (review h153).
    for (const url of this.misdirected.keys()) {
      const verification = this.verifications.get(url);
      if (verification && !verification.ok) verification.at = 0;
    }
    this.misdirected.clear();
    this.strays.clear();
  }

  /**
   * All pools in the order to try them. `waitUntil` keeps a background health
   * check alive past the request that started it (workerd would cancel it).
   */
  async ordered(waitUntil?: (promise: Promise<unknown>) => void, affinity: string | null = null, needed: readonly PoolFeature[] = []): Promise<PoolClient[]> {
    await this.checkHealth(waitUntil);
    return this.orderConfirmed(waitUntil, affinity, needed);
  }

  /**
   * orderNow, where a request that needs features asks each pool whose list
   * is unconfirmed (featuresUnconfirmed) for a health figure now, not at its
   * next due check: a pool that merely dropped one stream serves it again at
   * once (review h161: every such request was a 503 until then), one
   * restarted as another build says so. Waited for only where no pool can
   * take the request meanwhile (review h162: a hung pool's timeout held every
   * such request), else kept alive by `waitUntil`.
   */
  private async orderConfirmed(
    waitUntil: ((promise: Promise<unknown>) => void) | undefined,
    affinity: string | null,
    needed: readonly PoolFeature[],
    /** Called with the order in the turn it is made (an async function runs to its first await in the caller's). */
    ordered: (order: PoolClient[]) => void = () => undefined,
  ): Promise<PoolClient[]> {
    let order = this.orderNow(affinity, needed);
    if (needed.length > 0 && this.featuresUnconfirmed.size > 0) {
      const asking = this.confirmFeatures();
      if (order.length > 0) waitUntil?.(asking);
      else {
        await asking;
        order = this.orderNow(affinity, needed);
      }
    }
    ordered(order);
    return order;
  }

  /**
   * Asks the pools whose features are unconfirmed for a health figure, each
   * at most once per CONFIRM_EVERY_MS and never while an ask of its own is
   * out (a pool down or hung is not asked once per request), each within
   * CONFIRM_TIMEOUT_MS. Each request asks apart (workerd: no request waits on
   * another's I/O); the first ok figure clears the mark for the rest.
   */
  private confirmFeatures(): Promise<void> {
    const now = Date.now();
    const asked = this.clients.filter(
      (client) => this.featuresUnconfirmed.has(client.baseUrl) && !this.confirming.has(client.baseUrl) && now - (this.confirmAskedAt.get(client.baseUrl) ?? 0) >= CONFIRM_EVERY_MS,
    );
    return Promise.all(
      asked.map((client) => {
        this.confirmAskedAt.set(client.baseUrl, now);
        this.confirming.add(client.baseUrl);
        return this.refresh(client, now, true, CONFIRM_TIMEOUT_MS).finally(() => this.confirming.delete(client.baseUrl));
      }),
    ).then(() => undefined);
  }

  /**
   * As ordered(), for a generation about to be sent: the first pool counts
   * it at once (noteSending), in the same turn as it is chosen. The requests
   * of a burst resume from one health check together and order the pools one
   * after another before any of them sends: counted later, every one of them
   * saw the same loads. The caller counts any further pool it moves on to.
   */
  async orderedToSend(waitUntil: ((promise: Promise<unknown>) => void) | undefined, affinity: string | null, needed: readonly PoolFeature[]): Promise<PoolClient[]> {
    await this.checkHealth(waitUntil);
    // Counted in the turn the order is made.
    return this.orderConfirmed(waitUntil, affinity, needed, (order) => {
      if (order.length > 0) this.noteSending(order[0].baseUrl);
    });
  }

  private orderNow(affinity: string | null, needed: readonly PoolFeature[]): PoolClient[] {
    const now = Date.now();
    const urls = orderPools(
      this.clients.map((client) => ({ url: client.baseUrl, health: this.withSent(client.baseUrl, this.entries.get(client.baseUrl)?.health ?? null) })),
      affinity,
    );
    const last = (url: string): boolean => (this.misdirected.get(url) ?? 0) > now;
    // Pinned weights: a pool known to serve others is left out (one too old to check a request's weights would run it).
    // So is one that speaks another protocol version.
    const pinned = this.unpinned.size > 0 || this.otherProtocol.size > 0 ? urls.filter((url) => !this.passedOverByInfo(url)) : urls;
    // A pool that would drop a field the request sets (it predates it) would answer another question: left out.
    const tried = needed.length === 0 ? pinned : pinned.filter((url) => this.honours(url, needed));
    return [...tried.filter((url) => !last(url)), ...tried.filter(last)].map((url) => this.client(url)!);
  }

  /**
   * Whether the pool at `url` honours every feature in `needed`, by the last
   * health figure it gave, where none has failed since; a pool never heard
   * from does not (it may be one from before them). One left out for it is
   * said in the log, once a minute.
   */
  private honours(url: string, needed: readonly PoolFeature[]): boolean {
    if (!this.advertised.has(url)) return false;
    if (this.featuresUnconfirmed.has(url)) {
      this.notePassedOver(url, 'it failed or drained since it last listed its features (a pool restarted there may be an older build)');
      return false;
    }
    const missing = featuresMissing(needed, this.advertised.get(url));
    if (missing.length > 0) this.notePassedOver(url, `it does not honour ${missing.join(', ')} (a pool from before ${missing.length === 1 ? 'it' : 'them'})`);
    return missing.length === 0;
  }

  /**
   * Of `needed`, what the pools cannot honour: what the best of them lacks,
   * by the last health figure each gave; empty where one honours it all
   * (down or not: then it is an outage, not a fleet too old), or some pool
   * was never heard from.
   */
  featuresLacking(needed: readonly PoolFeature[]): PoolFeature[] {
    // A pool not heard from yet (a cold isolate's check still in flight) may honour it all: nothing to blame on features.
    // Nor one whose list is unconfirmed since it failed: back up, it may honour it all.
    if (this.clients.some((client) => !this.advertised.has(client.baseUrl) || this.featuresUnconfirmed.has(client.baseUrl))) return [];
    let fewest: PoolFeature[] | null = null;
    for (const features of this.advertised.values()) {
      const missing = featuresMissing(needed, features);
      if (fewest === null || missing.length < fewest.length) fewest = missing;
    }
    return fewest ?? [];
  }

  /**
   * Whether a pool heard from does not honour `feature` (one from before it,
   * in a fleet mid-upgrade), by the last health figure each gave: a request
   * that can be written without the feature had better be.
   */
  heardWithout(feature: PoolFeature): boolean {
    for (const features of this.advertised.values()) if (featuresMissing([feature], features).length > 0) return true;
    return false;
  }

  /** A generation is being sent to the pool at `url`: its load counts it until the next health figure does. */
  noteSending(url: string): void {
    this.sentSinceHealth.set(url, (this.sentSinceHealth.get(url) ?? 0) + 1);
  }

  /** A pool's health with the generations sent to it since added to its load (where it says what one adds: 1 / maxActive). */
  private withSent(url: string, health: PoolHealth | null): PoolHealth | null {
    const sent = this.sentSinceHealth.get(url) ?? 0;
    if (health === null || sent === 0 || !(typeof health.maxActive === 'number' && health.maxActive > 0)) return health;
    return { ...health, load: Math.min(1, health.load + sent / health.maxActive) };
  }

  /**
   * The protocol version a pool's /v1/info named: another than this edge's
   * leaves it out of `ordered()` until it names this edge's (its requests and
   * events would be misread: a change an old peer would misread is a new
   * version). Said in the log once a spell.
   */
  noteProtocol(url: string, version: number): void {
    if (version === PROTOCOL_VERSION) {
      this.otherProtocol.delete(url);
      return;
    }
    if (this.otherProtocol.get(url) !== version) {
      console.error(`edge: pool ${url} speaks edge-pool protocol ${typeof version === 'number' ? version : 'of no version it names'}, and this edge ${PROTOCOL_VERSION}: it is not sent work until it speaks ${PROTOCOL_VERSION} (run an edge and pools of one release)`);
    }
    this.otherProtocol.set(url, version);
  }

  /** Whether the pool at `url` is left out for what its /v1/info said (other pinned weights, another protocol). */
  private passedOverByInfo(url: string): boolean {
    return this.unpinned.has(url) || this.otherProtocol.has(url);
  }

  /** What a pool's /v1/info said of the pinned weights: `matches` false leaves it out of `ordered()` until it says true. */
  notePinned(url: string, matches: boolean): void {
    if (matches) this.unpinned.delete(url);
    else this.unpinned.add(url);
  }

  /**
   * Starts the health checks that are due, and waits for them only when no
   * pool is known to be up (stale-while-revalidate; a cold isolate waits).
   * `waitUntil` keeps them alive past the request that started them.
   */
  async checkHealth(waitUntil?: (promise: Promise<unknown>) => void): Promise<void> {
    const now = Date.now();
    const refreshing = Promise.all(this.clients.map((client) => this.refresh(client, now)));
    waitUntil?.(refreshing);
    const anyKnownUp = this.clients.some((client) => this.entries.get(client.baseUrl)?.health?.ok === true);
    if (!anyKnownUp) await refreshing;
  }

  /**
   * How many pools can take work, by this isolate's own view of them (the
   * readiness probe, GET /readyz): a pool whose last health check said ok,
   * not marked failed since, verified to serve this edge (its /v1/info
   * answered this edge's token at this protocol and the pinned weights, or it
   * served a generation), and not refused since (401, 421, another protocol
   * or weights: out until verified again, however long that takes). Checks
   * that are due are waited for, each bounded by its timeout: health each
   * HEALTH_TTL_MS at most, whoever asks; /v1/info of a pool not verified
   * each VERIFY_RETRY_MS at most, of one verified each VERIFIED_TTL_MS.
   * Within that, probes cost no request to a pool.
   */
  async readiness(): Promise<Readiness> {
    const now = Date.now();
    // A pool never heard from whose first check another request runs: this probe cannot wait on that request's I/O
    // (workerd), and counting it unhealthy made a cold isolate's concurrent probes flap to 503 (review h103): asked
    // here, once, bounded as any check.
    const unknown = new Map<string, Promise<boolean>>();
    for (const client of this.clients) {
      const entry = this.entries.get(client.baseUrl);
      if (entry && entry.health === null && !entry.down && entry.until > now) {
        unknown.set(client.baseUrl, client.health().then((h) => h.ok === true, () => false));
      }
    }
    // Asked beside the health checks, not after them: a cold probe waits for the slower of the two, not both.
    const verifying = this.clients.filter((client) => this.verificationDue(client.baseUrl, now)).map((client) => this.verify(client));
    await Promise.all([...this.clients.map((client) => (unknown.has(client.baseUrl) ? unknown.get(client.baseUrl) : this.refresh(client, now))), ...verifying]);
    let healthy = 0;
    let refusedToken = 0;
    for (const { baseUrl } of this.clients) {
      const entry = this.entries.get(baseUrl);
      const ok = unknown.has(baseUrl) ? await unknown.get(baseUrl)! : entry?.health?.ok === true && !entry.down;
      if (ok && this.verifications.get(baseUrl)?.ok === true && !this.passedOverByInfo(baseUrl)) healthy++;
      // Up (its open /healthz says ok) and refusing the token: a configuration to fix, not a pool down.
      else if (ok && this.tokenRefusing.has(baseUrl)) refusedToken++;
    }
    return { healthy, total: this.clients.length, ...(refusedToken > 0 ? { refusedToken } : {}) };
  }

  /** Whether a probe at `now` asks the pool at `url` whether it serves this edge. */
  private verificationDue(url: string, now: number): boolean {
    const verification = this.verifications.get(url);
    if (!verification) return true;
    if (verification.askingSince > 0 && now - verification.askingSince < VERIFY_GIVEN_UP_MS) {
      // Another probe asks it, and this one cannot wait on that probe's I/O (workerd): a pool never answered yet is
      // asked apart, as a cold isolate's first health check is (review h103); any other counts as it stands.
      return verification.at === 0;
    }
    return now - verification.at >= (verification.ok ? VERIFIED_TTL_MS : VERIFY_RETRY_MS);
  }

  /**
   * Asks a pool's /v1/info with this edge's token (where the token goes
   * already), bounded by VERIFY_TIMEOUT_MS, and notes what it said. A pool
   * unreachable or failing (5xx) keeps what it said before: its health
   * check says whether it is up.
   */
  private async verify(client: PoolClient): Promise<void> {
    const verification = this.verification(client.baseUrl);
    const started = Date.now();
    verification.askingSince = started;
    try {
      this.noteInfo(client.baseUrl, await client.info(VERIFY_TIMEOUT_MS), started);
    } catch (err) {
      if (err instanceof PoolMisdirectedError) this.markRefused(client.baseUrl, err);
    } finally {
      if (verification.askingSince === started) verification.askingSince = 0;
      verification.at = Math.max(verification.at, started);
    }
  }

  /**
   * All pools in the order the operator listed them, those known to be down
   * last: where the model info comes from. The load order would make it
   * depend on whose health check came back first, and in a fleet serving two
   * models (mid-upgrade, or by mistake) concurrent first requests loaded
   * different ones.
   */
  /** Whether the pool at `url` is known down (its health check failed or said not ok: draining, stuck). */
  isDown(url: string): boolean {
    return this.entries.get(url)?.down === true;
  }

  inListOrder(): PoolClient[] {
    const down = (client: PoolClient): boolean => this.isDown(client.baseUrl);
    return [...this.clients.filter((client) => !down(client)), ...this.clients.filter(down)];
  }

  /** `now`: a figure asked for since is fresh enough; `force`: asked now whatever (confirmFeatures), within `timeoutMs`. */
  private refresh(client: PoolClient, now: number, force = false, timeoutMs?: number): Promise<void> {
    const entry = this.entries.get(client.baseUrl);
    if (!force && entry && entry.until > now) return Promise.resolve();
    // Claim the refresh so concurrent requests keep the stale figure instead of
    // checking again. Promises are not shared across requests: in workerd a
    // request must not wait on I/O that another request started.
    const next: HealthEntry = { health: entry?.health ?? null, until: now + HEALTH_TTL_MS, down: entry?.down ?? false, downAt: entry?.downAt ?? 0, downByCheck: entry?.downByCheck ?? false, okAt: entry?.okAt ?? 0 };
    this.entries.set(client.baseUrl, next);
    return client.health(timeoutMs).then(
      (health) => {
        next.health = health;
        // Those sent before now are in this figure, or finished (near enough: the count only orders a burst).
        this.sentSinceHealth.delete(client.baseUrl);
        this.advertised.set(client.baseUrl, Array.isArray(health.features) ? health.features : undefined);
        next.until = Date.now() + HEALTH_TTL_MS;
        next.down = !health.ok;
        if (health.ok) {
          next.okAt = Date.now();
          // Only a figure still current: one asked before the pool was marked failed since says nothing of it now (review h162).
          if (this.entries.get(client.baseUrl) === next) this.featuresUnconfirmed.delete(client.baseUrl);
        } else {
          this.foundDown(next);
          this.featuresUnconfirmed.add(client.baseUrl);
        }
      },
      () => {
        next.health = null;
        next.until = Date.now() + FAILED_TTL_MS;
        next.down = true;
        this.foundDown(next);
        this.featuresUnconfirmed.add(client.baseUrl);
      },
    );
  }

  /** A health check found the pool down (down is set by the caller). */
  private foundDown(entry: HealthEntry): void {
    entry.downAt = Date.now();
    entry.downByCheck = true;
  }
}
