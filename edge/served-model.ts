/**
 * The served model's info and tokenizer, fetched from a pool (GET /v1/info,
 * then the tokenizer file it names) and kept per isolate. All pools of one
 * edge serve the same model; a failed load is retried on the next request.
 *
 * What is shared between requests is the loaded value, never a promise: in
 * workerd a request must not wait on I/O another request started (a load
 * whose request was cancelled never settles, and everyone waiting on it would
 * hang). Until the first load lands, each request that needs the model loads
 * it itself. Once loaded, the info is checked again every MODEL_CHECK_MS in
 * the background (a pool rolled to another model, context length or
 * tokenizer at the same address); the tokenizer is fetched again only when
 * its checksum changed.
 */
import { modelIdentity, sameModelIdentity, type PoolInfo } from '../shared/protocol';
import { loadTokenizer } from '../shared/tokenizer/load-tokenizer';
import type { Tokenizer } from '../shared/tokenizer/tokenizer';
import { ApiError } from './api-error';
import { servedFingerprint } from './system-fingerprint';
import { spanText } from '../shared/span-text';
import { clipped } from './request-schema';
import { PoolMisdirectedError, PoolUnreachableError, type PoolClient } from './pool-client';
import { everyPoolRefusesError, misconfiguredPoolsError } from './no-pool-error';
import type { PoolPicker } from './pool-picker';

export interface ServedModel {
  info: PoolInfo;
  tokenizer: Tokenizer;
  /** Ids that end a generation and print nothing: the pool's (`/v1/info` model.eosIds), where it stops. */
  eosIds: ReadonlySet<number>;
  /**
   * Its `system_fingerprint` (system-fingerprint.ts). Every generation names
   * this model (protocol `model`), and a pool serving other weights refuses
   * it, so a reply's fingerprint is that of the pool that wrote it, in a fleet
   * mid-upgrade too.
   */
  fingerprint: string;
  /**
   * The most UTF-8 bytes one token stands for: a text of n bytes is at least
   * n / this many tokens. Worked out at the first call (a walk over the
   * vocabulary: ~0.3 s for 128K tokens, which a cold isolate's first request
   * should not pay unless its prompt is long enough to ask).
   */
  maxTokenBytes(): number;
}

function lazyLongestToken(tokenizer: Tokenizer): () => number {
  let longest = 0;
  return () => (longest ||= longestToken(tokenizer));
}

function longestToken(tokenizer: Tokenizer): number {
  let longest = 1;
  for (let id = 0; id < tokenizer.vocabSize; id++) longest = Math.max(longest, tokenizer.tokenBytes(id).length);
  return longest;
}

/** How often a loaded model's info is checked against the pools. */
export const MODEL_CHECK_MS = 60_000;
/** A check that has not ended by then (its request went away mid-check) no longer holds the next one back. */
const CHECK_GIVEN_UP_MS = 30_000;

interface Loaded {
  picker: PoolPicker;
  model: ServedModel;
  checkedAt: number;
  /** When a background check started (0: none running). */
  checkingSince: number;
  /**
   * The model served before a switch made because no pool that is up served
   * it any more (an outage of its pools), not because more pools served
   * another: it takes the edge back as soon as as many pools serve it again
   * (review h144: one pool of a wrong checkpoint, left up alone through an
   * outage of the one other pool, kept the edge once that one was back).
   */
  displaced: PoolInfo | null;
  /** When it was displaced: remembered DISPLACED_FOR_MS at most (a model the operator swapped out for good is not coming back). */
  displacedAt: number;
}

/**
 * How long a model an outage displaced is remembered: its name is a 503
 * (retry) meanwhile, not a 404, and it takes the edge back at a tie. Past it,
 * it is a model no pool serves (review h153: a swap of the only pool's model
 * made the old name a 503 for the isolate's life, which the SDKs retry).
 */
export const DISPLACED_FOR_MS = 10 * 60_000;

let loaded: Loaded | null = null;
/** When the log last said a vote of strays alone was not followed (once a check interval). */
let strayRefusalSaidAt = 0;

/** A model in the log: its name and the short hashes that tell two of the same name apart. */
function describeModel(info: PoolInfo | undefined): string {
  if (!info) return 'the model loaded';
  return `${info.model.name} (${info.model.sha256 ? `weights ${info.model.sha256.slice(0, 12)}, ` : ''}tokenizer ${info.tokenizer.sha256.slice(0, 12)})`;
}

function sameModel(a: PoolInfo, b: PoolInfo): boolean {
  return sameModelIdentity(modelIdentity(a), modelIdentity(b));
}

async function served(client: PoolClient, info: PoolInfo, previous: ServedModel | null): Promise<ServedModel> {
  // The same tokenizer file (by checksum): the one already loaded.
  const same = previous !== null && info.tokenizer.sha256 !== '' && info.tokenizer.sha256 === previous.info.tokenizer.sha256 && info.tokenizer.format === previous.info.tokenizer.format;
  const tokenizer = same ? previous.tokenizer : loadTokenizer(await client.tokenizerBytes(info.tokenizer.path), info.tokenizer.format);
  const maxTokenBytes = same ? previous.maxTokenBytes : lazyLongestToken(tokenizer);
  // Where the pool stops, and nowhere else: a tokenizer's own end ids (an HF tokenizer's `<s>` beside a config's
  // eos 2) were dropped from the text and logprobs while the pool went on generating past them.
  return { info, tokenizer, eosIds: new Set(info.model.eosIds), fingerprint: await servedFingerprint(info), maxTokenBytes };
}

/**
 * The model of the first pool that answers, in the order the pools are
 * listed (known-down ones last). On a check (`previous` loaded), every pool
 * is asked and the pools that are up vote: the model served until now stays
 * while no other model is served by more of them (in a fleet mid-upgrade the
 * edge would otherwise flip between models with the pool order), and one
 * that more of them serve takes over (a pool of another model left up alone
 * through an outage took the edge over, and kept it once the others were
 * back: requests for the model they serve were 404s).
 */
async function load(picker: PoolPicker, previous: ServedModel | null, displaced: PoolInfo | null = null): Promise<{ model: ServedModel; displaced: PoolInfo | null }> {
  const asked = new InfoAsker(picker);
  // Health first where none is known yet (a cold isolate): a hung pool listed first is then known down
  // after the health check's 1 s, not tried for /v1/info's 5 s.
  await picker.checkHealth();
  const order = picker.inListOrder();
  if (previous === null) {
    for (const client of order) {
      const info = await asked.info(client);
      if (info === null) continue;
      try {
        return { model: await served(client, info, null), displaced: null };
      } catch (err) {
        asked.failed(client, err);
      }
    }
    throw asked.nothingServed(false);
  }
  // Asked together: a check of many pools, a hung one among them, is not their timeouts end to end.
  const infos = await Promise.all(order.map((client) => asked.info(client)));
  // The models the pools that are up serve, in the order first seen (the list's), with how many serve each.
  // `steady`: those of them not strays (pool-picker.ts isStray), which alone can carry a switch where no pool up serves the model loaded.
  const up: Array<{ client: PoolClient; info: PoolInfo; pools: number; steady: number }> = [];
  // The model served until now, from a pool known down (draining, stuck): kept only where no pool that is up
  // serves another. The last pool of the old model draining in a rolling upgrade was otherwise a full outage.
  let previousOnDown: { client: PoolClient; info: PoolInfo } | null = null;
  for (let i = 0; i < order.length; i++) {
    const client = order[i];
    const info = infos[i];
    if (info === null) continue;
    if (picker.isDown(client.baseUrl)) {
      if (sameModel(info, previous.info)) previousOnDown ??= { client, info };
      continue;
    }
    // By sameModel, not by a key: a pool too old to name its weights serves the model of one that names them.
    const group = up.find((g) => sameModel(g.info, info));
    const steady = picker.isStray(client.baseUrl) ? 0 : 1;
    if (group) {
      group.pools++;
      group.steady += steady;
    } else up.push({ client, info, pools: 1, steady });
  }
  const kept = up.find((g) => sameModel(g.info, previous.info));
  // The model an outage displaced, where pools that are up serve it again.
  const back = displaced === null ? undefined : up.find((g) => g !== kept && sameModel(g.info, displaced));
  // The most pools, and among as many the one displaced, then the first listed.
  let best: { client: PoolClient; info: PoolInfo; pools: number } | null = null;
  // No pool up serves the model loaded, and only pools found serving another checkpoint under its name beside pools
  // of it vote for one: an outage of the loaded model's pools, with a wrong file left up, not a fleet that moved (the
  // pool that served it comes back with the new one, and is no stray). The outage's 503 (retry), not another model
  // under the name (review h228: in 30 s, and its context limit's 400s blamed the client).
  const strayOnly = kept === undefined ? up.filter((g) => g.steady === 0) : [];
  for (const group of up) if (group !== kept && !strayOnly.includes(group) && (best === null || group.pools > best.pools || (group === back && group.pools === best.pools))) best = group;
  if (best === null && previousOnDown === null && strayOnly.length > 0) {
    const now = Date.now();
    if (now - strayRefusalSaidAt >= MODEL_CHECK_MS) {
      strayRefusalSaidAt = now;
      console.warn(
        `edge: not serving ${describeModel(strayOnly[0].info)} in place of ${describeModel(previous.info)}, though no pool that is up serves that: only pools found serving it beside pools of the model loaded do (${strayOnly[0].client.baseUrl}: another checkpoint under its name?); requests get 503 (retry) until a pool serves the model loaded, or one that served it serves the other`,
      );
    }
    throw new ApiError(503, 'No inference pool that is up serves the model this edge serves; retry shortly.', 'service_unavailable', 'pool_unavailable', null, 2);
  }
  const candidates: Array<{ client: PoolClient; info: PoolInfo; switching: boolean }> = [];
  // The model served stays against as many pools of another, but not of the one it displaced.
  const keeps = kept !== undefined && (best === null || kept.pools > best.pools || (kept.pools === best.pools && best !== back));
  if (keeps) candidates.push({ ...kept, switching: false });
  else if (previousOnDown !== null && best === null) candidates.push({ ...previousOnDown, switching: false });
  if (best !== null) candidates.push({ ...best, switching: true });
  for (const { client, info, switching } of candidates) {
    try {
      const model = await served(client, info, previous);
      if (!switching) return { model, displaced };
      const returning = back !== undefined && best === back;
      const why = returning
        ? `it was served before an outage of its pools, and as many pools that are up serve it again (${back.pools} against ${kept?.pools ?? 0})`
        : kept
          ? `more pools that are up serve it (${best!.pools} against ${kept.pools})`
          : 'no pool that is up serves the model loaded any more';
      console.warn(`edge: serving ${describeModel(model.info)} from now on, not ${describeModel(previous.info)}: ${why}`);
      picker.forgetMisdirected();
      // Displaced by an outage: remembered (the first model displaced, through several); back, or outvoted: forgotten.
      return { model, displaced: returning || kept ? null : (displaced ?? previous.info) };
    } catch (err) {
      asked.failed(client, err);
    }
  }
  throw asked.nothingServed(up.length > 0 || previousOnDown !== null);
}

/**
 * Asks pools what they serve, noting on the picker what their answers say
 * (pinned weights, misdirection, failure), and what an error should say
 * when none served.
 */
class InfoAsker {
  private lastError: unknown = null;
  /** Pools that answered with other weights than the pinned ones. */
  private pinnedOut = 0;
  /** The protocol version a pool named that is not this edge's (the last one seen), or null. */
  private otherProtocol: number | null = null;
  /** Pools that named another protocol version. */
  private protocolOut = 0;
  /** Pools asked for their info. */
  private asked = 0;
  /** Pools that did not answer at all (connection refused or reset). */
  private unreachable = 0;
  /** Pools that answered 401, and each pool's failure as the log says it (the last alone hid a refused token behind an outage: review h124). */
  private tokenRefusals = 0;
  /** Of those, the ones whose 401 was a pool's own answer (the others: SSSD_POOL_URLS may name no pool). */
  private poolTokenRefusals = 0;
  private readonly failures: string[] = [];

  constructor(private readonly picker: PoolPicker) {}

  /** The pool's info, or null where it did not answer or serves other weights than the pinned ones. */
  async info(client: PoolClient): Promise<PoolInfo | null> {
    const { picker } = this;
    let info: PoolInfo;
    this.asked++;
    try {
      info = await client.info();
    } catch (err) {
      this.failed(client, err);
      return null;
    }
    // Another protocol version's info and events would be misread: that pool is left out until it speaks this one.
    // Pinned: another checkpoint is not this edge's, whatever the list's order. Either way it is not verified.
    const said = picker.noteInfo(client.baseUrl, info);
    if (said === 'protocol') {
      this.otherProtocol = info.protocol;
      this.protocolOut++;
    }
    if (said === 'pinned') this.pinnedOut++;
    // A pool of another model than the one served still votes (load): it may be the one most pools serve now.
    return said === 'serves' || said === 'other-model' ? info : null;
  }

  /** A pool failed to answer, or to serve its tokenizer. */
  failed(client: PoolClient, err: unknown): void {
    this.lastError = err;
    if (err instanceof PoolMisdirectedError && err.status === 401) {
      this.tokenRefusals++;
      if (!err.notAPool) this.poolTokenRefusals++;
    } else if (err instanceof PoolUnreachableError) this.unreachable++;
    if (this.failures.length < 8) this.failures.push(`${client.baseUrl}: ${(err instanceof Error ? err.message : String(err)).slice(0, 200)}`);
    // A pool that refuses the edge's token, or a URL naming no pool, is said in the log (once a spell), not only failed over.
    if (err instanceof PoolMisdirectedError) this.picker.markRefused(client.baseUrl, err);
    else this.picker.markFailed(client.baseUrl);
  }

  /** What to answer when no pool's model could be served; `answered`: some pool did say what it serves. */
  nothingServed(answered: boolean): ApiError {
    const { picker } = this;
    if (this.pinnedOut > 0 && picker.modelSha256 !== null) {
      const pin = `SSSD_MODEL_SHA256 ${picker.modelSha256.slice(0, 12)}…`;
      // Every pool asked answered, none with the pinned weights (or as another misconfiguration): no retry helps until
      // the operator pins what the pools serve or starts pools with these, as for a refused token (no-pool-error.ts;
      // review h222: "retry shortly" for ever). A pool that did not answer may be one restarting onto them (a rollout
      // under way): then a retry may succeed, and is asked for.
      if (this.pinnedOut + this.protocolOut + this.tokenRefusals >= this.asked) {
        return everyPoolRefusesError({ weights: this.pinnedOut, protocol: this.protocolOut, otherProtocol: this.otherProtocol, token: this.tokenRefusals, pin: picker.modelSha256 });
      }
      return new ApiError(503, `No pool serves the weights this edge is pinned to (${pin}): those that answer serve others, and the rest could not be reached or failed (a pool restarting may have them); retry shortly.`, 'service_unavailable', 'pool_unavailable', null, 2);
    }
    if (this.otherProtocol !== null && !answered && this.lastError === null) {
      // Reachable, and of another release: the operator's to fix, as a refused token is.
      return everyPoolRefusesError({ weights: 0, protocol: this.protocolOut, otherProtocol: this.otherProtocol, token: 0, pin: null });
    }
    // One line (no stack): it comes at every request while no pool answers.
    const each = this.failures.length > 0 ? this.failures.join('; ') : this.lastError instanceof Error ? this.lastError.message : String(this.lastError);
    console.error(`edge: no pool answered /v1/info: ${each}`);
    // Every pool asked refused the token, or refused it or was unreachable: the operator's to fix (no-pool-error.ts).
    const misconfigured = answered ? null : misconfiguredPoolsError({ tries: this.asked, tokenRefusals: this.tokenRefusals, poolTokenRefusals: this.poolTokenRefusals, unreachable: this.unreachable });
    if (misconfigured) return misconfigured;
    // Some refused the token, the others are down: an outage a retry may outlast, and a configuration to fix, both said.
    const refusing = this.tokenRefusals > 0 && !answered ? ` (and ${this.tokenRefusals === 1 ? 'one pool refuses' : `${this.tokenRefusals} pools refuse`} this edge's credentials, its pool token: the service's operator must fix its configuration)` : '';
    return new ApiError(503, `No inference pool is reachable${refusing}; retry shortly.`, 'service_unavailable', 'pool_unavailable', null, 2);
  }
}

/**
 * A pool said it serves another model than the one loaded (421): the pools
 * may have moved on to another (a single pool restarted with a new one), so
 * look again at the next request rather than at the end of the interval.
 */
export function checkModelSoon(): void {
  if (loaded) loaded.checkedAt = 0;
}

/**
 * The model the pools of `picker` serve. `waitUntil` keeps a background
 * check alive past the request that started it.
 */
export async function servedModel(picker: PoolPicker, waitUntil?: (promise: Promise<unknown>) => void, checkMs = MODEL_CHECK_MS): Promise<ServedModel> {
  const now = Date.now();
  const current = loaded;
  if (current === null || current.picker !== picker) {
    const { model } = await load(picker, null);
    picker.noteServedModel(model.info);
    loaded = { picker, model, checkedAt: Date.now(), checkingSince: 0, displaced: null, displacedAt: 0 };
    return model;
  }
  if (now - current.checkedAt >= checkMs && (current.checkingSince === 0 || now - current.checkingSince > CHECK_GIVEN_UP_MS)) {
    current.checkingSince = now;
    const remembered = now - current.displacedAt < DISPLACED_FOR_MS ? current.displaced : null;
    const check = load(picker, current.model, remembered).then(
      ({ model, displaced }) => {
        if (loaded !== current) return;
        picker.noteServedModel(model.info);
        // Displaced now (not before): its time starts; displaced still, its time goes on.
        const displacedAt = displaced === null ? 0 : displaced === remembered ? current.displacedAt : Date.now();
        loaded = { picker, model, checkedAt: Date.now(), checkingSince: 0, displaced, displacedAt };
      },
      () => {
        // Pools unreachable: keep serving what was loaded, and look again after the interval.
        current.checkedAt = Date.now();
        current.checkingSince = 0;
      },
    );
    waitUntil?.(check);
  }
  return current.model;
}

/** The names a request may use for the served model. */
export function acceptsModelName(model: ServedModel, name: string): boolean {
  return name === model.info.model.name || name === 'default';
}

/**
 * How long after an outage displaced a model a request naming it is told to
 * retry shortly: a pool's restart, a large model's load included, is within
 * it. Past it, and until DISPLACED_FOR_MS, the 503 says the model may not be
 * coming back and asks for no retry (review h191: "retry shortly" for ten
 * minutes about a model the operator had renamed).
 */
export const DISPLACED_RETRY_MS = 2 * 60_000;

/** The same checkpoint under two names: weights named and equal on both sides, the same tokenizer and context. */
function sameWeights(a: PoolInfo, b: PoolInfo): boolean {
  return !!a.model.sha256 && a.model.sha256 === b.model.sha256 && a.tokenizer.sha256 === b.tokenizer.sha256 && a.model.contextLength === b.model.contextLength;
}

/**
 * The 404 for a model name this edge does not serve (OpenAI's wording and
 * code); for the one an outage of its pools displaced, which may be back
 * once they are (review h147: a client naming it was told it did not
 * exist), a 503 that says which model is served meanwhile: "retry shortly"
 * for DISPLACED_RETRY_MS, then not to retry. Where the pools up serve its
 * very weights under another name (a pool restarted with another file name
 * or --served-model-name), that name is the one to use: a 404 naming it.
 */
export function unknownModel(model: ServedModel, name: string): ApiError {
  const served = model.info.model.name;
  const since = loaded === null ? Number.POSITIVE_INFINITY : Date.now() - loaded.displacedAt;
  const displaced = loaded !== null && since < DISPLACED_FOR_MS ? loaded.displaced : null;
  if (displaced !== null && name === displaced.model.name && name !== served) {
    const quoted = clipped(name, 200);
    const meanwhile = `the pools that are up serve '${served}' (to requests that name it or "default")`;
    if (sameWeights(displaced, model.info)) {
      return new ApiError(
        404,
        `The model '${quoted}' is not served under that name now: ${meanwhile}, the same weights (${displaced.model.sha256!.slice(0, 12)}) under another name. Send model '${served}'.`,
        'invalid_request_error',
        'model_not_found',
        'model',
      );
    }
    if (since < DISPLACED_RETRY_MS) {
      return new ApiError(503, `The model '${quoted}' is not served now: no pool that is up has served it for ${spanText(Math.max(1000, since))}, and ${meanwhile}; retry shortly.`, 'service_unavailable', 'pool_unavailable', 'model', 2);
    }
    return new ApiError(
      503,
      `The model '${quoted}' has not been served for ${spanText(Math.max(1000, since))}: none of its inference pools has been up since, and ${meanwhile}. It may have been replaced; the service's operator can say whether it comes back.`,
      'service_unavailable',
      'pool_unavailable',
      'model',
      60,
      false,
    );
  }
  return new ApiError(404, `The model '${clipped(name, 200)}' does not exist. This server serves '${served}'.`, 'invalid_request_error', 'model_not_found', 'model');
}
