/**
 * `sssd bench-decode`: plain autoregressive decode throughput of the model
 * runtime (one token per sequence per step, the baseline speculation must
 * beat), at several batch sizes. Prints one line per batch size, or one JSON
 * object with --json.
 *
 * --accepted 0,3,7 adds the ceiling of speculation on this runtime: every row
 * feeds its next token plus k draft tokens per step and all of them are
 * accepted (perfect drafts, drafting itself free). Tokens/s at k over tokens/s
 * at 0 is the most any drafter can gain at that batch size here; the rows run
 * through the same past lengths whatever k is.
 */
import os from 'node:os';
import type { Command } from 'commander';
import { loadModel } from '../model/load-model';
import { ModelRunner, intraOpThreads } from '../runtime/model-runner';
import { argmax } from '../runtime/sampling';
import { CliError } from './cli-error';
import { exitQuietlyOnBrokenPipe, parseExecutionProvider } from './generate-command';
import { parseNumberList, parseNumberFlag } from './number-flags';

interface BenchFlags {
  model: string;
  batch: string;
  tokens: string;
  prompt: string;
  accepted: string;
  rounds: string;
  threads?: string;
  executionProvider?: string;
  json?: boolean;
}

export interface DecodeBenchRow {
  batch: number;
  /** Draft tokens per row per step, all accepted (0 = plain decoding). */
  accepted: number;
  steps: number;
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
  msPerStep: number;
}

export function register(program: Command): void {
  program
    .command('bench-decode')
    .description('measure autoregressive decode tokens/s of the model runtime at several batch sizes')
    .requiredOption('--model <path>', 'checkpoint: llama2.c .bin file or Hugging Face directory')
    .option('--batch <list>', 'comma-separated batch sizes', '1,8,32')
    .option('--tokens <n>', 'decode steps per batch size (after a prefill)', '128')
    .option('--prompt <n>', 'prompt length in tokens (prefilled, not timed)', '16')
    .option('--accepted <list>', 'draft tokens per row per step, all accepted: the ceiling of speculation (e.g. 0,3,7)', '0')
    .option('--rounds <n>', 'measure each figure this many times, from fresh sequences, and report the median', '3')
    .option('--threads <n>', 'onnxruntime intra-op threads (default $SSSD_THREADS or 1)')
    .option('--execution-provider <name>', 'cpu, cuda or webgpu (default cpu, or $SSSD_EXECUTION_PROVIDER)')
    .option('--json', 'print one JSON object')
    .action(async (flags: BenchFlags) => {
      exitQuietlyOnBrokenPipe();
      await runBench(flags);
    });
}

async function runBench(flags: BenchFlags): Promise<void> {
  const batches = parseNumberList('--batch', flags.batch, { integer: true, min: 1, max: 4096 });
  const steps = parseNumberFlag('--tokens', flags.tokens, { integer: true, min: 2 })!; // the first step is a warm-up
  const acceptedList = parseNumberList('--accepted', flags.accepted, { integer: true, min: 0, max: 255 });
  const rounds = parseNumberFlag('--rounds', flags.rounds, { integer: true, min: 1, max: 100 })!;
  const promptLength = parseNumberFlag('--prompt', flags.prompt, { integer: true, min: 1 })!;
  const threads = parseNumberFlag('--threads', flags.threads, { integer: true, min: 1, max: 256 });
  const executionProvider = parseExecutionProvider(flags.executionProvider);
  const model = await loadModel(flags.model);
  const { contextLength, vocabSize } = model.config;
  if (promptLength + steps > contextLength) {
    throw new CliError(`--prompt ${promptLength} + --tokens ${steps} exceed the model's context of ${contextLength}`);
  }
  // With k accepted a step, the positions fed are the prompt's and (timed steps + the warm-up) × (k + 1): rounded up to whole steps.
  for (const accepted of acceptedList) {
    const positions = promptLength + positionsFed(steps, accepted);
    if (positions > contextLength) {
      throw new CliError(`--prompt ${promptLength} + --tokens ${steps} with --accepted ${accepted} feed ${positions} positions, past the model's context of ${contextLength}`);
    }
  }
  const runner = await ModelRunner.create(model, { executionProvider, threads });
  const rows: DecodeBenchRow[] = [];
  for (const batch of batches) {
    let plain: DecodeBenchRow | undefined;
    for (const accepted of acceptedList) {
      const r = await medianOfRounds(rounds, () => benchBatch(runner, batch, steps, promptLength, vocabSize, accepted));
      rows.push(r);
      if (accepted === 0) plain = r;
      if (!flags.json) {
        const spec = acceptedList.length > 1 || accepted > 0 ? ` +${String(accepted).padEnd(3)} accepted` : '';
        const ceiling = accepted > 0 && plain ? `  ${(r.tokensPerSecond / plain.tokensPerSecond).toFixed(2)}x plain` : '';
        process.stdout.write(
          `batch ${String(batch).padStart(4)}${spec}: ${r.tokensPerSecond.toFixed(0).padStart(8)} tok/s  ${r.msPerStep.toFixed(2).padStart(7)} ms/step  (${r.steps} steps)${ceiling}\n`,
        );
      }
    }
  }
  await runner.dispose();
  const device = runner.executionProvider === 'cpu' ? `cpu (${os.cpus()[0]?.model ?? 'unknown'}, ${intraOpThreads(threads)} thread(s))` : runner.executionProvider;
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ model: model.config.name, sha256: model.sha256, device, results: rows })}\n`);
  } else {
    process.stdout.write(`model ${model.config.name} on ${device}\n`);
  }
}

/** The round with the median time per step (a short figure on a shared machine jumps by ±30% between rounds). */
async function medianOfRounds(rounds: number, run: () => Promise<DecodeBenchRow>): Promise<DecodeBenchRow> {
  const all: DecodeBenchRow[] = [];
  for (let i = 0; i < rounds; i++) all.push(await run());
  all.sort((a, b) => a.msPerStep - b.msPerStep);
  return all[(all.length - 1) >> 1];
}

/**
 * `batch` sequences: prefill a prompt, one warm-up step, then timed greedy
 * steps until each row has emitted `steps` tokens. With `accepted` > 0 a row
 * feeds its next token and `accepted` more per step and keeps them all (their
 * values do not change the work, only their number does).
 */
/** Positions past the prompt that benchBatch feeds a row: the warm-up step and the timed ones, `accepted` + 1 tokens each. */
function positionsFed(steps: number, accepted: number): number {
  const perStep = 1 + accepted;
  return (Math.max(1, Math.ceil((steps - 1) / perStep)) + 1) * perStep;
}

async function benchBatch(runner: ModelRunner, batch: number, steps: number, promptLength: number, vocabSize: number, accepted = 0): Promise<DecodeBenchRow> {
  const perStep = 1 + accepted;
  const timedSteps = Math.max(1, Math.ceil((steps - 1) / perStep));
  const caches = Array.from({ length: batch }, () => runner.newSequence(promptLength + (timedSteps + 1) * perStep + 2));
  // Different prompts per sequence, so rows do not all decode the same text.
  const prompts = caches.map((_, b) => Int32Array.from({ length: promptLength }, (_, i) => (i === 0 ? 1 : (b * 31 + i * 7) % vocabSize)));
  const chainParents = Int32Array.from({ length: promptLength }, (_, i) => i - 1);
  const prefill = await runner.step(caches.map((cache, b) => ({ cache, row: { tokens: prompts[b], parents: chainParents } })));
  const allPrompt = Array.from({ length: promptLength }, (_, i) => i);
  const next = caches.map(() => new Int32Array(perStep));
  caches.forEach((_, b) => {
    next[b][0] = argmax(prefill.logitsAt(b, promptLength - 1));
    prefill.commit(b, allPrompt);
  });
  const chain = Int32Array.from({ length: perStep }, (_, i) => i - 1);
  const all = Array.from({ length: perStep }, (_, i) => i);
  const rows = caches.map((cache, b) => ({ cache, row: { tokens: next[b], parents: chain } }));
  const decodeOne = async (): Promise<void> => {
    const r = await runner.step(rows);
    for (let b = 0; b < batch; b++) {
      const t = argmax(r.logitsAt(b, accepted));
      r.commit(b, all);
      next[b][0] = t;
      for (let i = 1; i < perStep; i++) next[b][i] = (t + 7 * i) % vocabSize;
    }
  };
  await decodeOne(); // warm-up: first run of this shape
  const t0 = performance.now();
  for (let s = 0; s < timedSteps; s++) await decodeOne();
  const seconds = (performance.now() - t0) / 1000;
  for (const c of caches) c.release();
  const tokens = timedSteps * batch * perStep;
  return {
    batch,
    accepted,
    steps: timedSteps,
    tokens,
    seconds,
    tokensPerSecond: tokens / seconds,
    msPerStep: (seconds * 1000) / timedSteps,
  };
}
