/**
 * The global datastore (SSSD "draft source 2"): suffix arrays over a token
 * corpus, in chunks, answering "what followed this context elsewhere?".
 *
 * Lookup: for the longest context suffix (up to `maxQuery` tokens) that occurs
 * in the store, binary searches per chunk give the range of suffixes starting
 * with it; up to `maxMatches` matches are taken at evenly spaced positions of
 * the combined range (chunks in order), and the `width` tokens after each are
 * returned (a continuation stops after a document separator: the story ended).
 * While fewer than `minMatches` were found, the query drops its first token and
 * the search repeats, accumulating. An occurrence already counted at a longer
 * length is not counted again, so every match is a distinct corpus position
 * with its longest match length.
 *
 * Live appends: finished outputs are queued; a background job appends them to
 * the last chunk of appended outputs (or new chunks past `chunkTokens`; the
 * chunks the store was made with stay as they are), indexes the copy on a
 * worker thread and swaps it in. Lookups are synchronous and read the chunk
 * list once, so they always see a complete old or new index and never wait.
 * Each rebuild re-indexes the whole live chunk (~170 ms of a core at 2^20
 * tokens), so under a steady stream of appends the worker would never rest;
 * after a rebuild of d ms the next waits d * (1/indexerDuty - 1), which keeps
 * the indexer to that share of a core and lets more appends share a rebuild.
 */
import { ChunkPacker } from './chunk-packer';
import { createChunk, findRange, hasMatch, indexChunk, type DatastoreChunk } from './datastore-chunk';
import { readDatastoreFile, writeDatastoreFile, DatastoreFileError } from './datastore-file';
import { createInlineIndexer, createWorkerIndexer, type SuffixArrayIndexer } from './suffix-array-indexer';
import { MAX_SUFFIX_ARRAY_ALPHABET } from './suffix-array';

export interface DatastoreMatches {
  /** Matches written. */
  count: number;
  /** Tokens per continuation. */
  width: number;
  /** count*width continuation tokens; -1 past the end of the chunk or after a document separator. */
  tokens: Int32Array;
  /** Per match, the length of the context suffix it matched. */
  matchLengths: Uint8Array;
}

export interface DatastoreLookupOptions {
  /** Longest context suffix searched (default 12, at most 255). */
  maxQuery?: number;
  /** Continuation tokens per match (default 8). */
  width?: number;
  /** Most matches returned (default 100). */
  maxMatches?: number;
  /** Back off to shorter suffixes while fewer than this were found (default 50). */
  minMatches?: number;
}

export const DEFAULT_LOOKUP: Readonly<Required<DatastoreLookupOptions>> = { maxQuery: 12, width: 8, maxMatches: 100, minMatches: 50 };

export interface DatastoreOptions {
  /**
   * Largest chunk a live append extends, past which appends open a new chunk
   * (default 2^20 tokens, or the file's chunk size when smaller): it bounds the
   * cost of one background rebuild. Appends never go into the chunks the
   * store was made with, so those are never re-indexed.
   */
  chunkTokens?: number;
  /**
   * Chunks of appended outputs kept (default 64): past this many, the oldest
   * of them is dropped. The chunks the store was built with are never
   * dropped nor extended; a saved file's chunks of contributed outputs are
   * appended ones again once loaded (counted, extended, dropped).
   */
  maxChunks?: number;
  /** Document separator (default 1, BOS in the llama2.c models); kept from the file when loading. */
  separatorId?: number;
  /** Token ids must be below this (0 = unknown; then any id below 2^24). */
  vocabSize?: number;
  /** Hex SHA-256 of the tokenizer file; '' = unknown. */
  tokenizerSha256?: string;
  /** Where live appends are indexed (default 'worker'). */
  indexer?: 'worker' | 'inline';
  /**
   * Most of the wall time the background rebuilds may take, in (0, 1]
   * (default 0.25): on a pool whose cores serve passes, a worker rebuilding
   * back to back would take one of them. `flush` skips the wait.
   */
  indexerDuty?: number;
}

/** What the live appends have cost so far (`Datastore.indexing`). */
export interface DatastoreIndexingStats {
  /** Rebuilds swapped in. */
  rebuilds: number;
  /** Wall seconds the rebuilds took (packing, indexing, swapping). */
  seconds: number;
  /** Tokens appended but not yet searchable. */
  pendingTokens: number;
}

export interface DatastoreLoadOptions extends Omit<DatastoreOptions, 'separatorId' | 'vocabSize' | 'tokenizerSha256'> {
  /** Reject a file built for another vocabulary size. */
  expectVocabSize?: number;
  /** Whose vocabulary expectVocabSize is, as the refusal names it (default "the model"; a model-free command's is its tokenizer's). */
  expectVocabOf?: string;
  /** Reject a file built with another tokenizer (hex SHA-256 of the tokenizer file); files that recorded none pass. */
  expectTokenizerSha256?: string;
}

const DEFAULT_CHUNK_TOKENS = 1 << 20;
const DEFAULT_MAX_CHUNKS = 64;
const DEFAULT_INDEXER_DUTY = 0.25;

/** A result buffer for `lookup`, reusable across calls. */
export function createDatastoreMatches(maxMatches = DEFAULT_LOOKUP.maxMatches, width = DEFAULT_LOOKUP.width): DatastoreMatches {
  return { count: 0, width, tokens: new Int32Array(maxMatches * width), matchLengths: new Uint8Array(maxMatches) };
}

export class Datastore {
  readonly separatorId: number;
  readonly vocabSize: number;
  readonly tokenizerSha256: string;
  readonly chunkTokens: number;
  readonly maxChunks: number;
  readonly indexerDuty: number;

  private chunks: readonly DatastoreChunk[] = [];
  // The first baseCount chunks were built (a corpus): appends go into chunks after them.
  private baseCount: number;
  private chunkGeneration = 0;
  private visibleTokens = 0;
  // Per-chunk search ranges [lo, hi) at 2c, 2c+1; sized when the chunk list changes so lookup never allocates.
  private ranges = new Int32Array(0);

  private queue: Int32Array[] = [];
  private queuedTokens = 0;
  private job: Promise<void> | null = null;
  private idleWaiters: Array<() => void> = [];
  private indexer: SuffixArrayIndexer | null = null;
  private closed = false;
  private failure: Error | null = null;
  private rebuilds = 0;
  private indexSeconds = 0;
  // The pause between two rebuilds (see indexerDuty), and how to cut it short.
  private restTimer: NodeJS.Timeout | null = null;
  private endRest: (() => void) | null = null;
  // A flush is waiting: rebuild back to back until the queue is empty.
  private urgent = false;

  private constructor(
    chunks: readonly DatastoreChunk[],
    private readonly opts: DatastoreOptions & { separatorId: number },
    builtChunks = chunks.length,
  ) {
    this.separatorId = opts.separatorId;
    this.vocabSize = opts.vocabSize ?? 0;
    this.tokenizerSha256 = opts.tokenizerSha256 ?? '';
    this.chunkTokens = opts.chunkTokens ?? DEFAULT_CHUNK_TOKENS;
    this.maxChunks = opts.maxChunks ?? DEFAULT_MAX_CHUNKS;
    if (!Number.isInteger(this.chunkTokens) || this.chunkTokens < 2 || this.chunkTokens > 0x7fffffff) {
      throw new RangeError(`chunkTokens must be an integer in [2, 2^31), got ${this.chunkTokens}`);
    }
    if (!Number.isInteger(this.maxChunks) || this.maxChunks < 1) throw new RangeError(`maxChunks must be a positive integer, got ${this.maxChunks}`);
    this.indexerDuty = opts.indexerDuty ?? DEFAULT_INDEXER_DUTY;
    if (!(this.indexerDuty > 0 && this.indexerDuty <= 1)) throw new RangeError(`indexerDuty must be in (0, 1], got ${this.indexerDuty}`);
    this.baseCount = builtChunks;
    this.setChunks(chunks);
  }

  /** An empty datastore (cold start); appends fill it. */
  static empty(opts: DatastoreOptions = {}): Datastore {
    return new Datastore([], { ...opts, separatorId: opts.separatorId ?? 1 });
  }

  /** Indexes documents on this thread (tests, small corpora, offline evaluation). */
  static fromDocuments(docs: Iterable<ArrayLike<number>>, opts: DatastoreOptions = {}): Datastore {
    const separatorId = opts.separatorId ?? 1;
    const packer = new ChunkPacker(separatorId, opts.chunkTokens ?? DEFAULT_CHUNK_TOKENS);
    const store = new Datastore([], { ...opts, separatorId });
    for (const doc of docs) {
      store.checkTokens(doc);
      packer.add(doc);
    }
    const chunks = packer.finish().map(indexChunk);
    store.baseCount = chunks.length;
    store.setChunks(chunks);
    return store;
  }

  /** Wraps already-indexed chunks (as read from a file). */
  static fromChunks(chunks: readonly DatastoreChunk[], opts: DatastoreOptions = {}): Datastore {
    return new Datastore(chunks, { ...opts, separatorId: opts.separatorId ?? 1 });
  }

  /** Loads a file written by `save` or `sssd datastore build`; no re-indexing. */
  static async load(file: string, opts: DatastoreLoadOptions = {}): Promise<Datastore> {
    const contents = await readDatastoreFile(file);
    if (opts.expectVocabSize !== undefined && contents.vocabSize !== 0 && contents.vocabSize !== opts.expectVocabSize) {
      throw new DatastoreFileError(`${file} was built for a vocabulary of ${contents.vocabSize} tokens, but ${opts.expectVocabOf ?? 'the model'} has ${opts.expectVocabSize}`);
    }
    // A file that does not say its vocabulary is checked token by token: a draft token past the model's embedding table fails the batch's pass.
    if (opts.expectVocabSize !== undefined && contents.vocabSize === 0) {
      const limit = opts.expectVocabSize;
      for (const chunk of contents.chunks) {
        const at = chunk.tokens.findIndex((t) => t < 0 || t >= limit);
        if (at >= 0) throw new DatastoreFileError(`${file} holds token ${chunk.tokens[at]}, outside ${opts.expectVocabOf ? `${opts.expectVocabOf}'s` : "the model's"} vocabulary of ${limit}`);
      }
    }
    if (opts.expectTokenizerSha256 && contents.tokenizerSha256 && contents.tokenizerSha256 !== opts.expectTokenizerSha256.toLowerCase()) {
      throw new DatastoreFileError(`${file} was built with a different tokenizer (sha256 ${contents.tokenizerSha256.slice(0, 12)}…, expected ${opts.expectTokenizerSha256.slice(0, 12)}…)`);
    }
    return new Datastore(
      contents.chunks,
      {
        ...opts,
        chunkTokens: opts.chunkTokens ?? Math.min(contents.chunkTokens || DEFAULT_CHUNK_TOKENS, DEFAULT_CHUNK_TOKENS),
        separatorId: contents.separatorId,
        // Checked above: appends are held to it and a save records it.
        vocabSize: contents.vocabSize || (opts.expectVocabSize ?? 0),
        tokenizerSha256: contents.tokenizerSha256,
      },
      contents.builtChunks,
    );
  }

  /** Tokens searchable now (separators included; queued appends not yet). */
  get tokenCount(): number {
    return this.visibleTokens;
  }

  /** Bumped whenever the searchable chunks change, so drafters can reuse a lookup for an unchanged query. */
  get generation(): number {
    return this.chunkGeneration;
  }

  /** Tokens appended but not yet searchable. */
  get pendingTokens(): number {
    return this.queuedTokens;
  }

  /** Rebuilds so far, their time, and what waits for the next one. */
  get indexing(): DatastoreIndexingStats {
    return { rebuilds: this.rebuilds, seconds: this.indexSeconds, pendingTokens: this.queuedTokens };
  }

  get chunkCount(): number {
    return this.chunks.length;
  }

  /** The chunks as they stand (immutable; a rebuild replaces them). */
  get indexedChunks(): readonly DatastoreChunk[] {
    return this.chunks;
  }

  /** Up to `maxMatches` continuations of the longest suffixes of `context`; see the file comment. Allocation-free when `out` is passed. */
  lookup(context: ArrayLike<number>, out?: DatastoreMatches, opts?: DatastoreLookupOptions): DatastoreMatches {
    const width = opts?.width ?? DEFAULT_LOOKUP.width;
    const maxMatches = opts?.maxMatches ?? DEFAULT_LOOKUP.maxMatches;
    const minMatches = opts?.minMatches ?? DEFAULT_LOOKUP.minMatches;
    const maxQuery = opts?.maxQuery ?? DEFAULT_LOOKUP.maxQuery;
    if (!out) out = createDatastoreMatches(maxMatches, width);
    else if (out.tokens.length < maxMatches * width || out.matchLengths.length < maxMatches) {
      throw new RangeError(`lookup buffer holds ${out.matchLengths.length} matches of ${out.tokens.length / Math.max(1, out.matchLengths.length)} tokens; need ${maxMatches} x ${width}`);
    }
    out.width = width;
    out.count = 0;

    const chunks = this.chunks; // one read: a swap during the call cannot mix indexes
    const chunkCount = chunks.length;
    const ranges = this.ranges;
    const sep = this.separatorId;
    const outTokens = out.tokens;
    const L = context.length;
    if (chunkCount === 0 || maxMatches <= 0 || width < 0) return out;

    // The longest suffix that occurs at all: an occurrence of a k-gram implies
    // one of its (k-1)-token suffix, so binary search on k instead of failing
    // level by level.
    let top = 0;
    let kHi = Math.min(maxQuery, L, 255);
    while (top < kHi) {
      const k = (top + kHi + 1) >>> 1;
      let found = false;
      for (let c = 0; c < chunkCount && !found; c++) found = hasMatch(chunks[c], context, L - k, k);
      if (found) top = k;
      else kHi = k - 1;
    }

    let count = 0;
    for (let k = top; k >= 1; k--) {
      if (k < top && (count >= minMatches || count >= maxMatches)) break;
      const qs = L - k;
      let total = 0;
      for (let c = 0; c < chunkCount; c++) total += findRange(chunks[c], context, qs, k, ranges, 2 * c);
      if (total === 0) continue;

      const take = Math.min(total, maxMatches - count);
      // A position preceded by this token matched one token longer at the previous level.
      const extendsLonger = k < top;
      const longerToken = extendsLonger ? context[qs - 1] : 0;
      let c = 0;
      let base = 0;
      for (let j = 0; j < take; j++) {
        const idx = Math.floor((j * total) / take);
        while (idx >= base + ranges[2 * c + 1] - ranges[2 * c]) {
          base += ranges[2 * c + 1] - ranges[2 * c];
          c++;
        }
        const chunk = chunks[c];
        const toks = chunk.tokens;
        const p = chunk.suffixArray[ranges[2 * c] + idx - base];
        if (extendsLonger && p > 0 && toks[p - 1] === longerToken) continue;
        const n = toks.length;
        const o = count * width;
        let w = 0;
        let q = p + k;
        while (w < width && q < n) {
          const t = toks[q++];
          outTokens[o + w++] = t;
          if (t === sep) break; // the story ended there
        }
        while (w < width) outTokens[o + w++] = -1;
        out.matchLengths[count] = k;
        count++;
      }
    }
    out.count = count;
    return out;
  }

  /**
   * Queues a finished sequence (e.g. prompt + output, BOS first or not) to be
   * added in the background; it becomes searchable after the rebuild
   * (`whenIdle`). Throws RangeError for ids outside the vocabulary. Ignored
   * after `close` (a server shutting down may still finish requests).
   */
  append(tokens: ArrayLike<number>): void {
    this.checkTokens(tokens);
    if (this.closed) return;
    if (tokens.length === 0) return;
    this.queue.push(Int32Array.from(tokens));
    this.queuedTokens += tokens.length;
    this.schedule();
  }

  /** Resolves once every queued append is searchable (rejects if a rebuild failed). */
  whenIdle(): Promise<void> {
    if (!this.job && this.queue.length === 0) return this.failure ? Promise.reject(this.failure) : Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.idleWaiters.push(() => (this.failure ? reject(this.failure) : resolve()));
    });
  }

  /** Starts indexing queued appends now (no rest between rebuilds) and waits for them. */
  flush(): Promise<void> {
    this.schedule();
    const idle = this.whenIdle();
    if (this.job) {
      this.urgent = true; // until this job ends (wakeIdle)
      this.stopResting();
    }
    return idle;
  }

  /** Writes the searchable chunks to `file` (atomically). Returns the bytes written. */
  async save(file: string): Promise<number> {
    return writeDatastoreFile(file, {
      vocabSize: this.vocabSize,
      separatorId: this.separatorId,
      chunkTokens: this.chunkTokens,
      tokenizerSha256: this.tokenizerSha256,
      chunks: [...this.chunks],
      // Marked, so that loaded again they stay under the cap (and restarts do not grow the file past it).
      builtChunks: this.baseCount,
    });
  }

  /** Stops the background indexer; queued appends are dropped. Lookups keep working. */
  async close(): Promise<void> {
    this.closed = true;
    this.queue = [];
    this.queuedTokens = 0;
    this.stopResting();
    const indexer = this.indexer;
    this.indexer = null;
    if (indexer) await indexer.close();
    this.wakeIdle();
  }

  private checkTokens(tokens: ArrayLike<number>): void {
    const limit = this.vocabSize > 0 ? this.vocabSize : MAX_SUFFIX_ARRAY_ALPHABET;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (!Number.isInteger(t) || t < 0 || t >= limit) throw new RangeError(`token id ${t} at ${i} is outside [0, ${limit})`);
    }
  }

  private setChunks(chunks: readonly DatastoreChunk[]): void {
    const over = chunks.length - this.baseCount - this.maxChunks;
    const kept = over > 0 ? [...chunks.slice(0, this.baseCount), ...chunks.slice(this.baseCount + over)] : chunks;
    if (this.ranges.length < 2 * kept.length) this.ranges = new Int32Array(2 * kept.length);
    let total = 0;
    for (const c of kept) total += c.tokens.length;
    this.chunks = kept;
    this.visibleTokens = total;
    this.chunkGeneration++;
  }

  private schedule(): void {
    if (this.job || this.queue.length === 0 || this.closed) return;
    // Start on the next turn so appends made in the same turn share one rebuild.
    this.job = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.runJobs());
  }

  private async runJobs(): Promise<void> {
    try {
      while (this.queue.length > 0 && !this.closed) {
        const docs = this.queue;
        this.queue = [];
        this.queuedTokens = 0;
        const started = performance.now();
        await this.integrate(docs);
        // A rebuild that close() cut off swapped nothing in: not one to count.
        if (this.closed) break;
        const ms = performance.now() - started;
        this.rebuilds++;
        this.indexSeconds += ms / 1000;
        if (this.queue.length > 0 && !this.urgent && this.indexerDuty < 1) await this.rest(ms * (1 / this.indexerDuty - 1));
      }
    } catch (err) {
      // A rebuild that `close` cut off is not a failure: its appends were to be dropped.
      if (!this.closed) this.failure = err instanceof Error ? err : new Error(String(err));
    } finally {
      this.job = null;
      this.wakeIdle();
    }
  }

  /** Waits `ms` unless `flush` or `close` cuts it short (queued appends hold the process open, as a pending build does). */
  private rest(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.endRest = resolve;
      this.restTimer = setTimeout(() => this.stopResting(), ms);
    });
  }

  private stopResting(): void {
    if (this.restTimer) clearTimeout(this.restTimer);
    this.restTimer = null;
    const end = this.endRest;
    this.endRest = null;
    end?.();
  }

  private wakeIdle(): void {
    this.urgent = false;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /** Appends documents to a copy of the last appended chunk (new chunks past the size), indexes them, swaps them in. */
  private async integrate(docs: Int32Array[]): Promise<void> {
    const before = this.chunks;
    const last = before.length > this.baseCount ? before[before.length - 1] : null;
    const packer = new ChunkPacker(this.separatorId, this.chunkTokens, last?.tokens ?? null);
    for (const doc of docs) packer.add(doc);
    const packed = packer.finish();
    const built: DatastoreChunk[] = [];
    let replacesLast = false;
    for (let i = 0; i < packed.length; i++) {
      const tokens = packed[i];
      if (i === 0 && last && last.tokens.length > 0) {
        replacesLast = true;
        if (tokens.length === last.tokens.length) {
          built.push(last); // nothing fitted; keep the old index
          continue;
        }
      }
      built.push(createChunk(tokens, await this.buildIndex(tokens)));
      if (this.closed) return;
    }
    const kept = replacesLast ? before.slice(0, -1) : before.slice();
    this.setChunks([...kept, ...built]);
  }

  private async buildIndex(tokens: Int32Array): Promise<Int32Array> {
    if (!this.indexer) this.indexer = this.opts.indexer === 'inline' ? createInlineIndexer() : createWorkerIndexer();
    try {
      return await this.indexer.build(tokens);
    } catch (err) {
      if (this.closed || this.indexer.kind === 'inline') throw err;
      // A worker that cannot start (no tsx, restricted environment) must not lose the appends.
      process.emitWarning(`datastore: indexing worker failed (${(err as Error).message}); indexing on the main thread from now on`);
      await this.indexer.close();
      this.indexer = createInlineIndexer();
      return this.indexer.build(tokens);
    }
  }
}
