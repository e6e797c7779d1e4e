/**
 * Start-up calibration: time the real runner on a small grid of batch shapes
 * (rows × tokens per row, plus uneven batches with one long row), fit the
 * CostModel, and cache the samples per model sha + machine (CPU model, cores,
 * execution provider) + graph and onnxruntime version in `.cache/calibration/`,
 * so a restart costs nothing and a new graph or onnxruntime measures again.
 * The file says when it was measured and how loaded the host was then: a
 * curve measured beside busy processes (a new pool started next to an old
 * one in an upgrade) is ~50% too dear (review h191): the pool's log says
 * both at each start, and a start on a quiet host measures such a curve again.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { spanText } from '../../shared/span-text';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { graphId, SEPARATE_OUTPUTS, type GraphLayout } from '../graph/llama-graph';
import type { BatchRunner, RunnerSequence } from '../scheduler/batch-runner';
import type { StepRow } from '../runtime/step-types';
import { CostModel, type CostSample } from './cost-model';

const GRID_VERSION = 2;
const ROWS = [1, 4, 16, 64];
const TOKENS = [1, 4, 16, 48];
/** Cached context the calibration sequences hold (attention has a past to read), capped by the model's context. */
const PASTS = [32, 256];
/** Repetitions per shape; the minimum is kept (the machine's cost without other processes' noise). */
const REPS = 5;

export interface CalibrationOptions {
  modelSha256: string;
  executionProvider: string;
  /** The runner's graph layout (a GPU provider's pass costs differently in each); default separate outputs. */
  layout?: GraphLayout;
  /** onnxruntime's intra-op threads the runner runs with (default 1): a pass on 2 costs differently from one on 1. */
  threads?: number;
  cacheDir?: string;
  /** Ignore the cache and measure again. */
  refresh?: boolean;
  /** Cap on rows·tokens of one measured step (keeps small machines quick). */
  maxBatchTokens?: number;
  /** The host's load now (default: the operating system's 1-minute average); a test gives its own. */
  hostLoad?: () => HostLoad | null;
}

/** A host's 1-minute load average and its cores. */
export interface HostLoad {
  average: number;
  cores: number;
}

export interface Calibration {
  model: CostModel;
  samples: CostSample[];
  fromCache: boolean;
  file: string;
  /** When the samples were measured (a file from before this was recorded: its modification time; null: unknown). */
  measuredAt: Date | null;
  /** The host's 1-minute load average as the measurement began, and its cores (null: not recorded, or no load average here). */
  load: HostLoad | null;
  /** Why the measurement could not be kept (a read-only cache folder): measured again at the next start. */
  notCached?: string;
  /** A cached curve measured on a busy host that this start measured again, the host being quiet now: the load it had. */
  replacedBusy?: HostLoad;
}

/** onnxruntime-node's installed version ('unknown' if its package.json cannot be read): its kernels set the costs. */
function onnxruntimeVersion(): string {
  try {
    const pkg = createRequire(import.meta.url)('onnxruntime-node/package.json') as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * Keys the calibration file: machine, execution provider, grid, graph version
 * and layout, onnxruntime version (a different graph costs differently), and
 * intra-op threads other than the default 1 (so files measured with 1 keep
 * their names).
 */
function machineKey(executionProvider: string, layout: GraphLayout = SEPARATE_OUTPUTS, threads = 1): string {
  const cpus = os.cpus();
  const id = `${cpus[0]?.model ?? 'cpu'}|${cpus.length}|${os.arch()}|${executionProvider}|v${GRID_VERSION}|${graphId(layout)}|ort${onnxruntimeVersion()}${threads === 1 ? '' : `|t${threads}`}`;
  return createHash('sha256').update(id).digest('hex').slice(0, 16);
}

/**
 * A measured step as the cache holds it: counts of at least one (a past of
 * 0 or more) and a time above 0. A file of anything else (hand-edited, or
 * another program's) fitted a curve of NaN or free passes, which kept
 * speculation off, or made every tree look free, at every start.
 */
function isCostSample(s: unknown): s is CostSample {
  if (typeof s !== 'object' || s === null) return false;
  const { rows, maxTokens, totalTokens, maxPast, ms } = s as Record<string, unknown>;
  const count = (v: unknown, min: number): boolean => typeof v === 'number' && Number.isInteger(v) && v >= min;
  return count(rows, 1) && count(maxTokens, 1) && count(totalTokens, 1) && count(maxPast, 0) && typeof ms === 'number' && Number.isFinite(ms) && ms > 0;
}

/** The cache file: the samples, when they were measured, and the host's load then. A bare array is a file from before those. */
interface CalibrationFile {
  measuredAt: string;
  load: HostLoad | null;
  samples: CostSample[];
}

/** The host's 1-minute load average and cores, where the platform keeps one (Windows reports 0s: none). */
function hostLoad(): HostLoad | null {
  const [average] = os.loadavg();
  return os.platform() === 'win32' || !Number.isFinite(average) ? null : { average: Math.round(average * 100) / 100, cores: os.cpus().length };
}

/** A cache file's samples, when they were measured and at what load; null where it holds no usable samples. */
function readCalibrationFile(text: string, modifiedAt: Date): Omit<CalibrationFile, 'measuredAt'> & { measuredAt: Date | null } | null {
  const parsed: unknown = JSON.parse(text);
  if (Array.isArray(parsed)) return { samples: parsed as CostSample[], measuredAt: modifiedAt, load: null };
  if (typeof parsed !== 'object' || parsed === null) return null;
  const { samples, measuredAt, load } = parsed as Partial<Record<keyof CalibrationFile, unknown>>;
  if (!Array.isArray(samples)) return null;
  const at = typeof measuredAt === 'string' ? new Date(measuredAt) : null;
  const loadOk = typeof load === 'object' && load !== null && Number.isFinite((load as { average?: unknown }).average) && Number.isInteger((load as { cores?: unknown }).cores);
  return { samples: samples as CostSample[], measuredAt: at && !Number.isNaN(at.getTime()) ? at : modifiedAt, load: loadOk ? (load as CalibrationFile['load']) : null };
}

/**
 * How the pool's log says where a calibration came from, beside its fitted
 * figures: its age and the load it was measured at for a cached one, the
 * time it took and the load for a fresh one; and, where that load was at
 * least one a core, that the curve is likely too dear.
 */
export function describeCalibration(cal: Calibration, tookMs: number | null, now = Date.now()): string {
  const loadText = (load: HostLoad): string => `load ${load.average.toFixed(2)} on ${load.cores} cores`;
  const at = cal.load ? ` at ${loadText(cal.load)}` : '';
  const replaced = cal.replacedBusy ? ` (the cached curve was measured at ${loadText(cal.replacedBusy)}, too dear; the host is quiet now)` : '';
  if (!cal.fromCache) return `calibrated in ${((tookMs ?? 0) / 1000).toFixed(1)} s${at}${replaced}`;
  const age = cal.measuredAt === null ? 'of unknown age' : `measured ${spanText(now - cal.measuredAt.getTime())} ago`;
  const busy = wasBusy(cal.load) ? '; the host was busy then, so the costs may be too high: it is measured again at a start on a quiet host, or --recalibrate' : '';
  return `calibration cached, ${age}${at}${busy}`;
}

/** Measured at a load of a core or more each: other processes' passes shared the cores, so the curve is too dear. */
function wasBusy(load: HostLoad | null): load is HostLoad {
  return load !== null && load.average >= load.cores;
}

/**
 * Whether a cached curve measured on a busy host is measured again at this
 * start: only where the host is quiet now (under half a core each), so a
 * pool restarted beside the same busy neighbours keeps its start quick, and
 * one restarted on a quiet host stops paying for a busy hour at every start.
 */
export function remeasuresBusyCurve(cachedAt: HostLoad | null, now: HostLoad | null): boolean {
  return wasBusy(cachedAt) && now !== null && now.average < now.cores / 2;
}

export async function calibrate<S extends RunnerSequence>(
  runner: BatchRunner<S>,
  opts: CalibrationOptions,
): Promise<Calibration> {
  const dir = opts.cacheDir ?? path.resolve('.cache', 'calibration');
  const loadNow = opts.hostLoad ?? hostLoad;
  let replacedBusy: HostLoad | undefined;
  const file = path.join(dir, `${opts.modelSha256.slice(0, 16)}-${machineKey(opts.executionProvider, opts.layout, opts.threads)}.json`);
  if (!opts.refresh) {
    try {
      const cached = readCalibrationFile(await readFile(file, 'utf8'), (await stat(file)).mtime);
      const samples: unknown[] = cached?.samples ?? [];
      if (cached && samples.length >= 4 && samples.every(isCostSample)) {
        const model = CostModel.fit(cached.samples);
        // A file of samples that fit nothing (all at one shape) is measured again too.
        if (!Object.values(model.coefficients).every(Number.isFinite)) {
          // measured again below
        } else if (remeasuresBusyCurve(cached.load, loadNow())) {
          replacedBusy = cached.load ?? undefined;
        } else {
          return { model, samples: cached.samples, fromCache: true, file, measuredAt: cached.measuredAt, load: cached.load };
        }
      }
    } catch {
      // no cache yet (or unreadable): measure
    }
  }
  const samples: CostSample[] = [];
  // Before the pool's own passes weigh in: the load of everything else on the host.
  const load = loadNow();
  const measuredAt = new Date();
  const ctx = runner.config.contextLength;
  for (const past of new Set(PASTS.map((p) => Math.min(p, Math.max(1, ctx - 64))))) {
    samples.push(...(await measureGrid(runner, past, opts.maxBatchTokens ?? 1024)));
  }
  const calibration: Calibration = { model: CostModel.fit(samples), samples, fromCache: false, file, measuredAt, load, ...(replacedBusy ? { replacedBusy } : {}) };
  try {
    await mkdir(dir, { recursive: true });
    const kept: CalibrationFile = { measuredAt: measuredAt.toISOString(), load, samples };
    await writeFile(file, JSON.stringify(kept, null, 1));
  } catch (err) {
    // The costs are measured: a service account's read-only folder costs the next start a measurement, not this one its start.
    calibration.notCached = (err as Error).message;
  }
  return calibration;
}

async function measureGrid<S extends RunnerSequence>(runner: BatchRunner<S>, past: number, maxBatchTokens: number): Promise<CostSample[]> {
  const vocab = runner.config.vocabSize;
  const maxRows = Math.max(...ROWS);
  const seqs: S[] = [];
  try {
    // Give every sequence `past` cached tokens (prefill steps, committed).
    const prefill: StepRow = chainRow(past, vocab, 0);
    for (let i = 0; i < maxRows; i++) seqs.push(runner.newSequence(runner.config.contextLength));
    for (let start = 0; start < maxRows; start += 16) {
      const part = seqs.slice(start, start + 16);
      const result = await runner.step(part.map((cache) => ({ cache, row: prefill })));
      const all = Int32Array.from({ length: past }, (_, i) => i);
      part.forEach((_, r) => result.commit(r, all));
    }
    const shapes: { rows: number; lengths: number[] }[] = [];
    for (const b of ROWS) {
      for (const t of TOKENS) {
        if (b * t > maxBatchTokens) continue;
        shapes.push({ rows: b, lengths: new Array<number>(b).fill(t) });
        // Uneven batch: one long row among decode rows (a prefill joining).
        if (b > 1 && t > 1) shapes.push({ rows: b, lengths: [t, ...new Array<number>(b - 1).fill(1)] });
      }
    }
    const samples: CostSample[] = [];
    for (const shape of shapes) {
      const batch = shape.lengths.map((t, r) => ({ cache: seqs[r], row: treeRow(t, vocab, r) }));
      await runner.step(batch); // warm-up (graph/session shapes)
      let best = Infinity;
      for (let rep = 0; rep < REPS; rep++) {
        const t0 = performance.now();
        await runner.step(batch);
        best = Math.min(best, performance.now() - t0);
      }
      samples.push({
        rows: shape.rows,
        maxTokens: Math.max(...shape.lengths),
        totalTokens: shape.lengths.reduce((a, b) => a + b, 0),
        maxPast: past,
        ms: best,
      });
    }
    return samples;
  } finally {
    for (const s of seqs) s.release();
  }
}

function chainRow(n: number, vocab: number, salt: number): StepRow {
  const tokens = new Int32Array(n);
  const parents = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    tokens[i] = (i * 7 + salt * 13 + 3) % vocab;
    parents[i] = i - 1;
  }
  return { tokens, parents };
}

/** A bushy tree (binary-ish) like the drafts: node i hangs under (i-1)/2. */
function treeRow(n: number, vocab: number, salt: number): StepRow {
  const tokens = new Int32Array(n);
  const parents = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    tokens[i] = (i * 11 + salt * 5 + 7) % vocab;
    parents[i] = i === 0 ? -1 : (i - 1) >> 1;
  }
  return { tokens, parents };
}
