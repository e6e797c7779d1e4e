// Starts the real stack (pool process + wrangler dev with a fresh local KV) for
// one test file, and runs `sssd generate` for reference outputs.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { putLocalKvEntries } from '../support/local-kv';
import { sssdNodeArgs } from '../support/compiled-cli';
import { repoRoot, sha256Hex, startStack, type RunningStack } from '../../launcher/stack';
import { models } from '../support/shared-data';

export interface TestStack extends RunningStack {
  /** The folder the edge keeps its local KV in (wrangler's --persist-to): where `sssd key … --local --persist-to` reaches it. */
  persistTo: string;
  dispose(): Promise<void>;
}

export interface TestStackOptions {
  vars?: Record<string, string>;
  /** API keys provisioned in local KV before the edge starts: plaintext → record (a string is stored as it is). */
  kvKeys?: Record<string, object | string>;
}

export async function startTestStack(opts: TestStackOptions = {}): Promise<TestStack> {
  const persistTo = mkdtempSync(path.join(tmpdir(), 'sssd-e2e-kv-'));
  const kvKeys = Object.entries(opts.kvKeys ?? {});
  if (kvKeys.length > 0) {
    await putLocalKvEntries(Object.fromEntries(kvKeys.map(([key, record]) => [`key:${sha256Hex(key)}`, typeof record === 'string' ? record : JSON.stringify(record)])), persistTo);
  }
  const stack = await startStack({
    model: models.stories260K.checkpoint,
    tokenizer: models.stories260K.tokenizer,
    devKey: 'e2e-dev-key',
    persistTo,
    vars: opts.vars,
    echo: process.env.SSSD_E2E_VERBOSE ? (line) => process.stderr.write(`${line}\n`) : undefined,
  });
  return {
    ...stack,
    persistTo,
    async dispose() {
      await stack.stop();
      rmSync(persistTo, { recursive: true, force: true });
    },
  };
}

/** The URL a pool started on `port` of this machine serves at (startPool's): for an edge or a proxy set up before it answers. */
export function poolUrlOn(port: number): string {
  return `http://127.0.0.1:${port}`;
}

export interface GenerateOutput {
  prompt_ids: number[];
  output_ids: number[];
  text: string;
  finish_reason: string;
}

/** Greedy reference from `sssd generate --json` (engineer A's plain decoder). */
export async function referenceGenerate(prompt: string, maxTokens: number): Promise<GenerateOutput> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      // bin/sssd.mjs as compiled once for the run (compiled-cli.ts): the e2e files' references without tsx's start.
      ...sssdNodeArgs(), 'generate',
      '--model', models.stories260K.checkpoint,
      '--tokenizer', models.stories260K.tokenizer,
      '--prompt', prompt,
      '--max-tokens', String(maxTokens),
      '--temperature', '0',
      '--json',
    ],
    { cwd: repoRoot },
  );
  return JSON.parse(stdout) as GenerateOutput;
}

/** Stops what a test started: a test stack (dispose), an edge (stop), a pool (service.stop), a browser (close); anything else is left. */
function stopStarted(value: unknown): Promise<unknown> {
  const v = value as Partial<Record<'dispose' | 'stop' | 'close', () => Promise<void>>> & { service?: { stop(): Promise<void> } };
  if (v?.dispose) return v.dispose();
  if (v?.stop) return v.stop();
  if (v?.service) return v.service.stop();
  if (v?.close) return v.close();
  return Promise.resolve();
}

/**
 * Promise.all for starting services side by side, except that when one start
 * fails the others that started are stopped before the error is thrown:
 * Promise.all would leave them running (and loading the machine) for the rest
 * of the suite, since the test never gets their handles to stop.
 */
export async function startAll<T extends readonly unknown[]>(starts: { readonly [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(starts as readonly Promise<unknown>[]);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (!failed) return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as unknown as T;
  await Promise.allSettled(settled.map((s) => (s.status === 'fulfilled' ? stopStarted(s.value) : undefined)));
  throw failed.reason;
}
