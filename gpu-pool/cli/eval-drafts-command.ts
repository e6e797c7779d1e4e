/**
 * `sssd eval-drafts`: offline acceptance of the drafting methods on a workload.
 * Replays it in arrival order against each request's true continuation
 * (computed once with the model, cached under .cache/eval/ or SSSD_CACHE_DIR) and prints mean
 * acceptance length τ per method × budget and drafting time per step.
 * Continuations are greedy, or with `--sampling as-served` each request's own
 * (temperature, top_p, seed), which is what the pool emits for it.
 */
import { constants, existsSync } from 'node:fs';
import { access, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { type FusionWeights, defaultFusionWeights } from '../../shared/drafting/fusion';
import { Datastore } from '../datastore/datastore';
import { openNextTokenTable } from '../datastore/next-token-table-file';
import { continuationCacheFile, computeContinuations, readCachedContinuations, writeCachedContinuations } from '../eval/continuations';
import { formatEvalTable } from '../eval/eval-report';
import { type EvalMethod, type ReplayRequest, type ReplayResult, evalMethods, replay } from '../eval/replay';
import { readWorkload } from '../eval/workload';
import { loadModel } from '../model/load-model';
import { poolCacheDir } from '../graph/graph-cache';
import { ModelRunner } from '../runtime/model-runner';
import { CliError, unreadableFile } from './cli-error';
import { type DatastoreExpectations, loadDatastoreFlag } from './datastore-flag';
import { parseFusionWeights } from './speculative-config';
import { checkTokenizerFits, readTokenizerWithHash } from './generate-command';
import { parseNumberList, parseNumberFlag } from './number-flags';

const LIVE_CHUNK_TOKENS = 1 << 16;

interface EvalDraftsFlags {
  model: string;
  tokenizer: string;
  workload: string;
  datastore?: string;
  datastoreCorpus?: string;
  budgets: string;
  methods: string;
  maxTokens?: string;
  edgeTrieNodes: string;
  weights?: string;
  cacheDir?: string;
  liveDatastore?: boolean;
  nextTokens?: string;
  sampling: string;
  json?: boolean;
}

const samplingModes = ['greedy', 'as-served'] as const;

export function register(program: Command): void {
  program
    .command('eval-drafts')
    .description('replay a workload against true continuations (greedy, or as served) and report mean acceptance length per drafting method and budget')
    .requiredOption('--model <path>', 'checkpoint (llama2.c .bin or Hugging Face directory)')
    .requiredOption('--tokenizer <path>', 'tokenizer (llama2.c .bin or tokenizer.json)')
    .requiredOption('--workload <file>', 'workload JSONL: user, prompt, max_tokens, temperature (required), top_p, seed, arrival_s; any other field is refused')
    .option('--datastore <file>', 'built datastore (sssd datastore build)')
    .option('--datastore-corpus <file>', 'or: a JSONL corpus of {"text"} lines, indexed in memory')
    .option('--budgets <list>', 'draft tree budgets (draft nodes)', '4,8,16,32')
    .option('--methods <list>', `methods: ${evalMethods.join(',')}`, evalMethods.join(','))
    .option('--max-tokens <n>', 'cap every request at n tokens (default: each request its own max_tokens)')
    .option('--edge-trie-nodes <n>', 'edge trie size, nodes', '128')
    .option('--weights <json>', 'fusion weight overrides as JSON, e.g. {"edge":0.7,"combine":"max"}')
    .option('--cache-dir <dir>', "where continuations are cached (default: the repository's .cache/eval, or SSSD_CACHE_DIR/eval)")
    .option('--sampling <mode>', "greedy: every request decoded greedily; as-served: each request's temperature, top_p and seed, drafts coupled to its noise as in the pool", 'greedy')
    .option('--next-tokens <file>', "the model's next-token table, drafting for sampled requests in the datastore methods (default: --datastore's FILE.next-tokens when present; none = without)")
    .option('--live-datastore', "datastore methods also learn from every finished request (the pool's opt-in contributeToDatastore)")
    .option('--json', 'print the results as JSON')
    .action(async (flags: EvalDraftsFlags) => {
      await runEvalDrafts(flags);
    });
}

function parseList<T extends string>(flag: string, raw: string, allowed: readonly T[]): T[] {
  const items = raw.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new CliError(`${flag} needs at least one value`);
  for (const it of items) if (!allowed.includes(it as T)) throw new CliError(`${flag}: unknown value "${it}" (choose from ${allowed.join(', ')})`);
  return items as T[];
}

function parseWeights(raw: string | undefined): FusionWeights {
  return raw ? parseFusionWeights(raw, '--weights') : defaultFusionWeights;
}

/**
 * The continuations' cache folder, made now where missing: a file in its place, or a folder that cannot be written,
 * came out as mkdir's stack trace once the continuations were computed, and they were lost (review h166).
 */
async function prepareCacheDir(dir: string, named: boolean): Promise<void> {
  const what = named ? `--cache-dir ${dir}` : `the continuations' cache folder ${dir} (SSSD_CACHE_DIR/eval, or the repository's .cache/eval)`;
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ENOTDIR') throw new CliError(`${what}: a file is in the way; name a folder`);
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') throw new CliError(`${what} cannot be written: ${code === 'EROFS' ? 'read-only file system' : 'permission denied'}`);
    throw new CliError(`${what}: ${(err as Error).message}`);
  }
}

export async function runEvalDrafts(flags: EvalDraftsFlags): Promise<ReplayResult[]> {
  const budgets = parseNumberList('--budgets', flags.budgets, { integer: true, min: 0, max: 1024 });
  const methods = parseList<EvalMethod>('--methods', flags.methods, evalMethods);
  const maxTokens = parseNumberFlag('--max-tokens', flags.maxTokens, { integer: true, min: 1 });
  const edgeTrieNodes = parseNumberFlag('--edge-trie-nodes', flags.edgeTrieNodes, { integer: true, min: 1, max: 65535 }) as number;
  const weights = parseWeights(flags.weights);
  const samplingMode = flags.sampling ?? 'greedy';
  if (!(samplingModes as readonly string[]).includes(samplingMode)) throw new CliError(`--sampling: unknown value "${samplingMode}" (choose from ${samplingModes.join(', ')})`);
  const asServed = samplingMode === 'as-served';
  const needsDatastore = methods.some((m) => m.includes('datastore'));
  if (needsDatastore && !flags.datastore && !flags.datastoreCorpus) {
    throw new CliError(`methods ${methods.filter((m) => m.includes('datastore')).join(', ')} need --datastore FILE or --datastore-corpus FILE`);
  }
  const tableMethod = methods.find((m) => m === 'table-chain' || m === 'table-tree');
  const needsTable = tableMethod !== undefined;
  if (needsTable && !flags.datastore && !(flags.nextTokens && flags.nextTokens !== 'none')) {
    throw new CliError(`method ${tableMethod} needs the next-token table: --datastore FILE (its FILE.next-tokens) or --next-tokens FILE`);
  }

  // Files named found now, not after the continuations have been computed (minutes, on a larger model).
  const named: Array<[string, string | undefined]> = [
    ['--datastore', flags.datastore],
    ['--datastore-corpus', flags.datastoreCorpus],
    ['--next-tokens', flags.nextTokens === 'none' ? undefined : flags.nextTokens],
  ];
  for (const [flag, file] of named) if (file !== undefined && !existsSync(file)) throw new CliError(`${flag} not found: ${file}`);
  const { tokenizer, sha256: tokenizerSha256 } = await readTokenizerWithHash(flags.tokenizer);
  const model = await loadModel(flags.model);
  checkTokenizerFits(tokenizer, model, flags.tokenizer);
  const { requests, text } = await readWorkload(flags.workload);
  const jobs = requests.map((r, i) => ({
    promptIds: tokenizer.encode(r.prompt, { bos: true }),
    maxTokens: maxTokens ?? r.max_tokens,
    // A request without a seed gets its index: the pool would draw one; any fixed one serves.
    ...(asServed && r.temperature > 0 ? { sampling: { temperature: r.temperature, topP: r.top_p, seed: r.seed ?? i } } : {}),
  }));

  // Every file opened and checked, and the cache folder made, before the continuations are computed: a damaged
  // datastore, table or corpus, or a file given as --cache-dir, was found only after them (review h166).
  const encode = tokenizer.encode.bind(tokenizer);
  const vocabSize = model.config.vocabSize;
  const expect: DatastoreExpectations = { vocabSize, tokenizerSha256 };
  let datastore: Datastore | null = null;
  if (needsDatastore) datastore = await openDatastore(flags, encode, expect);
  const nextTokens = needsDatastore || needsTable
    ? await openNextTokenTable(flags.nextTokens, flags.datastore, { vocabSize, tokenizerSha256, modelSha256: model.sha256 }, (why) => process.stderr.write(`${why}\n`)).catch((err: Error) => {
        throw new CliError(`cannot load the next-token table: ${err.message}`);
      })
    : null;
  if (needsTable && !nextTokens) throw new CliError(`method ${tableMethod} needs the next-token table, and ${flags.datastore}.next-tokens was not found (datastore build --model writes it)`);
  const cacheDir = path.resolve(flags.cacheDir ?? path.join(poolCacheDir(), 'eval'));
  await prepareCacheDir(cacheDir, flags.cacheDir !== undefined);

  const cacheFile = continuationCacheFile(cacheDir, {
    modelSha256: model.sha256,
    tokenizerSha256,
    workloadText: text,
    maxTokens: maxTokens === undefined ? 'per-request' : String(maxTokens),
    sampling: samplingMode,
  });
  let continuations = await readCachedContinuations(cacheFile, jobs);
  if (!continuations) {
    const runner = await ModelRunner.create(model);
    continuations = await computeContinuations(runner, jobs, { progress: !flags.json });
    await writeCachedContinuations(cacheFile, continuations).catch((err: Error) => {
      throw new CliError(`cannot write the continuations to ${cacheFile}: ${err.message}`);
    });
  } else if (!flags.json) {
    process.stderr.write(`${samplingMode} continuations from ${path.relative(process.cwd(), cacheFile)}\n`);
  }

  const replayRequests: ReplayRequest[] = requests.map((r, i) => {
    const sampling = jobs[i].sampling;
    return { user: r.user, promptIds: jobs[i].promptIds, continuation: continuations[i], ...(sampling ? { sampling } : {}) };
  });
  const results: ReplayResult[] = [];
  for (const method of methods) {
    for (const budget of budgets) {
      // Live learning mutates the datastore: every run starts from the file.
      const live = Boolean(flags.liveDatastore) && method.includes('datastore');
      const ds = live ? await openDatastore(flags, encode, expect) : datastore;
      results.push(await replay(replayRequests, method, budget, { datastore: ds, nextTokens, weights, edgeTrieNodes, timeDrafts: true, liveDatastore: live }));
      if (live) await ds?.close();
    }
  }
  await datastore?.close();
  if (flags.json) {
    process.stdout.write(
      JSON.stringify(
        {
          model: model.config.name,
          workload: flags.workload,
          requests: requests.length,
          continuationTokens: continuations.reduce((s, c) => s + c.length, 0),
          datastoreTokens: datastore?.tokenCount ?? 0,
          liveDatastore: Boolean(flags.liveDatastore),
          sampling: samplingMode,
          weights,
          results,
        },
        null,
        2,
      ) + '\n',
    );
  } else {
    process.stdout.write(
      `${requests.length} requests, ${continuations.reduce((s, c) => s + c.length, 0)} continuation tokens` +
        (datastore ? `, datastore ${datastore.tokenCount} tokens` : '') +
        '\n\n' +
        formatEvalTable(results, methods, budgets) +
        '\n',
    );
  }
  return results;
}

async function openDatastore(flags: EvalDraftsFlags, encode: (text: string, opts?: { bos?: boolean }) => number[], expect: DatastoreExpectations): Promise<Datastore> {
  // Live appends go to small chunks of their own, so each re-index stays cheap.
  if (flags.datastore) return loadDatastoreFlag(flags.datastore, expect, { indexer: 'inline', chunkTokens: LIVE_CHUNK_TOKENS });
  const file = flags.datastoreCorpus as string;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw unreadableFile('datastore corpus', file, err);
  }
  const docs: number[][] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (!line.trim()) continue;
    let doc: unknown;
    try {
      doc = JSON.parse(line);
    } catch {
      throw new CliError(`${file}:${i + 1}: not JSON; each line is {"text": ...}`);
    }
    const t = doc !== null && typeof doc === 'object' ? (doc as { text?: unknown }).text : undefined;
    if (typeof t !== 'string') throw new CliError(`${file}:${i + 1}: no "text" string; each line is {"text": ...}`);
    docs.push(encode(t, { bos: true }));
  }
  return Datastore.fromDocuments(docs, { vocabSize: expect.vocabSize, indexer: 'inline' });
}

