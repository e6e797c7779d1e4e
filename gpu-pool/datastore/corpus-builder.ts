/**
 * Builds datastore chunks from a JSONL corpus (one document per line, text in
 * a string field): tokenize each document (BOS first, as the model sees a
 * story), pack the documents into chunks, index each chunk.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Tokenizer } from '../../shared/tokenizer/tokenizer';
import { CliError } from '../cli/cli-error';
import type { ModelRunner } from '../runtime/model-runner';
import { ChunkPacker } from './chunk-packer';
import { indexChunk, type DatastoreChunk } from './datastore-chunk';
import { NextTokenTable, NextTokenTableBuilder } from '../../shared/drafting/next-token-table';
import { generateSelfContinuations, selfContinuationJobs, type SelfContinuationOptions } from './self-continuations';
import { readCorpusDistributions } from './corpus-distributions';

export interface CorpusBuildProgress {
  phase: 'sample' | 'tokenize' | 'generate' | 'read' | 'index';
  /** Stories sampled (sample: `datastore build --self-samples`), bytes read (tokenize), continuations generated (generate), documents read into the table (read) or tokens indexed (index). */
  done: number;
  total: number;
}

export interface CorpusBuildOptions {
  input: string;
  tokenizer: Tokenizer;
  /** JSON field holding the document text (default "text"). */
  field?: string;
  chunkTokens?: number;
  /** Also store the served model's continuations of the documents' openings (self-continuations.ts). */
  selfContinuations?: { runner: ModelRunner; options: SelfContinuationOptions };
  onProgress?: (p: CorpusBuildProgress) => void;
}

export interface CorpusBuildResult {
  chunks: DatastoreChunk[];
  documents: number;
  tokens: number;
  /** The model's next-token distributions over its continuations; null without selfContinuations. */
  nextTokens: NextTokenTable | null;
  /** Of documents and tokens: the model's own continuations. */
  selfDocuments: number;
  selfTokens: number;
  tokenizeSeconds: number;
  generateSeconds: number;
  /** Reading the documents' own positions into the next-token table (0 when not asked). */
  readSeconds: number;
  /** The documents' positions read into the next-token table (0 when not asked). */
  corpusPositions: number;
  indexSeconds: number;
}

/**
 * Offline chunks are large: every lookup binary-searches every chunk, so one
 * 10M-token chunk answers ~3x faster than ten 1M-token ones. Live appends go to
 * smaller chunks of their own (Datastore `chunkTokens`).
 */
export const DEFAULT_BUILD_CHUNK_TOKENS = 1 << 24;

export async function buildChunksFromJsonl(opts: CorpusBuildOptions): Promise<CorpusBuildResult> {
  const field = opts.field ?? 'text';
  const chunkTokens = opts.chunkTokens ?? DEFAULT_BUILD_CHUNK_TOKENS;
  let totalBytes: number;
  try {
    const st = await stat(opts.input);
    if (st.isDirectory()) throw new CliError(`corpus ${opts.input} is a folder; name a JSONL file`);
    totalBytes = st.size;
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`corpus not found: ${opts.input}`);
  }

  const t0 = performance.now();
  const packer = new ChunkPacker(opts.tokenizer.bosId, chunkTokens);
  const stream = createReadStream(opts.input, { encoding: 'utf8' });
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let lineNo = 0;
  let documents = 0;
  let bytesRead = 0;
  const texts: string[] = [];
  try {
    for await (const line of lines) {
      lineNo++;
      bytesRead += Buffer.byteLength(line, 'utf8') + 1;
      if (line.trim() === '') continue;
      let record: unknown;
      try {
        record = JSON.parse(line);
      } catch (err) {
        throw new CliError(`${opts.input}:${lineNo}: not valid JSON (${(err as Error).message})`);
      }
      const text = record !== null && typeof record === 'object' ? (record as Record<string, unknown>)[field] : undefined;
      if (typeof text !== 'string') {
        throw new CliError(`${opts.input}:${lineNo}: expected an object with a string "${field}" field`);
      }
      packer.add(opts.tokenizer.encode(text, { bos: true }));
      if (opts.selfContinuations && texts.length < (opts.selfContinuations.options.documents ?? Infinity)) texts.push(text);
      documents++;
      if (documents % 256 === 0) opts.onProgress?.({ phase: 'tokenize', done: Math.min(bytesRead, totalBytes), total: totalBytes });
    }
  } finally {
    lines.close();
    stream.destroy();
  }
  opts.onProgress?.({ phase: 'tokenize', done: totalBytes, total: totalBytes });
  const t1 = performance.now();

  let self = { documents: 0, tokens: 0 };
  let readSeconds = 0;
  let corpusPositions = 0;
  let nextTokens: NextTokenTable | null = null;
  if (opts.selfContinuations) {
    const { runner, options } = opts.selfContinuations;
    const jobs = selfContinuationJobs(texts, opts.tokenizer, runner.config.contextLength, options);
    const table = new NextTokenTableBuilder(runner.config.vocabSize);
    self = await generateSelfContinuations(runner, jobs, (doc) => packer.add(doc), {
      onProgress: (done, total) => opts.onProgress?.({ phase: 'generate', done, total }),
      nextTokens: table,
    });
    if (options.readCorpus) {
      const tRead = performance.now();
      const docs = texts.map((t) => Int32Array.from(opts.tokenizer.encode(t, { bos: true })));
      corpusPositions = await readCorpusDistributions(runner, docs, table, (done, total) => opts.onProgress?.({ phase: 'read', done, total }));
      readSeconds = (performance.now() - tRead) / 1000;
    }
    nextTokens = table.build();
    documents += self.documents;
  }
  const packed = packer.finish();
  const tGen = performance.now();

  const tokens = packed.reduce((s, c) => s + c.length, 0);
  const chunks: DatastoreChunk[] = [];
  let indexed = 0;
  opts.onProgress?.({ phase: 'index', done: 0, total: tokens });
  for (const c of packed) {
    chunks.push(indexChunk(c));
    indexed += c.length;
    opts.onProgress?.({ phase: 'index', done: indexed, total: tokens });
  }
  const t2 = performance.now();
  return {
    chunks,
    documents,
    tokens,
    nextTokens,
    selfDocuments: self.documents,
    selfTokens: self.tokens,
    tokenizeSeconds: (t1 - t0) / 1000,
    generateSeconds: (tGen - t1) / 1000 - readSeconds,
    readSeconds,
    corpusPositions,
    indexSeconds: (t2 - tGen) / 1000,
  };
}
