/**
 * `sssd datastore`: build the global datastore file from a JSONL corpus, show
 * what a file holds, and time lookups on it.
 *
 *   sssd datastore build [--tokenizer PATH, default: beside --model] (--input corpus.jsonl | --model PATH --self-samples N) --out FILE [--chunk-tokens N] [--field text]
 *                        [--model PATH [--self-openings N] [--self-temperatures LIST] [--self-max-tokens N] [--self-documents N] [--no-self-read-corpus]]
 *   sssd datastore info FILE [--json]
 *   sssd datastore bench FILE [--lookups N] [--cold-mb N] [--contexts-from JSONL --tokenizer PATH [--field prompt]]
 */
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import { access, constants, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Presets, SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { buildChunksFromJsonl, DEFAULT_BUILD_CHUNK_TOKENS, type CorpusBuildOptions, type CorpusBuildProgress } from '../datastore/corpus-builder';
import { DEFAULT_SELF_CONTINUATIONS } from '../datastore/self-continuations';
import { sampleSelfStories, SELF_SAMPLE_MAX_TOKENS } from '../datastore/self-samples';
import { nextTokenTableCorpusPositions, nextTokenTablePath, readNextTokenTable, writeNextTokenTable } from '../datastore/next-token-table-file';
import { loadModel } from '../model/load-model';
import { ModelRunner } from '../runtime/model-runner';
import { Rng } from '../runtime/sampling';
import { createDatastoreMatches, Datastore, DEFAULT_LOOKUP } from '../datastore/datastore';
import { readDatastoreFile, writeDatastoreFile, DATASTORE_FILE_VERSION } from '../datastore/datastore-file';
import { loadDatastoreFlag } from './datastore-flag';
import { CliError, unreadableFile } from './cli-error';
import { sameFile } from './same-file';
import { parseNumberFlag, parseNumberList } from './number-flags';
import { checkTokenizerFits, readTokenizerWithHash, resolveTokenizerPath } from './generate-command';
import { TOKENIZER_DEFAULT_HELP } from './tokenizer-beside';
import { modelEnvironmentHelp } from './model-environment-help';

/**
 * A phase's label and figures, the bytes read and tokens indexed in a unit their total shows in: a small corpus was
 * "tokenizing (MB): 0/0" (review h141).
 */
function progressFigures(p: CorpusBuildProgress): { label: string; done: number; total: number } {
  const counted = { sample: 'sampling stories', generate: 'continuing openings', read: 'reading documents' } as const;
  if (p.phase !== 'tokenize' && p.phase !== 'index') return { label: counted[p.phase], done: p.done, total: p.total };
  const units = p.phase === 'tokenize' ? ([['MB', 1e6], ['KB', 1e3], ['bytes', 1]] as const) : ([['M tokens', 1e6], ['K tokens', 1e3], ['tokens', 1]] as const);
  const [unit, size] = units.find(([, min]) => p.total >= min) ?? units[units.length - 1];
  const scaled = (n: number): number => Math.round((n / size) * 10) / 10;
  return { label: `${p.phase === 'tokenize' ? 'tokenizing' : 'indexing'} (${unit})`, done: scaled(p.done), total: scaled(p.total) };
}

/** A bar on a terminal; otherwise a plain line now and then (logs, CI). */
function progressReporter(): { update(p: CorpusBuildProgress): void; stop(): void } {
  if (process.stderr.isTTY) {
    let bar: SingleBar | null = null;
    let phase = '';
    return {
      update(p) {
        const { label, done, total } = progressFigures(p);
        if (p.phase !== phase) {
          bar?.stop();
          phase = p.phase;
          bar = new SingleBar({ stream: process.stderr, format: `${label.padEnd(20)} [{bar}] {percentage}% | {value}/{total} | {duration}s` }, Presets.shades_classic);
          bar.start(total, done);
        } else bar?.update(done);
      },
      stop: () => bar?.stop(),
    };
  }
  let last = 0;
  let phase = '';
  return {
    update(p) {
      const now = performance.now();
      if (p.phase === phase && now - last < 5000 && p.done < p.total) return;
      phase = p.phase;
      last = now;
      const { label, done, total } = progressFigures(p);
      process.stderr.write(`${label}: ${done}/${total}\n`);
    },
    stop() {},
  };
}

interface BuildFlags {
  tokenizer?: string;
  input?: string;
  out?: string;
  chunkTokens?: string;
  field: string;
  model?: string;
  selfOpenings?: string;
  selfTemperatures?: string;
  selfMaxTokens?: string;
  selfDocuments?: string;
  selfReadCorpus?: boolean;
  selfSamples?: string;
  threads?: string;
}

const SELF_FLAGS = ['selfOpenings', 'selfTemperatures', 'selfMaxTokens', 'selfDocuments', 'selfSamples', 'threads'] as const;

/** --model turns on the model's own continuations; the --self-* flags tune them. */
async function selfContinuationsFromFlags(
  opts: BuildFlags,
  tokenizer: CorpusBuildOptions['tokenizer'],
): Promise<(NonNullable<CorpusBuildOptions['selfContinuations']> & { modelSha256: string }) | undefined> {
  if (!opts.model) {
    const key = SELF_FLAGS.find((k) => opts[k] !== undefined);
    const stray = key ? `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}` : opts.selfReadCorpus === false ? '--no-self-read-corpus' : undefined;
    if (stray) throw new CliError(`${stray} needs --model PATH (the model whose own text is stored)`);
    return undefined;
  }
  const d = DEFAULT_SELF_CONTINUATIONS;
  const options = {
    openings: parseNumberFlag('--self-openings', opts.selfOpenings, { integer: true, min: 1, max: 64 }) ?? d.openings,
    sampledTemperatures: opts.selfTemperatures === undefined ? d.sampledTemperatures : parseNumberList('--self-temperatures', opts.selfTemperatures, { min: 0, max: 2 }),
    maxTokens: parseNumberFlag('--self-max-tokens', opts.selfMaxTokens, { integer: true, min: 1, max: 1 << 20 }) ?? d.maxTokens,
    documents: parseNumberFlag('--self-documents', opts.selfDocuments, { integer: true, min: 0, max: 0x7fffffff }),
    readCorpus: opts.selfReadCorpus ?? d.readCorpus,
  };
  // A build is a one-off batch job with the machine to itself: batches of 64
  // rows gain from more threads (2 on 2 cores: 16% faster), unlike the pool's steps.
  const threads = parseNumberFlag('--threads', opts.threads, { integer: true, min: 1, max: 256 }) ?? Math.min(8, os.availableParallelism());
  const model = await loadModel(opts.model);
  checkTokenizerFits(tokenizer, model, opts.tokenizer ?? '');
  return { runner: await ModelRunner.create(model, { threads }), options, modelSha256: model.sha256 };
}

/**
 * mkdir -p one level at a time: Node's recursive mkdir spins for ever where
 * a filesystem answers ENOENT to every mkdir (/proc), where this says so.
 */
async function makeFolder(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let d = dir; !(await stat(d).catch(() => null)); d = path.dirname(d)) {
    missing.unshift(d);
    if (path.dirname(d) === d) break;
  }
  for (const d of missing) await mkdir(d);
}

async function buildCommand(opts: BuildFlags): Promise<void> {
  if (opts.input !== undefined && opts.selfSamples !== undefined) throw new CliError('datastore build takes --input corpus.jsonl or --self-samples N (the model\'s own stories as the corpus), not both');
  // SSSD_TOKENIZER, else the one beside --model, as for `up`, `pool` and `generate` (reviews h141, h185).
  if (!opts.tokenizer && opts.model !== undefined) opts = { ...opts, tokenizer: resolveTokenizerPath(opts.model, undefined) };
  else if (!opts.tokenizer && process.env.SSSD_TOKENIZER) opts = { ...opts, tokenizer: process.env.SSSD_TOKENIZER };
  if (!opts.tokenizer || !(opts.input ?? opts.selfSamples) || !opts.out) {
    throw new CliError('datastore build needs --tokenizer PATH (or SSSD_TOKENIZER) --out FILE, and --input corpus.jsonl (or, with --model, --self-samples N); a --model brings the tokenizer beside it');
  }
  // Bounded: the samples are held, and written, as one text (a string's limit is ~500M characters: ~400K stories).
  const samples = parseNumberFlag('--self-samples', opts.selfSamples, { integer: true, min: 1, max: 100_000 });
  const chunkTokens = parseNumberFlag('--chunk-tokens', opts.chunkTokens, { integer: true, min: 2, max: 0x7fffffff }) ?? DEFAULT_BUILD_CHUNK_TOKENS;
  // Found before the build's minutes, not at the rename after them.
  const existing = await stat(opts.out).catch(() => null);
  if (existing?.isDirectory()) throw new CliError(`--out ${opts.out} is a folder; name the file to write`);
  // The write renames a new file over it: a device (/dev/null, as root) would become a file.
  if (existing && !existing.isFile()) throw new CliError(`--out ${opts.out} is not a regular file (a device or a pipe would be replaced by one)`);
  // Its own inputs: a build over them destroyed them (the corpus, the tokenizer, the model).
  for (const [flag, input] of [['--input', opts.input], ['--tokenizer', opts.tokenizer], ['--model', opts.model]] as const) {
    const st = input === undefined || existing === null ? null : await stat(input).catch(() => null);
    if (sameFile(st, existing)) throw new CliError(`--out ${opts.out} is the ${flag} file: the build would replace it; name another file`);
  }
  // Its folder made and writable now, not found otherwise after the build's minutes (with a stack trace).
  const outDir = path.dirname(path.resolve(opts.out));
  try {
    await makeFolder(outDir);
    if (!(await stat(outDir)).isDirectory()) throw Object.assign(new Error(), { code: 'ENOTDIR' });
    await access(outDir, constants.W_OK);
  } catch (err) {
    throw new CliError(`--out ${opts.out}: cannot write in ${outDir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const { tokenizer, sha256 } = await readTokenizerWithHash(opts.tokenizer);
  const selfContinuations = await selfContinuationsFromFlags(opts, tokenizer);
  const t0 = performance.now();
  const progress = progressReporter();
  let result;
  let sampleSeconds = 0;
  let sampleNote = '';
  // The model's own stories, when they are the corpus: written as one, read back as any corpus is.
  const samplesDir = samples !== undefined ? await mkdtemp(path.join(os.tmpdir(), 'sssd-samples-')) : null;
  // Stopped mid-build (Ctrl-C, a supervisor's SIGTERM): the samples go too, as the finally below does not run.
  const onSignal = (signal: NodeJS.Signals): void => {
    if (samplesDir !== null) rmSync(samplesDir, { recursive: true, force: true });
    process.exit(128 + os.constants.signals[signal]);
  };
  if (samplesDir !== null) for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, onSignal);
  try {
    let input = opts.input!;
    let field = opts.field;
    if (samplesDir !== null && selfContinuations) {
      const { texts, empty } = await sampleSelfStories(selfContinuations.runner, tokenizer, { count: samples!, onProgress: (done, total) => progress.update({ phase: 'sample', done, total }) });
      if (texts.length === 0) throw new CliError(`all ${samples} of the model's stories were empty (it ended each at its first token): nothing to build from; nothing written`);
      sampleNote = `  the model's own stories: ${texts.length} of ${samples} sampled${empty > 0 ? ` (${empty} empty: the model ended them at once)` : ''}\n`;
      input = path.join(samplesDir, 'samples.jsonl');
      field = 'text';
      await writeFile(input, texts.map((text) => JSON.stringify({ text })).join('\n') + '\n');
      sampleSeconds = (performance.now() - t0) / 1000;
    }
    result = await buildChunksFromJsonl({ input, tokenizer, field, chunkTokens, selfContinuations, onProgress: (p) => progress.update(p) });
  } finally {
    progress.stop();
    await selfContinuations?.runner.dispose();
    if (samplesDir !== null) await rm(samplesDir, { recursive: true, force: true });
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(signal, onSignal);
  }
  // An empty datastore drafts nothing: more likely the wrong file, or --field, than a wish.
  if (result.tokens === 0) throw new CliError(`${opts.input ?? 'the samples'} holds no documents (no line with a "${opts.field ?? 'text'}" field); nothing written`);
  const t1 = performance.now();
  // A full disk, say: one line, not a stack (nothing is left half-written: the write is atomic).
  const cannotWrite = (file: string) => (err: Error): never => {
    throw new CliError(`cannot write ${file}: ${err.message}; nothing of it was left behind`, 1);
  };
  const bytes = await writeDatastoreFile(opts.out, {
    vocabSize: tokenizer.vocabSize,
    separatorId: tokenizer.bosId,
    chunkTokens,
    tokenizerSha256: sha256,
    chunks: result.chunks,
  }).catch(cannotWrite(opts.out));
  let tableNote = '';
  if (result.nextTokens && selfContinuations) {
    const file = nextTokenTablePath(opts.out);
    const tableBytes = await writeNextTokenTable(file, result.nextTokens, {
      vocabSize: tokenizer.vocabSize,
      tokenizerSha256: sha256,
      modelSha256: selfContinuations.modelSha256,
      corpusPositions: result.corpusPositions,
    }).catch(cannotWrite(file));
    tableNote = `  and ${file}: the model's next-token distributions for ${result.nextTokens.size} contexts, ${(tableBytes / 1e6).toFixed(1)} MB\n`;
  }
  const t2 = performance.now();
  process.stdout.write(
    `built ${opts.out}: ${result.tokens} tokens from ${result.documents} documents in ${result.chunks.length} chunk(s), ` +
      `${(bytes / 1e6).toFixed(1)} MB, ${((t2 - t0) / 1000).toFixed(2)} s ` +
      `(${sampleSeconds > 0 ? `sample ${sampleSeconds.toFixed(2)} s, ` : ''}tokenize ${result.tokenizeSeconds.toFixed(2)} s, ` +
      (selfContinuations ? `generate ${result.generateSeconds.toFixed(2)} s, ` : '') +
      (result.readSeconds > 0 ? `read ${result.readSeconds.toFixed(2)} s, ` : '') +
      `index ${result.indexSeconds.toFixed(2)} s, write ${((t2 - t1) / 1000).toFixed(2)} s)\n` +
      sampleNote +
      (selfContinuations ? `  of which the model's own continuations: ${result.selfDocuments} documents, ${result.selfTokens} tokens\n` : '') +
      tableNote,
  );
}

async function infoCommand(file: string, opts: { json?: boolean }): Promise<void> {
  const t0 = performance.now();
  const contents = await readDatastoreFile(file);
  const loadMs = performance.now() - t0;
  const { size } = await stat(file);
  const tableFile = nextTokenTablePath(file);
  const table = existsSync(tableFile)
    ? await readNextTokenTable(tableFile, { vocabSize: contents.vocabSize || undefined, tokenizerSha256: contents.tokenizerSha256 || undefined }).then(
        async (t) => ({ file: tableFile, contexts: t.size, candidates: t.candidates, corpusPositions: await nextTokenTableCorpusPositions(tableFile), error: null as string | null }),
        (err: Error) => ({ file: tableFile, contexts: 0, candidates: 0, corpusPositions: null, error: err.message }),
      )
    : null;
  let tokens = 0;
  let documents = 0;
  for (const c of contents.chunks) {
    tokens += c.tokens.length;
    for (let i = 0; i < c.tokens.length; i++) if (c.tokens[i] === contents.separatorId) documents++;
  }
  const info = {
    file,
    bytes: size,
    formatVersion: contents.formatVersion ?? DATASTORE_FILE_VERSION,
    vocabSize: contents.vocabSize,
    separatorId: contents.separatorId,
    tokenizerSha256: contents.tokenizerSha256 || null,
    chunkTokens: contents.chunkTokens,
    chunks: contents.chunks.map((c) => c.tokens.length),
    /** Chunks of outputs a pool contributed (the last ones), saved with --save-datastore. */
    contributedChunks: contents.chunks.length - (contents.builtChunks ?? contents.chunks.length),
    tokens,
    documents,
    loadMs: Math.round(loadMs * 10) / 10,
    nextTokens: table,
  };
  // A pool started with this datastore refuses a table beside it that it cannot read: so does a check made with info,
  // after saying what it could read (it exited 0, review h166).
  const refuseTable = (): void => {
    if (table?.error) throw new CliError(`the next-token table ${table.file} is unreadable, and a pool given this datastore refuses to start with it (pool --next-tokens none runs without it)`);
  };
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(info)}\n`);
    refuseTable();
    return;
  }
  process.stdout.write(
    [
      `${file}: SSSD datastore, format ${info.formatVersion}, ${(size / 1e6).toFixed(1)} MB (loaded and verified in ${info.loadMs} ms)`,
      `  tokens     ${tokens} (${documents} separators, id ${info.separatorId})`,
      `  chunks     ${info.chunks.length}${info.chunks.length ? ` (${info.chunks.join(', ')} tokens; new chunks of up to ${info.chunkTokens})` : ''}${
        info.contributedChunks ? `, the last ${info.contributedChunks} of contributed outputs` : ''
      }`,
      `  vocabulary ${info.vocabSize || 'unknown'}`,
      `  tokenizer  ${info.tokenizerSha256 ? `sha256 ${info.tokenizerSha256}` : 'unknown'}`,
      `  next-token table ${table ? (table.error ? `${table.file}: unreadable (${table.error})` : `${table.file}: ${table.contexts} contexts, ${table.candidates} candidates each${table.corpusPositions === null ? ', built before tables read the corpus' : `, ${table.corpusPositions} of its positions from the corpus`}`) : 'none'}`,
    ].join('\n') + '\n',
  );
  refuseTable();
}

/** Contexts for the benchmark: every prefix of the given texts, or random windows of the store itself. */
function benchContexts(store: Datastore, count: number, seed: number, fromTexts: number[][] | null): number[][] {
  let x = seed >>> 0 || 1;
  const rand = (): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
  const out: number[][] = [];
  if (fromTexts) {
    for (let i = 0; out.length < count && fromTexts.length > 0; i++) {
      const ids = fromTexts[i % fromTexts.length];
      const end = 1 + Math.floor(rand() * ids.length);
      out.push(ids.slice(Math.max(0, end - 64), end));
    }
    return out;
  }
  const chunks = store.indexedChunks.filter((c) => c.tokens.length > 1);
  if (chunks.length === 0) throw new CliError('the datastore is empty: nothing to benchmark');
  while (out.length < count) {
    const c = chunks[Math.floor(rand() * chunks.length)].tokens;
    const end = 1 + Math.floor(rand() * (c.length - 1));
    out.push(Array.from(c.subarray(Math.max(0, end - 64), end)));
  }
  return out;
}

async function benchCommand(file: string, opts: { lookups?: string; seed?: string; coldMb?: string; contextsFrom?: string; tokenizer?: string; field: string }): Promise<void> {
  const lookups = parseNumberFlag('--lookups', opts.lookups, { integer: true, min: 1, max: 0x7fffffff }) ?? 20000;
  const coldMb = parseNumberFlag('--cold-mb', opts.coldMb, { integer: true, min: 0, max: 4096 }) ?? 0;
  const seed = parseNumberFlag('--seed', opts.seed, { integer: true, min: 0, max: 0x7fffffff }) ?? 1;
  if (opts.contextsFrom && !opts.tokenizer) throw new CliError('--contexts-from needs --tokenizer PATH');
  // Contexts tokenized by --tokenizer are looked up in a store held to it, as the pool holds its own: one of another
  // tokenizer matched ~1.5 tokens a lookup where its own matched ~48, without a word (review h166).
  const withTokenizer = opts.contextsFrom ? await readTokenizerWithHash(opts.tokenizer as string) : null;
  const t0 = performance.now();
  const store = withTokenizer
    ? await loadDatastoreFlag(file, { vocabSize: withTokenizer.tokenizer.vocabSize, tokenizerSha256: withTokenizer.sha256, vocabOf: `tokenizer ${opts.tokenizer}` })
    : await Datastore.load(file);
  const loadMs = performance.now() - t0;
  let texts: number[][] | null = null;
  if (opts.contextsFrom && withTokenizer) {
    const { tokenizer } = withTokenizer;
    let raw: string;
    try {
      raw = readFileSync(opts.contextsFrom, 'utf8');
    } catch (err) {
      throw unreadableFile('--contexts-from', opts.contextsFrom, err);
    }
    texts = raw
      .split('\n')
      .map((line, i) => ({ line, i }))
      .filter(({ line }) => line.trim() !== '')
      .map(({ line, i }) => {
        let rec: unknown;
        try {
          rec = JSON.parse(line);
        } catch {
          throw new CliError(`${opts.contextsFrom}:${i + 1}: not valid JSON`);
        }
        const text = rec !== null && typeof rec === 'object' ? (rec as Record<string, unknown>)[opts.field] : undefined;
        if (typeof text !== 'string') throw new CliError(`${opts.contextsFrom}:${i + 1}: no string "${opts.field}" field`);
        return tokenizer.encode(text, { bos: true });
      });
    if (texts.every((ids) => ids.length < 2)) throw new CliError(`${opts.contextsFrom} holds no text to look up (no line with a non-empty "${opts.field}" field)`);
  }
  const contexts = benchContexts(store, lookups, seed, texts);
  const out = createDatastoreMatches();
  for (let i = 0; i < Math.min(2000, contexts.length); i++) store.lookup(contexts[i], out); // warm up the JIT
  const times = new Float64Array(contexts.length);
  let matches = 0;
  let matchedLength = 0;
  // In the pool a lookup follows a forward pass and other rows' drafting, which
  // leave the suffix array's upper search levels out of cache: --cold-mb reads
  // that much other memory at random before each timed lookup (a lookup there
  // took ~50 µs, against ~30 back to back).
  const cold = coldMb > 0 ? new Int32Array(coldMb << 18) : null;
  const coldRng = new Rng(seed);
  let sink = 0;
  for (let i = 0; i < contexts.length; i++) {
    if (cold) for (let j = 0; j < 20000; j++) sink += cold[Math.floor(coldRng.next() * cold.length)];
    const s = process.hrtime.bigint();
    store.lookup(contexts[i], out);
    times[i] = Number(process.hrtime.bigint() - s) / 1000;
    matches += out.count;
    for (let j = 0; j < out.count; j++) matchedLength += out.matchLengths[j];
  }
  times.sort();
  const q = (p: number): string => times[Math.min(times.length - 1, Math.floor(p * times.length))].toFixed(1);
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  process.stdout.write(
    `${file}: ${store.tokenCount} tokens in ${store.chunkCount} chunk(s), loaded in ${loadMs.toFixed(0)} ms\n` +
      `lookup (maxQuery ${DEFAULT_LOOKUP.maxQuery}, width ${DEFAULT_LOOKUP.width}, maxMatches ${DEFAULT_LOOKUP.maxMatches}, minMatches ${DEFAULT_LOOKUP.minMatches}) ` +
      `over ${contexts.length} contexts from ${opts.contextsFrom ?? 'the store itself'}${cold ? `, caches cold (${coldMb} MB read at random before each)` : ''}:\n` +
      `  median ${q(0.5)} µs, p90 ${q(0.9)} µs, p99 ${q(0.99)} µs, max ${times[times.length - 1].toFixed(1)} µs, mean ${mean.toFixed(1)} µs\n` +
      `  ${(matches / contexts.length).toFixed(1)} matches per lookup, mean match length ${(matchedLength / Math.max(1, matches)).toFixed(2)}\n`,
  );
  if (sink === -1) process.stdout.write('\n'); // keeps the cold reads from being optimised away
  await store.close();
}

export function register(program: Command): void {
  const ds = program.command('datastore').description('build and inspect the global datastore (suffix arrays over a token corpus)');
  ds.command('build')
    .description("tokenize a JSONL corpus (or the model's own stories) and write a datastore file")
    .option('--tokenizer <path>', `tokenizer file (llama2.c tokenizer.bin or tokenizer.json; ${TOKENIZER_DEFAULT_HELP})`)
    .option('--input <path>', 'JSONL corpus, one document per line (or, with --model, --self-samples N instead)')
    .option('--out <path>', 'datastore file to write')
    .option('--chunk-tokens <n>', `tokens per chunk (default ${DEFAULT_BUILD_CHUNK_TOKENS})`)
    .option('--field <name>', 'JSON field holding the text', 'text')
    .option('--model <path>', "also store this model's own continuations of each document's opening sentences (the model the pool serves)")
    .option('--self-openings <n>', `openings per document: its first 1..n sentences, each continued greedily (default ${DEFAULT_SELF_CONTINUATIONS.openings})`)
    .option('--self-temperatures <list>', `temperatures at which the first opening is also sampled (default ${DEFAULT_SELF_CONTINUATIONS.sampledTemperatures.join(',')}; 0 = none)`)
    .option('--self-max-tokens <n>', `new tokens per continuation (default ${DEFAULT_SELF_CONTINUATIONS.maxTokens})`)
    .option('--self-documents <n>', 'continue only the first n documents (default: all)')
    .option('--no-self-read-corpus', "leave the documents' own positions out of the next-token table (it holds the model's distributions at every position of them and of its continuations)")
    .option('--self-samples <n>', `with --model, instead of --input: the corpus is n (at most 100,000) of the model's own stories, sampled from its start token alone (temperature 1, seeded: reproducible; up to ${SELF_SAMPLE_MAX_TOKENS} tokens each); a datastore for a model without a corpus`)
    .option('--threads <n>', "onnxruntime intra-op threads for the model's samples and continuations (default: the cores, at most 8)")
    .addHelpText('after', `\nEnvironment (SSSD_TOKENIZER always; the rest with --model):\n${modelEnvironmentHelp(['SSSD_THREADS'])}\n`)
    .action((opts: BuildFlags) => buildCommand(opts));
  ds.command('info')
    .description("show what a datastore file holds (and verify its checksum, and its next-token table's; exit 2 where either is unreadable)")
    .argument('<file>', 'datastore file')
    .option('--json', 'print one JSON object')
    .action((file: string, opts) => infoCommand(file, opts));
  ds.command('bench')
    .description('time lookups on a datastore file (median, p99)')
    .argument('<file>', 'datastore file')
    .option('--lookups <n>', 'lookups to time (default 20000)')
    .option('--seed <n>', 'seed for picking contexts (default 1)')
    .option('--cold-mb <n>', 'before each lookup, read this many MB of other memory at random, as the pool does between lookups (default 0: back to back)')
    .option('--contexts-from <jsonl>', 'take contexts from the prefixes of these texts instead of the store itself')
    .option('--tokenizer <path>', 'tokenizer for --contexts-from')
    .option('--field <name>', 'JSON field holding the text for --contexts-from', 'prompt')
    .action((file: string, opts) => benchCommand(file, opts));
}
