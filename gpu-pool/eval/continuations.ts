/**
 * True continuations of a workload's prompts, computed once with the
 * runtime's batched `generate` and cached on disk under .cache/eval/, keyed by
 * the model's sha256, the tokenizer's, the workload's contents, the
 * max-tokens policy and the sampling mode. Greedy by default; a job with
 * `sampling` is sampled with its seed exactly as the pool samples it (the
 * same position-tied noise), so it is the pool's output for that request
 * whatever the method.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SingleBar, Presets } from 'cli-progress';
import { generate } from '../runtime/generate';
import type { ModelRunner } from '../runtime/model-runner';

export interface ContinuationJob {
  promptIds: number[];
  maxTokens: number;
  /** Sample (temperature > 0) with this seed instead of greedy decoding. */
  sampling?: { temperature: number; topP: number; seed: number };
}

export interface ContinuationCacheKey {
  modelSha256: string;
  tokenizerSha256: string;
  workloadText: string;
  /** 'per-request' or a fixed number. */
  maxTokens: string;
  /** 'greedy' (the default, and the only mode of older cache files) or 'as-served'. */
  sampling?: string;
}

export function continuationCacheFile(cacheDir: string, key: ContinuationCacheKey): string {
  const h = createHash('sha256')
    .update(`model:${key.modelSha256}\ntokenizer:${key.tokenizerSha256}\nmax:${key.maxTokens}\n`)
    .update(key.sampling && key.sampling !== 'greedy' ? `sampling:${key.sampling}\n` : '')
    .update(key.workloadText)
    .digest('hex')
    .slice(0, 24);
  return path.join(cacheDir, `continuations-${h}.json`);
}

export async function readCachedContinuations(file: string, jobs: ContinuationJob[]): Promise<number[][] | null> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as { continuations?: unknown };
    const c = parsed.continuations;
    if (!Array.isArray(c) || c.length !== jobs.length) return null;
    if (!c.every((x) => Array.isArray(x) && x.every((t) => Number.isInteger(t)))) return null;
    return c as number[][];
  } catch {
    return null;
  }
}

/** Greedy continuations, batchSize requests per generate call, with a progress bar on stderr. */
export async function computeContinuations(runner: ModelRunner, jobs: ContinuationJob[], opts: { batchSize?: number; progress?: boolean } = {}): Promise<number[][]> {
  const batchSize = Math.max(1, opts.batchSize ?? 32);
  const ctx = runner.config.contextLength;
  const clipped = jobs.map((j) => ({ promptIds: j.promptIds.slice(0, ctx), maxTokens: Math.max(1, Math.min(j.maxTokens, ctx - Math.min(ctx, j.promptIds.length) || 1)), sampling: j.sampling }));
  const total = clipped.reduce((s, j) => s + j.maxTokens, 0);
  const bar = opts.progress === false ? null : new SingleBar({ format: 'continuations [{bar}] {value}/{total} tokens | {eta_formatted} left', stream: process.stderr }, Presets.shades_classic);
  bar?.start(total, 0);
  const out: number[][] = [];
  let done = 0;
  try {
    for (let i = 0; i < clipped.length; i += batchSize) {
      const batch = clipped.slice(i, i + batchSize);
      const results = await generate(
        runner,
        batch.map((j) =>
          j.sampling
            ? { promptIds: j.promptIds, maxTokens: j.maxTokens, temperature: j.sampling.temperature, topP: j.sampling.topP, seed: j.sampling.seed }
            : { promptIds: j.promptIds, maxTokens: j.maxTokens, temperature: 0 },
        ),
        { onToken: () => bar?.update(++done) },
      );
      // Requests that stop early leave their unused budget: move the bar on.
      done = clipped.slice(0, i + batch.length).reduce((s, j) => s + j.maxTokens, 0);
      bar?.update(done);
      for (const r of results) out.push(r.outputIds);
    }
  } finally {
    bar?.stop();
  }
  return out;
}

export async function writeCachedContinuations(file: string, continuations: number[][]): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify({ version: 1, continuations }));
  await rename(tmp, file);
}
