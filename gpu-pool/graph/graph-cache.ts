/**
 * The serialised graph on disk, keyed by checkpoint sha256, GRAPH_VERSION and
 * output layout (graphKey), so a second start skips the build. Default
 * directory: `.cache/graphs` under the repository, or $SSSD_CACHE_DIR/graphs.
 *
 * Graphs whose weights exceed `externalDataAboveBytes` (default 1 GiB; the
 * protobuf itself cannot pass 2 GiB) keep their weights in `<key>.onnx.data`
 * beside the `.onnx` and are opened by path; the weights are streamed to that
 * file tensor by tensor, so the build never holds a second full copy.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadedModel } from '../model/load-model';
import { ModelLoadError } from '../model/model-load-error';
import { buildLlamaGraph, graphKey, graphWeightBytes, SEPARATE_OUTPUTS, type GraphLayout } from './llama-graph';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEFAULT_EXTERNAL_ABOVE = 1 << 30;

/** Where the pool keeps what it builds once per model and machine: $SSSD_CACHE_DIR, else `.cache` in the repository. */
export function poolCacheDir(): string {
  // Empty is unset, as for the other variables (it was the current folder).
  const given = process.env.SSSD_CACHE_DIR;
  return given ? path.resolve(given) : path.join(repoRoot, '.cache');
}

export function defaultGraphCacheDir(): string {
  return path.join(poolCacheDir(), 'graphs');
}

/** A graph to open: in memory, or (external weights) by file path. */
export type CachedGraph =
  | { kind: 'bytes'; bytes: Uint8Array; file: string; fromCache: boolean }
  | { kind: 'file'; file: string; fromCache: boolean };

export interface GraphCacheOptions {
  cacheDir?: string;
  externalDataAboveBytes?: number;
  /** Output layout (default: separate outputs). */
  layout?: GraphLayout;
  /** Build it again whatever the cache holds (a cached file that could not be opened). */
  rebuild?: boolean;
}

/** The SHA-256 (hex) of an inline graph, kept beside it (`<key>.onnx.sha256`): a file damaged on disk but still parseable served wrong outputs. */
function digestOf(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export async function loadOrBuildGraph(model: LoadedModel, opts: GraphCacheOptions = {}): Promise<CachedGraph> {
  const cacheDir = opts.cacheDir ?? defaultGraphCacheDir();
  const layout = opts.layout ?? SEPARATE_OUTPUTS;
  const key = graphKey(model.sha256, layout);
  const file = path.join(cacheDir, `${key}.onnx`);
  const dataName = `${key}.onnx.data`;
  const dataFile = path.join(cacheDir, dataName);
  const external = graphWeightBytes(model.config) > (opts.externalDataAboveBytes ?? DEFAULT_EXTERNAL_ABOVE);

  const digestFile = `${file}.sha256`;
  if (!opts.rebuild && existsSync(file) && (!external || existsSync(dataFile))) {
    if (external) return { kind: 'file', file, fromCache: true };
    const bytes = new Uint8Array(await readFile(file));
    const recorded = await readFile(digestFile, 'utf8').catch(() => null);
    // A graph without its digest (written before digests were kept), or that no longer matches it, is built again.
    if (recorded !== null && recorded.trim() === digestOf(bytes)) return { kind: 'bytes', bytes, file, fromCache: true };
  }
  // Write then rename: concurrent starts never read a half-written file.
  const tmpSuffix = `.${process.pid}.${Date.now()}.tmp`;
  if (!external) {
    const bytes = buildLlamaGraph(model.config, model.weights, null, layout);
    try {
      await mkdir(cacheDir, { recursive: true });
      await writeFile(file + tmpSuffix, bytes);
      await writeFile(digestFile + tmpSuffix, `${digestOf(bytes)}\n`);
      // The digest last: a crash between the renames leaves a graph that is built again, never one trusted unchecked.
      await rename(file + tmpSuffix, file);
      await rename(digestFile + tmpSuffix, digestFile);
    } catch {
      // A read-only cache directory only costs a rebuild next time.
    }
    return { kind: 'bytes', bytes, file, fromCache: false };
  }
  try {
    await mkdir(cacheDir, { recursive: true });
  } catch {
    throw new ModelLoadError(`graph cache directory ${cacheDir} is not writable (large models keep their graph weights there; set SSSD_CACHE_DIR)`);
  }
  const fd = openSync(dataFile + tmpSuffix, 'w');
  let bytes: Uint8Array;
  try {
    bytes = buildLlamaGraph(model.config, model.weights, { fd, location: dataName, minBytes: 64 * 1024 }, layout);
  } catch (err) {
    await rm(dataFile + tmpSuffix, { force: true });
    throw err;
  } finally {
    closeSync(fd);
  }
  await rename(dataFile + tmpSuffix, dataFile);
  await writeFile(file + tmpSuffix, bytes);
  await rename(file + tmpSuffix, file);
  return { kind: 'file', file, fromCache: false };
}
