/**
 * Offline replay of drafting methods against known continuations.
 *
 * Requests are replayed in arrival order. At every step the method drafts a
 * tree with the budget, verification accepts the longest root path that
 * matches the true continuation, plus the bonus token (the model's own next
 * token) when the continuation goes on. That is greedy verification, and
 * also the pool's coupled sampling for a sampled request: its tokens are
 * fixed by its seed (noise tied to positions), so the accepted path is the
 * one that follows them; such a request's drafter is coupled to the same
 * noise, as in the pool. Every step drafts, the prefill step
 * included. After each request the user's cache is merged with prompt +
 * output, as the edge does; `user` methods draft the edge trie from it at
 * request start and re-draft as soon as the pool would report it exhausted.
 * With `liveDatastore`, datastore methods also learn from every finished
 * request (all users'), as the pool does for opted-in generations.
 */
import { performance } from 'node:perf_hooks';
import { quantile } from '../bench/latency-stats';
import type { DatastoreLike } from '../../shared/drafting/datastore-source';
import type { NextTokenTable } from '../../shared/drafting/next-token-table';
import { longestMatchingPath } from '../../shared/drafting/draft-tree';
import { type EdgeTrieOptions, draftEdgeTrie } from '../../shared/drafting/edge-trie';
import { type FusionWeights, defaultFusionWeights } from '../../shared/drafting/fusion';
import { type DraftMethod, RequestDrafter } from '../../shared/drafting/request-drafter';
import { createDraftTree, type DraftTree } from '../../shared/drafting/draft-tree';
import { resetDraftCache } from '../../shared/drafting/datastore-source';
import { MAX_CHAIN, draftTableChain } from '../../shared/drafting/table-chain';
import { draftTableTree } from '../../shared/drafting/table-tree';
import { GumbelNoise } from '../../shared/sampling/gumbel-noise';
import { UserCache, mergeIntoUserCache } from '../../shared/drafting/user-cache';

/**
 * `table-chain`: the pool's drafting for batches too wide for the fused
 * drafter, a chain of `budget` nodes (at most MAX_CHAIN) from the model's
 * next-token table alone (shared/drafting/table-chain.ts). `table-tree`: the
 * pool's drafting for sampled rows beside fused trees, a coupled tree of
 * `budget` nodes from the table (shared/drafting/table-tree.ts; greedy
 * requests chain as under `table-chain`).
 */
export const evalMethods = ['none', 'pld', 'context', 'context+user', 'context+datastore', 'context+user+datastore', 'table-chain', 'table-tree'] as const;
export type EvalMethod = (typeof evalMethods)[number];

export interface ReplayRequest {
  user: string;
  promptIds: ArrayLike<number>;
  /** The model's true continuation (what verification would emit): greedy, or sampled with `sampling`. */
  continuation: ArrayLike<number>;
  /** A sampled request's seed and temperature (its drafter follows the noise). */
  sampling?: { seed: number; temperature: number };
}

export interface ReplayOptions {
  datastore?: DatastoreLike | null;
  /** The model's next-token table (drafts for sampled requests in the datastore methods). */
  nextTokens?: NextTokenTable | null;
  weights?: FusionWeights;
  /** Edge trie size (nodes, root included). */
  edgeTrieNodes?: number;
  /** Other edge-trie drafting options (see edge-trie.ts). */
  edgeTrie?: Omit<EdgeTrieOptions, 'maxNodes'>;
  userCacheMaxBytes?: number;
  /** Time each draft call (performance.now around it). */
  timeDrafts?: boolean;
  /**
   * Let every finished request feed the datastore (the pool's opt-in
   * `contributeToDatastore`): prompt + output are appended after the request and
   * are searchable from the next one on. Mutates the datastore: pass a fresh one.
   */
  liveDatastore?: boolean;
}

/** What live learning needs beyond lookups (gpu-pool/datastore/datastore.ts). */
interface AppendableDatastore extends DatastoreLike {
  append(tokens: ArrayLike<number>): void;
  flush(): Promise<void>;
}

function isAppendable(ds: DatastoreLike): ds is AppendableDatastore {
  const d = ds as Partial<AppendableDatastore>;
  return typeof d.append === 'function' && typeof d.flush === 'function';
}

export interface ReplayResult {
  method: EvalMethod;
  budget: number;
  steps: number;
  emitted: number;
  /** Mean acceptance length: tokens emitted per verification step, bonus included. */
  tau: number;
  /** Draft tokens proposed and accepted (accepted excludes the bonus). */
  draftTokens: number;
  acceptedTokens: number;
  draftMicrosMedian: number;
  draftMicrosP99: number;
  /** User-cache merge time per request, ms (methods with `user`). */
  mergeMillisMedian: number;
  mergeMillisP99: number;
  /** The sampled requests' share: their steps, tokens and τ (0 when none). */
  sampledSteps: number;
  sampledEmitted: number;
  sampledTau: number;
}

export async function replay(requests: readonly ReplayRequest[], method: EvalMethod, budget: number, opts: ReplayOptions = {}): Promise<ReplayResult> {
  const usesUser = method === 'context+user' || method === 'context+user+datastore';
  const usesDatastore = method === 'context+datastore' || method === 'context+user+datastore';
  if (usesDatastore && !opts.datastore) throw new Error(`method ${method} needs a datastore`);
  const tableMethod = method === 'table-chain' || method === 'table-tree';
  const chainTable = tableMethod ? opts.nextTokens : null;
  if (tableMethod && !chainTable) throw new Error(`method ${method} needs the next-token table`);
  const chainTree = createDraftTree(Math.max(MAX_CHAIN, budget) + 1);
  const drafterMethod: DraftMethod = method === 'none' || tableMethod ? 'off' : method === 'pld' ? 'pld' : method === 'context' ? 'context' : 'sssd';
  const edgeNodes = opts.edgeTrieNodes ?? 128;
  const live = usesDatastore && opts.liveDatastore && opts.datastore ? opts.datastore : null;
  if (live && !isAppendable(live)) throw new Error('live datastore learning needs a datastore with append() and flush()');
  const caches = new Map<string, Uint8Array>();
  // Every replay starts with the datastore's draft cache cold, as a fresh pool does.
  resetDraftCache();
  const draftTimes: number[] = [];
  const mergeTimes: number[] = [];
  let steps = 0;
  let emitted = 0;
  let draftTokens = 0;
  let acceptedTokens = 0;
  let sampledSteps = 0;
  let sampledEmitted = 0;

  for (const req of requests) {
    const cont = req.continuation;
    const userBytes = caches.get(req.user) ?? null;
    const userCache = usesUser ? UserCache.decode(userBytes) : null;
    const sampled = req.sampling !== undefined && req.sampling.temperature > 0;
    const drafter = new RequestDrafter({
      method: drafterMethod,
      promptIds: req.promptIds,
      // As the pool sizes it: for the length the request reaches.
      expectedLength: req.promptIds.length + cont.length,
      datastore: usesDatastore ? (opts.datastore ?? undefined) : undefined,
      nextTokens: usesDatastore ? (opts.nextTokens ?? undefined) : undefined,
      // As the edge drafts: history chains for greedy requests only.
      edgeTrie: userCache ? draftEdgeTrie(userCache, req.promptIds, { historyChain: !sampled, ...opts.edgeTrie, maxNodes: edgeNodes }) : undefined,
      weights: opts.weights ?? defaultFusionWeights,
      ...(sampled ? { sampling: req.sampling } : {}),
    });
    const coupling = sampled ? { noise: new GumbelNoise(req.sampling!.seed), temperature: req.sampling!.temperature } : null;
    let pos = 0;
    while (pos < cont.length) {
      const t0 = opts.timeDrafts ? performance.now() : 0;
      let tree: DraftTree;
      if (chainTable) {
        const ctx = drafter.context;
        if (method === 'table-tree' && coupling) draftTableTree(chainTable, ctx.data, ctx.length, ctx.length, budget, chainTree, coupling);
        else draftTableChain(chainTable, ctx.data, ctx.length, ctx.length, budget, chainTree, coupling);
        tree = chainTree;
      } else tree = drafter.draft(budget);
      if (opts.timeDrafts) draftTimes.push((performance.now() - t0) * 1000);
      const node = longestMatchingPath(tree, cont, pos);
      const accepted = tree.depths[node];
      const n = Math.min(accepted + 1, cont.length - pos);
      steps++;
      emitted += n;
      if (sampled) {
        sampledSteps++;
        sampledEmitted += n;
      }
      draftTokens += tree.size - 1;
      acceptedTokens += accepted;
      drafter.accept(sliceOf(cont, pos, pos + n));
      pos += n;
      if (userCache && drafter.edgeTrieExhausted && pos < cont.length) {
        drafter.pushEdgeTrie(draftEdgeTrie(userCache, drafter.context.data.subarray(0, drafter.context.length), { historyChain: !sampled, ...opts.edgeTrie, maxNodes: edgeNodes }), pos);
      }
    }
    const all = new Int32Array(req.promptIds.length + cont.length);
    all.set(Array.from(req.promptIds));
    all.set(Array.from(cont), req.promptIds.length);
    if (live && isAppendable(live)) {
      live.append(all);
      await live.flush();
    }
    if (usesUser) {
      const t0 = performance.now();
      caches.set(req.user, mergeIntoUserCache(userBytes, all, { maxBytes: opts.userCacheMaxBytes }));
      mergeTimes.push(performance.now() - t0);
    }
  }
  return {
    method,
    budget,
    steps,
    emitted,
    tau: steps > 0 ? emitted / steps : 0,
    draftTokens,
    acceptedTokens,
    draftMicrosMedian: quantileOrZero(draftTimes, 0.5),
    draftMicrosP99: quantileOrZero(draftTimes, 0.99),
    mergeMillisMedian: quantileOrZero(mergeTimes, 0.5),
    mergeMillisP99: quantileOrZero(mergeTimes, 0.99),
    sampledSteps,
    sampledEmitted,
    sampledTau: sampledSteps > 0 ? sampledEmitted / sampledSteps : 0,
  };
}

function sliceOf(a: ArrayLike<number>, from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i < to; i++) out.push(a[i]);
  return out;
}

function quantileOrZero(values: number[], q: number): number {
  return values.length === 0 ? 0 : quantile(values, q);
}
