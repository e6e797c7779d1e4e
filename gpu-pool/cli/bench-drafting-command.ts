/**
 * `sssd bench-drafting`: the per-request CPU costs of drafting, model-free.
 *
 *   sssd bench-drafting --tokenizer PATH --workload FILE --corpus FILE [--datastore FILE [--next-tokens FILE|none]] [--json]
 *
 * - construct: `new RequestDrafter(...)` for every workload prompt (the pool
 *   pays it at admission), and once for a long prompt (bounded build cost);
 * - merge: `mergeIntoUserCache` of one request (workload prompt + a corpus
 *   story as its output) into a user cache already saturated at its size bound
 *   (the edge pays it after every request; 64 KiB is the edge's bound);
 * - step: `draft(32)` + `accept` with the datastore, the workload prompts
 *   continued by corpus stories (accepted along the tree's longest matching
 *   path, as the offline evaluator does; or, with --continuations, by the
 *   model's greedy continuations), the datastore reloaded every round
 *   so its draft cache starts cold. `sssd eval-drafts` gives the same figure
 *   against true greedy continuations;
 * - sampled step: the same replay as a sampled request (T 0.8, coupled to its
 *   noise) drafting from the datastore's next-token table, at 12 and 32 nodes.
 * Times are per call, median and p99 over repeated rounds.
 */
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import type { Command } from 'commander';
import { longestMatchingPath } from '../../shared/drafting/draft-tree';
import { RequestDrafter } from '../../shared/drafting/request-drafter';
import { mergeIntoUserCache } from '../../shared/drafting/user-cache';
import { quantile } from '../bench/latency-stats';
import { openNextTokenTable } from '../datastore/next-token-table-file';
import { readWorkload } from '../eval/workload';
import { CliError, unreadableFile } from './cli-error';
import { type DatastoreExpectations, loadDatastoreFlag } from './datastore-flag';
import { readTokenizerWithHash } from './generate-command';
import { parseNumberFlag } from './number-flags';

interface BenchDraftingFlags {
  tokenizer: string;
  workload: string;
  corpus: string;
  datastore?: string;
  rounds: string;
  longPrompt: string;
  continuations?: string;
  nextTokens?: string;
  json?: boolean;
}

interface Stat {
  median: number;
  p99: number;
  n: number;
}

export function register(program: Command): void {
  program
    .command('bench-drafting')
    .description('time the per-request drafting costs: drafter construction, user-cache merge, datastore drafting step')
    .requiredOption('--tokenizer <path>', 'tokenizer (llama2.c .bin or tokenizer.json)')
    .requiredOption('--workload <file>', 'workload JSONL (its prompts are drafted; each line as eval-drafts reads it: user, prompt, max_tokens, temperature, ...)')
    .requiredOption('--corpus <file>', 'JSONL corpus of {"text"} lines (user histories and continuations)')
    .option('--datastore <file>', 'built datastore (sssd datastore build) for the step benchmark')
    .option('--next-tokens <file>', "the model's next-token table for the sampled step benchmark (default: --datastore's FILE.next-tokens when present; none = skip it)")
    .option('--continuations <file>', "the step benchmark continues each prompt with eval-drafts' cached greedy continuation (.cache/eval/continuations-*.json of the same workload) instead of a corpus story")
    .option('--rounds <n>', 'repetitions of each measurement', '5')
    .option('--long-prompt <n>', 'tokens of the long-prompt construction case', '32768')
    .option('--json', 'print the results as JSON')
    .action(async (flags: BenchDraftingFlags) => {
      await runBenchDrafting(flags);
    });
}

function stat(values: number[]): Stat {
  return { median: quantile(values, 0.5), p99: quantile(values, 0.99), n: values.length };
}

async function readCorpus(file: string, encode: (t: string) => number[], limit: number): Promise<number[][]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw unreadableFile('corpus', file, err);
  }
  const docs: number[][] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (!line.trim()) continue;
    let t: unknown;
    try {
      t = (JSON.parse(line) as { text?: unknown } | null)?.text;
    } catch (err) {
      throw new CliError(`${file}:${i + 1}: not JSON (${(err as Error).message}); each line is {"text": ...}`);
    }
    if (typeof t === 'string') docs.push(encode(t));
    if (docs.length >= limit) break;
  }
  if (docs.length === 0) throw new CliError(`${file}: no {"text"} lines`);
  return docs;
}

/** Draft sizes of the sampled (next-token table) step benchmark. */
const TABLE_STEP_BUDGETS = [12, 32] as const;

async function runBenchDrafting(flags: BenchDraftingFlags): Promise<void> {
  const rounds = parseNumberFlag('--rounds', flags.rounds, { min: 1, integer: true }) ?? 5;
  const longTokens = parseNumberFlag('--long-prompt', flags.longPrompt, { min: 1, integer: true }) ?? 32768;
  const { tokenizer, sha256: tokenizerSha256 } = await readTokenizerWithHash(flags.tokenizer);
  const { requests } = await readWorkload(flags.workload);
  const prompts = requests.map((r) => tokenizer.encode(r.prompt, { bos: true }));
  const docs = await readCorpus(flags.corpus, (t) => tokenizer.encode(t, { bos: true }), 1500);
  // Held to the tokenizer as the pool holds it: a store of another tokenizer (or vocabulary) matches nothing it is asked,
  // and its steps were timed as if it did (review h166).
  const expect: DatastoreExpectations = { vocabSize: tokenizer.vocabSize, tokenizerSha256, vocabOf: `tokenizer ${flags.tokenizer}` };
  const datastore = flags.datastore ? await loadDatastoreFlag(flags.datastore, expect) : null;
  const results: Record<string, Stat | number> = {};

  // 1. Drafter construction (warm-up round first: the first one pays JIT).
  const ctorContext: number[] = [];
  const ctorSssd: number[] = [];
  for (let r = 0; r <= rounds; r++) {
    for (const p of prompts) {
      let t0 = performance.now();
      new RequestDrafter({ method: 'context', promptIds: p });
      const a = performance.now() - t0;
      t0 = performance.now();
      new RequestDrafter({ method: 'sssd', promptIds: p, datastore: datastore ?? undefined });
      const b = performance.now() - t0;
      if (r > 0) {
        ctorContext.push(a * 1000);
        ctorSssd.push(b * 1000);
      }
    }
  }
  results.promptTokensMedian = quantile(prompts.map((p) => p.length), 0.5);
  results.constructContextMicros = stat(ctorContext);
  results.constructSssdMicros = stat(ctorSssd);
  const long: number[] = [];
  for (let i = 0; long.length < longTokens; i++) long.push(...docs[i % docs.length]);
  long.length = longTokens;
  // On fresh memory (no drafter is released, as for a pool's first long
  // prompt), then on the arrays of a released one (contextTriePool).
  const longTimes: number[] = [];
  const reusedTimes: number[] = [];
  for (const reuse of [false, true]) {
    for (let r = 0; r < Math.min(rounds, 3); r++) {
      const t0 = performance.now();
      const d = new RequestDrafter({ method: 'sssd', promptIds: long });
      d.draft(32);
      (reuse ? reusedTimes : longTimes).push(performance.now() - t0);
      if (reuse || r === Math.min(rounds, 3) - 1) d.release();
    }
  }
  results.constructLongPromptMillis = stat(longTimes);
  results.constructLongPromptReusedMillis = stat(reusedTimes);

  // 2. User-cache merge into a saturated cache.
  for (const kib of [64, 256]) {
    const maxBytes = kib * 1024;
    let cache: Uint8Array | null = null;
    let d = 0;
    // Fill: merge stories until the cache has been at its bound for a while.
    for (let atBound = 0; atBound < 20 && d < 4 * docs.length; d++) {
      cache = mergeIntoUserCache(cache, docs[d % docs.length], { maxBytes });
      if (cache.length > maxBytes * 0.9) atBound++;
    }
    const times: number[] = [];
    for (let r = 0; r < rounds * 10; r++) {
      const p = prompts[r % prompts.length];
      const req = [...p, ...docs[(d + r) % docs.length].slice(1, 193)];
      const t0 = performance.now();
      cache = mergeIntoUserCache(cache, req, { maxBytes });
      times.push(performance.now() - t0);
    }
    results[`merge${kib}KiBMillis`] = stat(times);
    results[`merge${kib}KiBBytes`] = cache?.length ?? 0;
  }

  // 3. Drafting steps with the datastore. Every round loads the datastore
  // afresh, so the process-wide draft cache (datastore-source.ts) starts cold
  // each round and repeats come only from within the round, as in a pool.
  if (flags.datastore) {
    const steps: number[] = [];
    const datastoreFile = flags.datastore;
    let truths: number[][] = prompts.map((_, i) => docs[(i * 7) % docs.length].slice(1, 129));
    if (flags.continuations) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(await readFile(flags.continuations, 'utf8'));
      } catch {
        throw new CliError(`--continuations: cannot read ${flags.continuations}`);
      }
      const c = (parsed as { continuations?: unknown }).continuations;
      if (!Array.isArray(c) || c.length !== prompts.length) throw new CliError(`--continuations: not the continuations of this workload (${prompts.length} requests)`);
      truths = c as number[][];
    }
    for (let r = 0; r <= rounds; r++) {
      const store = r === 0 && datastore ? datastore : await loadDatastoreFlag(datastoreFile, expect);
      for (let i = 0; i < prompts.length; i++) {
        const truth = truths[i];
        const drafter = new RequestDrafter({ method: 'sssd', promptIds: prompts[i], datastore: store });
        let pos = 0;
        while (pos < truth.length) {
          const t0 = performance.now();
          const tree = drafter.draft(32);
          const dt = performance.now() - t0;
          if (r > 0) steps.push(dt * 1000);
          const n = Math.min(tree.depths[longestMatchingPath(tree, truth, pos)] + 1, truth.length - pos);
          drafter.accept(truth.slice(pos, pos + n));
          pos += n;
        }
      }
    }
    results.stepDatastoreN32Micros = stat(steps);

    // 4. A sampled request's drafting steps: the datastore's next-token table
    // (its FILE.next-tokens, or --next-tokens), coupled to the request's noise.
    const table = await openNextTokenTable(flags.nextTokens, datastoreFile, { tokenizerSha256 });
    if (table) {
      for (const budget of TABLE_STEP_BUDGETS) {
        const tableSteps: number[] = [];
        for (let r = 0; r <= rounds; r++) {
          for (let i = 0; i < prompts.length; i++) {
            const truth = truths[i];
            const drafter = new RequestDrafter({ method: 'sssd', promptIds: prompts[i], datastore: datastore!, nextTokens: table, sampling: { seed: i, temperature: 0.8 } });
            let pos = 0;
            while (pos < truth.length) {
              const t0 = performance.now();
              const tree = drafter.draft(budget);
              const dt = performance.now() - t0;
              if (r > 0) tableSteps.push(dt * 1000);
              const n = Math.min(tree.depths[longestMatchingPath(tree, truth, pos)] + 1, truth.length - pos);
              drafter.accept(truth.slice(pos, pos + n));
              pos += n;
            }
          }
        }
        results[`stepTableN${budget}Micros`] = stat(tableSteps);
      }
    }
  }

  if (flags.json) {
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    return;
  }
  const fmt = (s: Stat | number, unit: string, digits = 1): string =>
    typeof s === 'number' ? `${s}` : `median ${s.median.toFixed(digits)} ${unit}, p99 ${s.p99.toFixed(digits)} ${unit} (n=${s.n})`;
  const lines = [
    `prompts: ${prompts.length}, median ${results.promptTokensMedian} tokens`,
    `new RequestDrafter (context):       ${fmt(results.constructContextMicros, 'µs')}`,
    `new RequestDrafter (sssd):          ${fmt(results.constructSssdMicros, 'µs')}`,
    `new RequestDrafter + draft, ${longTokens}-token prompt: ${fmt(results.constructLongPromptMillis, 'ms')}`,
    `  the same on a released drafter's arrays: ${fmt(results.constructLongPromptReusedMillis, 'ms')}`,
    `mergeIntoUserCache, 64 KiB cache (${results.merge64KiBBytes} B):   ${fmt(results.merge64KiBMillis, 'ms', 3)}`,
    `mergeIntoUserCache, 256 KiB cache (${results.merge256KiBBytes} B): ${fmt(results.merge256KiBMillis, 'ms', 3)}`,
  ];
  if (results.stepDatastoreN32Micros !== undefined) lines.push(`draft(32) with datastore, per step (cold draft cache each round): ${fmt(results.stepDatastoreN32Micros, 'µs')}`);
  for (const budget of TABLE_STEP_BUDGETS) {
    const step = results[`stepTableN${budget}Micros`];
    if (step !== undefined) lines.push(`draft(${budget}) sampled (T 0.8), next-token table, per step: ${fmt(step, 'µs')}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}
