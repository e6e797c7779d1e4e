/**
 * Runs the verification graph: one onnxruntime session; a step pads rows of
 * different new-token counts and past lengths into a batch (batch-lane.ts:
 * tree mask, positions, packed past), runs it, and exposes per-row/per-token
 * logits and `commit`, which appends chosen new tokens' keys/values to the
 * row's SequenceKvCache.
 *
 * Normally one `session.run` per step. When padding would dominate (a long
 * prompt joining short decode rows), the rows are run as two padded passes,
 * short and long (padding-split.ts); the StepResult hides that. When the
 * rows' pasts spread wide, one pass runs them in two attention groups, short
 * pasts and long (past-groups.ts, a second graph), so the short ones do not
 * attend over the long ones' padding.
 *
 * Per pass, host -> session: ids, positions, mask, packed past ([B,kvH,P,hd]
 * per layer, kept between steps); session -> host: logits [B,T,V] and only
 * the new keys/values [B,kvH,T,hd].
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import type { LoadedModel } from '../model/load-model';
import type { ModelConfig } from '../model/model-config';
import { CliError } from '../cli/cli-error';
import { loadOrBuildGraph, type CachedGraph } from '../graph/graph-cache';
import {
  buildKvStoreGrowGraph,
  GROUP_ROWS,
  groupInputName,
  KV_STORE_OUT,
  NEW_KV,
  newKeyName,
  newValueName,
  PACKED_OUTPUTS,
  pastKeyName,
  pastValueName,
  packedOutputLayout,
  type GraphLayout,
} from '../graph/llama-graph';
import { BatchLane, PAST_BUCKET, type StepRows } from './batch-lane';
import { pastGroupThreshold } from './past-groups';
import { KvBufferPool } from './kv-buffer-pool';
import { SequenceKvCache } from './kv-cache';
import { paddingSplitThreshold } from './padding-split';
import { ResidentKvStore } from './resident-kv';
import { logLine } from '../metrics/log-line';

/**
 * Where the forward pass runs. `webgpu` is bundled in onnxruntime-node's Linux
 * build (Dawn over Vulkan), so a GPU host needs only a Vulkan driver, not the
 * CUDA provider download; `cuda` needs that download (README: GPU hosts).
 */
export type ExecutionProviderName = 'cpu' | 'cuda' | 'webgpu';
export const EXECUTION_PROVIDERS: readonly ExecutionProviderName[] = ['cpu', 'cuda', 'webgpu'];

export function isExecutionProvider(raw: string): raw is ExecutionProviderName {
  return (EXECUTION_PROVIDERS as readonly string[]).includes(raw);
}

export interface ModelRunnerOptions {
  executionProvider?: ExecutionProviderName;
  /** Graph cache directory (default .cache/graphs or $SSSD_CACHE_DIR/graphs). */
  cacheDir?: string;
  /** Intra-op threads (default $SSSD_THREADS or 1: small models gain little from more, and tests share cores). */
  threads?: number;
  /** Graph weights above this many bytes go to an external data file (default 1 GiB). */
  externalDataAboveBytes?: number;
  /**
   * Fixed cost of an extra session run, in padded tokens, for deciding when to
   * split a step into two passes (default: 32 on CPU until the pool sets it
   * from its calibration, Infinity = never on a GPU, where padded tokens are
   * nearly free and launches are not).
   */
  splitOverheadTokens?: number;
  /**
   * Run the graph that returns one flat output instead of eleven (default
   * $SSSD_PACKED_OUTPUTS = 1 or 0, else on for GPU providers that do not keep
   * keys/values resident): the WebGPU provider waits for the GPU once per
   * output it reads back.
   */
  packedOutputs?: boolean;
  /**
   * Keep keys/values on the device (default $SSSD_RESIDENT_KV = 1 or 0, else
   * on for WebGPU; resident-kv.ts): a pass then uploads no past. Excludes
   * packedOutputs (only the logits come back) and never splits a step.
   */
  residentKv?: boolean;
  /**
   * Run a pass whose rows' pasts spread wide as two attention groups
   * (past-groups.ts; default $SSSD_ATTENTION_GROUPS = 1 or 0, else on for
   * models whose graph keeps its weights inline: the second session holds
   * them again). Host keys/values with separate outputs only (the CPU layout).
   */
  attentionGroups?: boolean;
  /**
   * The most sequences the caller keeps open at once (the pool's
   * --max-active). A resident store doubles only up to that many slots, then
   * grows by one; without it, 128 sequences got a 256-slot store.
   */
  maxSequences?: number;
  /**
   * Positions of finished sequences' host key/value buffers kept for reuse
   * (kv-buffer-pool.ts; default maxSequences, else 64, full contexts). The
   * pool caps it by --max-total-tokens, the operator's statement of memory.
   */
  keptKvTokens?: number;
}

export interface StepResult {
  /** Logits of new token `tokenIndex` of row `rowIndex`: a view, valid until the next step. */
  logitsAt(rowIndex: number, tokenIndex: number): Float32Array;
  /** Appends the keys/values of these new-token indices (a root-to-node path, in order) of this row to the row's cache. */
  commit(rowIndex: number, tokenIndices: ArrayLike<number>): void;
  /** Rows of this step, and session runs it took (1, or 2 when split). */
  readonly batch: number;
  readonly passes: number;
  /** Attention groups of the pass (2 where short and long pasts attended apart, past-groups.ts), else 1. */
  readonly attentionGroups: number;
  /** For allocation-free reads: the array holding row `rowIndex`'s logits, and the offset of a token's vocab-long slice in it. */
  logitsArray(rowIndex: number): Float32Array;
  logitsOffset(rowIndex: number, tokenIndex: number): number;
}

interface PassOutput {
  logits: Float32Array;
  newK: Float32Array[];
  newV: Float32Array[];
  tokensPerRow: number;
}

/** Whether onnxruntime-node was installed with its CUDA provider library. */
export function cudaProviderInstalled(): boolean {
  try {
    const pkg = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
    const dir = path.join(path.dirname(pkg), 'bin', `napi-v6`, process.platform, process.arch);
    return existsSync(path.join(dir, 'libonnxruntime_providers_cuda.so')) || existsSync(path.join(dir, 'onnxruntime_providers_cuda.dll'));
  } catch {
    return false;
  }
}

/**
 * WebGPU provider options: Dawn's validation off (onnxruntime's advice for
 * production; 14.0 against 15.2 ms per step on lavapipe), then
 * `key=value,key=value` from $SSSD_WEBGPU_OPTIONS in onnxruntime's names
 * (validationMode, storageBufferCacheMode, …), which onnxruntime checks when
 * the session starts.
 */
export function webGpuOptions(raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = { validationMode: 'disabled' };
  for (const part of (raw ?? '').split(',')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0 || eq === part.length - 1) throw new CliError(`SSSD_WEBGPU_OPTIONS wants key=value pairs separated by commas, not "${part}"`);
    out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return out;
}

function switchFromEnv(name: string, raw: string | undefined): boolean | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (raw === '1' || raw === '0') return raw === '1';
  throw new CliError(`${name} must be 1 or 0, not "${raw}"`);
}

/** onnxruntime's words for a model file it cannot parse (truncated, overwritten), as against a provider that cannot start. */
const UNREADABLE_GRAPH = /protobuf parsing failed|failed to load model|ModelProto|external data|external initializer|out of bounds or can not be read/i;

/** onnxruntime's intra-op threads: the flag's, else SSSD_THREADS, else 1 (what a run reports it used). */
export function intraOpThreads(requested?: number): number {
  return requested ?? (Number(process.env.SSSD_THREADS) || 1);
}

/** The graph layout a runner on `ep` uses, from its options, then the environment, then the provider's default. */
export function chooseLayout(ep: ExecutionProviderName, opts: Pick<ModelRunnerOptions, 'packedOutputs' | 'residentKv'>, env: NodeJS.ProcessEnv = process.env): GraphLayout {
  const resident = opts.residentKv ?? switchFromEnv('SSSD_RESIDENT_KV', env.SSSD_RESIDENT_KV);
  const packed = opts.packedOutputs ?? switchFromEnv('SSSD_PACKED_OUTPUTS', env.SSSD_PACKED_OUTPUTS);
  if (resident === true && packed === true) throw new CliError('resident keys/values and packed outputs exclude each other: set SSSD_RESIDENT_KV=0 to pack outputs');
  if (ep === 'cpu' && opts.residentKv === undefined && resident === true) {
    // Meant for a device's memory: on the CPU it measured 16-20x slower (30 tokens in 919 ms against 56).
    logLine('sssd: SSSD_RESIDENT_KV=1 on the CPU keeps keys/values in onnxruntime buffers, many times slower than the default there; unset it unless you are measuring that');
  }
  if (resident ?? (ep === 'webgpu' && packed !== true)) return { packedOutputs: false, residentKv: true };
  return { packedOutputs: packed ?? ep !== 'cpu' };
}

export class ModelRunner {
  readonly config: ModelConfig;
  readonly sha256: string;
  readonly executionProvider: ExecutionProviderName;
  /** Whether the graph came from the on-disk cache. */
  readonly graphFromCache: boolean;

  private readonly lanes: [BatchLane, BatchLane];
  private splitOverheadTokens: number;
  // Per-step row bookkeeping (grow-only).
  private rowPass = new Uint8Array(0);
  private rowSlot = new Int32Array(0);
  private members: [Int32Array, Int32Array] = [new Int32Array(0), new Int32Array(0)];
  private ordered: [Int32Array, Int32Array] = [new Int32Array(0), new Int32Array(0)];
  private lengths = new Int32Array(0);
  private pasts = new Int32Array(0);
  private sorted = new Int32Array(0);
  private readonly groupRows = new BigInt64Array(2);
  // A lane's input names as the two-group graph names them, per group.
  private readonly groupNames: Array<Record<string, string>>;
  /** Steps run so far, by how: one pass, two passes (padding-split.ts), one pass in two attention groups (past-groups.ts). */
  readonly stepCounts = { single: 0, split: 0, grouped: 0 };
  private busy = false;
  /** The device-side keys/values (resident layout), else null. */
  private readonly kvStore: ResidentKvStore | null;
  /** Host key/value buffers reused from sequence to sequence (host layouts), else null: its counts feed the pool's metrics. */
  readonly kvBuffers: KvBufferPool | null;

  private constructor(
    private readonly session: InferenceSession,
    /** The resident layout's store-growth session, else null. */
    private readonly growSession: InferenceSession | null,
    /** The two-group graph's session (past-groups.ts), else null. */
    private readonly groupedSession: InferenceSession | null,
    model: LoadedModel,
    ep: ExecutionProviderName,
    fromCache: boolean,
    splitOverheadTokens: number,
    /** The graph's layout (resident keys/values on WebGPU, packed outputs on CUDA): what the caches key it by. */
    readonly layout: GraphLayout,
    maxSequences: number,
    keptKvTokens: number,
  ) {
    const resident = layout.residentKv === true;
    this.lanes = [new BatchLane(model.config, resident), new BatchLane(model.config, resident)];
    const grow = growSession;
    this.kvStore = resident && grow ? new ResidentKvStore(model.config, async (feeds) => (await grow.run(feeds))[KV_STORE_OUT], maxSequences + 1) : null;
    if (resident && !grow) throw new Error('a resident runner needs its store-growth session');
    const c = model.config;
    this.kvBuffers = resident ? null : new KvBufferPool(c.nLayers * c.nKvHeads * c.headDim, keptKvTokens);
    // A resident step is one pass: commits address the one pass's new_kv.
    this.splitOverheadTokens = resident ? Infinity : splitOverheadTokens;
    this.config = model.config;
    const laneInputs = ['input_ids', 'position_ids', 'attention_mask'];
    for (let l = 0; l < c.nLayers; l++) laneInputs.push(pastKeyName(l), pastValueName(l));
    this.groupNames = [0, 1].map((j) => Object.fromEntries(laneInputs.map((name) => [name, groupInputName(name, j)])));
    this.sha256 = model.sha256;
    this.executionProvider = ep;
    this.graphFromCache = fromCache;
  }

  /**
   * The cost of an extra session run in padded tokens, for splitting a step
   * into two passes (padding-split.ts): the pool sets it from its calibrated
   * curve (CostModel.passOverheadTokens). Ignored where splitting is off.
   */
  setSplitOverheadTokens(tokens: number): void {
    if (Number.isFinite(this.splitOverheadTokens) && Number.isFinite(tokens) && tokens > 0) this.splitOverheadTokens = tokens;
  }

  /** Whether a step's result can be committed after later steps ran: with host keys/values, each result owns its outputs. */
  get keepsStepResults(): boolean {
    return this.kvStore === null;
  }

  /** Whether this runner may run a step as two passes (CPU; never on a GPU). */
  get splitsPasses(): boolean {
    return Number.isFinite(this.splitOverheadTokens);
  }

  static async create(model: LoadedModel, opts: ModelRunnerOptions = {}): Promise<ModelRunner> {
    const envEp = process.env.SSSD_EXECUTION_PROVIDER || undefined;
    if (envEp !== undefined && !isExecutionProvider(envEp)) {
      throw new CliError(`SSSD_EXECUTION_PROVIDER must be ${EXECUTION_PROVIDERS.join(', ')}, not "${envEp}"`);
    }
    const ep = opts.executionProvider ?? envEp ?? 'cpu';
    if (ep === 'cuda' && !cudaProviderInstalled()) {
      throw new CliError(
        'CUDA execution provider requested but not installed: run `ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js` on a machine with CUDA 12',
      );
    }
    const threads = intraOpThreads(opts.threads);
    const maxSequences = opts.maxSequences ?? Infinity;
    if (!(maxSequences >= 1)) throw new RangeError(`maxSequences must be at least 1, not ${opts.maxSequences}`);
    const layout = chooseLayout(ep, opts);
    const graphOptions = { cacheDir: opts.cacheDir, externalDataAboveBytes: opts.externalDataAboveBytes };
    let graph = await loadOrBuildGraph(model, { ...graphOptions, layout });
    const provider = ep === 'webgpu' ? { name: 'webgpu', ...webGpuOptions(process.env.SSSD_WEBGPU_OPTIONS) } : ep;
    let session: InferenceSession;
    let growSession: InferenceSession | null = null;
    let groupedSession: InferenceSession | null = null;
    try {
      const options: InferenceSession.SessionOptions = {
        executionProviders: [provider],
        graphOptimizationLevel: 'all',
        executionMode: 'sequential',
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        // Spinning worker threads burn the cores other processes (edge, tests) need.
        extra: { session: { intra_op: { allow_spinning: '0' } } },
      };
      // Resident keys/values stay where the provider made them; only the logits come back.
      if (layout.residentKv && ep !== 'cpu') options.preferredOutputLocation = { logits: 'cpu', [NEW_KV]: 'gpu-buffer', [KV_STORE_OUT]: 'gpu-buffer' };
      const open = (g: CachedGraph): Promise<InferenceSession> => (g.kind === 'bytes' ? InferenceSession.create(g.bytes, options) : InferenceSession.create(g.file, options));
      // A cached graph damaged on disk (an inline one is checked against its digest as it is read): built again, once.
      const openOrRebuild = async (cached: CachedGraph, forLayout: GraphLayout): Promise<{ graph: CachedGraph; session: InferenceSession }> => {
        try {
          return { graph: cached, session: await open(cached) };
        } catch (err) {
          if (!cached.fromCache || !UNREADABLE_GRAPH.test((err as Error).message)) throw err;
          logLine(`sssd: the cached graph ${cached.file} cannot be read (${(err as Error).message.split('\n')[0].slice(0, 200)}); building it again`);
          const rebuilt = await loadOrBuildGraph(model, { ...graphOptions, layout: forLayout, rebuild: true });
          return { graph: rebuilt, session: await open(rebuilt) };
        }
      };
      ({ graph, session } = await openOrRebuild(graph, layout));
      // A second session holds the weights again: by default only for models small enough to keep them inline.
      const groups = opts.attentionGroups ?? switchFromEnv('SSSD_ATTENTION_GROUPS', process.env.SSSD_ATTENTION_GROUPS) ?? graph.kind === 'bytes';
      if (groups && !layout.residentKv && !layout.packedOutputs) {
        const groupedLayout: GraphLayout = { ...layout, attentionGroups: 2 };
        groupedSession = (await openOrRebuild(await loadOrBuildGraph(model, { ...graphOptions, layout: groupedLayout }), groupedLayout)).session;
      }
      if (layout.residentKv) {
        growSession = await InferenceSession.create(buildKvStoreGrowGraph(model.config), {
          ...options,
          preferredOutputLocation: ep === 'cpu' ? undefined : { [KV_STORE_OUT]: 'gpu-buffer' },
        });
      }
    } catch (err) {
      if (ep === 'cuda') throw new CliError(`cannot start the CUDA execution provider: ${(err as Error).message}`);
      if (ep === 'webgpu') {
        throw new CliError(
          `cannot start the WebGPU execution provider (it needs a GPU with a Vulkan driver: libvulkan.so.1 and the vendor's ICD): ${(err as Error).message}`,
        );
      }
      throw err;
    }
    const keptKvTokens = opts.keptKvTokens ?? (Number.isFinite(maxSequences) ? maxSequences : 64) * model.config.contextLength;
    return new ModelRunner(session, growSession, groupedSession, model, ep, graph.fromCache, opts.splitOverheadTokens ?? (ep === 'cpu' ? 32 : Infinity), layout, maxSequences, keptKvTokens);
  }

  /** A fresh, empty KV cache for one sequence (capacity grows on demand up to the context length). */
  newSequence(capacity = 64): SequenceKvCache {
    const c = this.config;
    const layout = { nLayers: c.nLayers, nKvHeads: c.nKvHeads, headDim: c.headDim, maxCapacity: c.contextLength };
    return new SequenceKvCache(layout, capacity, this.kvStore ? this.kvStore.allocate() : null, this.kvBuffers);
  }

  /** Copies a prefix of one host sequence into an empty one (prefix caching); resident sequences cannot. */
  copyPrefix(from: SequenceKvCache, to: SequenceKvCache, length: number): void {
    to.copyPrefixFrom(from, length);
  }

  /** Slots of the device-side key/value store (resident layout), else 0. */
  get residentSlots(): number {
    return this.kvStore?.capacity ?? 0;
  }

  /** One forward pass for all rows (root first, parents[i] < i); see the file comment for when it is two. */
  async step(rows: StepRows): Promise<StepResult> {
    if (this.busy) throw new Error('ModelRunner.step called while another step is running');
    const B = rows.length;
    if (B === 0) throw new RangeError('ModelRunner.step needs at least one row');
    if (this.lengths.length < B) {
      const n = Math.max(B, 2 * this.lengths.length);
      this.lengths = new Int32Array(n);
      this.pasts = new Int32Array(n);
      this.sorted = new Int32Array(n);
      this.rowPass = new Uint8Array(n);
      this.rowSlot = new Int32Array(n);
      this.members = [new Int32Array(n), new Int32Array(n)];
      this.ordered = [new Int32Array(n), new Int32Array(n)];
    }
    for (let r = 0; r < B; r++) {
      const { cache, row } = rows[r];
      if (cache.isReleased) throw new Error('step on a released KV cache');
      if (row.tokens.length === 0 || row.parents.length !== row.tokens.length) throw new RangeError('step row needs tokens and one parent per token');
      this.lengths[r] = row.tokens.length;
    }
    // Rows longer than the threshold (if any) run in a second pass.
    const threshold = paddingSplitThreshold(this.lengths, B, this.splitOverheadTokens, this.sorted);
    const counts = [0, 0];
    for (let r = 0; r < B; r++) {
      const pass = threshold >= 0 && this.lengths[r] > threshold ? 1 : 0;
      this.rowPass[r] = pass;
      this.rowSlot[r] = counts[pass];
      this.members[pass][counts[pass]++] = r;
    }
    const passes = counts[1] > 0 ? 2 : 1;
    // One pass whose pasts spread wide: two attention groups, lane 0 the short pasts.
    let grouped = false;
    if (passes === 1 && this.groupedSession) {
      for (let r = 0; r < B; r++) this.pasts[r] = rows[r].cache.length;
      const cut = pastGroupThreshold(this.pasts, B, PAST_BUCKET, this.sorted);
      if (cut >= 0) {
        grouped = true;
        counts[0] = 0;
        for (let r = 0; r < B; r++) {
          const group = this.pasts[r] > cut ? 1 : 0;
          this.rowPass[r] = group;
          this.rowSlot[r] = counts[group];
          this.members[group][counts[group]++] = r;
        }
      }
    }
    const lanes = grouped ? 2 : passes;
    // Rows keep their packed-past slots across steps where they can (see assignSlots).
    for (let p = 0; p < lanes; p++) {
      const ordered = this.ordered[p];
      this.lanes[p].assignSlots(rows, this.members[p], counts[p], ordered);
      for (let slot = 0; slot < counts[p]; slot++) {
        this.members[p][slot] = ordered[slot];
        this.rowSlot[ordered[slot]] = slot;
      }
    }
    if (grouped) {
      this.stepCounts.grouped++;
      return this.groupedStep(rows, counts);
    }
    if (passes === 2) this.stepCounts.split++;
    else this.stepCounts.single++;
    const feeds = [];
    for (let p = 0; p < passes; p++) feeds.push(this.lanes[p].prepare(rows, this.members[p], counts[p]));

    const outputs: PassOutput[] = [];
    this.busy = true;
    try {
      for (let p = 0; p < passes; p++) {
        const kvStore = this.kvStore;
        if (kvStore) Object.assign(feeds[p], await kvStore.feeds());
        const out = await this.session.run(feeds[p]);
        const lane = this.lanes[p];
        const nLayers = this.config.nLayers;
        if (kvStore) {
          kvStore.afterPass(out);
          outputs.push({ logits: out.logits.data as Float32Array, newK: [], newV: [], tokensPerRow: lane.tokensPerRow });
        } else if (this.layout.packedOutputs) {
          const data = out[PACKED_OUTPUTS].data as Float32Array;
          const at = packedOutputLayout(this.config, lane.batch, lane.tokensPerRow);
          if (data.length !== at.total) throw new Error(`packed output holds ${data.length} floats, the layout ${at.total}`);
          const perLayer = at.values[0] - at.keys[0];
          outputs.push({
            logits: data.subarray(at.logits, at.keys[0]),
            newK: Array.from({ length: nLayers }, (_, l) => data.subarray(at.keys[l], at.keys[l] + perLayer)),
            newV: Array.from({ length: nLayers }, (_, l) => data.subarray(at.values[l], at.values[l] + perLayer)),
            tokensPerRow: lane.tokensPerRow,
          });
        } else {
          outputs.push({
            logits: out.logits.data as Float32Array,
            newK: Array.from({ length: nLayers }, (_, l) => out[newKeyName(l)].data as Float32Array),
            newV: Array.from({ length: nLayers }, (_, l) => out[newValueName(l)].data as Float32Array),
            tokensPerRow: lane.tokensPerRow,
          });
        }
      }
    } finally {
      this.busy = false;
    }
    // Copies: the scratch arrays are reused by the next step, the result may outlive it.
    return this.result(rows, outputs, this.rowPass.slice(0, B), this.rowSlot.slice(0, B));
  }

  /** One pass over both lanes' rows (lane 0's first), each lane attending over its own past. */
  private async groupedStep(rows: StepRows, counts: number[]): Promise<StepResult> {
    const B = rows.length;
    let T = 0;
    for (let r = 0; r < B; r++) T = Math.max(T, this.lengths[r]);
    const feeds: Record<string, Tensor> = {};
    for (let j = 0; j < 2; j++) {
      const laneFeeds = this.lanes[j].prepare(rows, this.members[j], counts[j], T);
      const names = this.groupNames[j];
      for (const name in laneFeeds) feeds[names[name]] = laneFeeds[name];
    }
    this.groupRows[0] = BigInt(counts[0]);
    this.groupRows[1] = BigInt(counts[1]);
    feeds[GROUP_ROWS] = new Tensor('int64', this.groupRows, [2]);
    let out: InferenceSession.OnnxValueMapType;
    this.busy = true;
    try {
      out = await this.groupedSession!.run(feeds);
    } finally {
      this.busy = false;
    }
    // The outputs hold lane 0's rows, then lane 1's: one pass, slots counted across both.
    const rowPass = new Uint8Array(B);
    const rowSlot = this.rowSlot.slice(0, B);
    for (let r = 0; r < B; r++) if (this.rowPass[r] === 1) rowSlot[r] += counts[0];
    const nLayers = this.config.nLayers;
    const output: PassOutput = {
      logits: out.logits.data as Float32Array,
      newK: Array.from({ length: nLayers }, (_, l) => out[newKeyName(l)].data as Float32Array),
      newV: Array.from({ length: nLayers }, (_, l) => out[newValueName(l)].data as Float32Array),
      tokensPerRow: T,
    };
    return this.result(rows, [output], rowPass, rowSlot, 2);
  }

  private result(rows: StepRows, outputs: PassOutput[], rowPass: Uint8Array, rowSlot: Int32Array, attentionGroups = 1): StepResult {
    const { nLayers, nKvHeads, headDim: hd, vocabSize } = this.config;
    const B = rows.length;
    const kvStore = this.kvStore;
    const pass = kvStore ? kvStore.passNumber : 0;
    // A resident commit lands in the next pass's inputs: one made while that pass runs would be lost.
    const running = (): boolean => this.busy;
    const logitsOffset = (rowIndex: number, tokenIndex: number): number => {
      if (!(rowIndex >= 0 && rowIndex < B) || !(tokenIndex >= 0 && tokenIndex < rows[rowIndex].row.tokens.length)) {
        throw new RangeError(`no logits for row ${rowIndex} token ${tokenIndex}`);
      }
      return (rowSlot[rowIndex] * outputs[rowPass[rowIndex]].tokensPerRow + tokenIndex) * vocabSize;
    };
    return {
      batch: B,
      passes: outputs.length,
      attentionGroups,
      logitsOffset,
      logitsArray: (rowIndex: number) => outputs[rowPass[rowIndex]].logits,
      logitsAt(rowIndex: number, tokenIndex: number): Float32Array {
        const at = logitsOffset(rowIndex, tokenIndex);
        return outputs[rowPass[rowIndex]].logits.subarray(at, at + vocabSize);
      },
      commit(rowIndex: number, tokenIndices: ArrayLike<number>): void {
        const cache = rows[rowIndex].cache;
        const count = tokenIndices.length;
        const n = rows[rowIndex].row.tokens.length;
        for (let j = 0; j < count; j++) {
          const idx = tokenIndices[j];
          if (!(idx >= 0 && idx < n)) throw new RangeError(`commit: token index ${idx} outside row ${rowIndex}`);
        }
        const { newK, newV, tokensPerRow: T } = outputs[rowPass[rowIndex]];
        const slot = rowSlot[rowIndex];
        const start = cache.length;
        if (kvStore) {
          if (running()) throw new Error('commit while the next step is running (resident keys/values)');
          if (start + count > cache.capacity) throw new RangeError(`KV cache: ${start + count} positions exceed the context length ${cache.capacity}`);
          for (let j = 0; j < count; j++) kvStore.commit(pass, slot, B, T, cache.residentSlot, tokenIndices[j], start + j);
          cache.advance(count);
          return;
        }
        cache.reserve(start + count);
        const cap = cache.capacity;
        const keys = cache.keys;
        const values = cache.values;
        for (let l = 0; l < nLayers; l++) {
          const k = newK[l];
          const v = newV[l];
          for (let h = 0; h < nKvHeads; h++) {
            const srcBase = (slot * nKvHeads + h) * T;
            const dstBase = (l * nKvHeads + h) * cap + start;
            for (let j = 0; j < count; j++) {
              const src = (srcBase + tokenIndices[j]) * hd;
              const dst = (dstBase + j) * hd;
              for (let d = 0; d < hd; d++) {
                keys[dst + d] = k[src + d];
                values[dst + d] = v[src + d];
              }
            }
          }
        }
        cache.advance(count);
      },
    };
  }

  async dispose(): Promise<void> {
    this.kvStore?.dispose();
    await this.groupedSession?.release();
    await this.growSession?.release();
    await this.session.release();
  }
}
