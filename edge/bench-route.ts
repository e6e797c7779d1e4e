/**
 * POST /bench/edge-cpu (only with SSSD_BENCH_ROUTES=1): the edge's pure CPU work
 * per request, measured inside workerd. workerd does not advance its clock
 * during pure computation (Spectre mitigation): the clock moves at I/O. So each
 * part runs `repeat` times between two KV reads, and the time of the same two
 * reads with no work in between is subtracted.
 */
import { z } from 'zod';
import { draftEdgeTrie } from '../shared/drafting/edge-trie';
import { mergeIntoUserCache, UserCache } from '../shared/drafting/user-cache';
import { ApiError } from './api-error';
import { parseBody } from './request-schema';
import type { ServedModel } from './served-model';

/**
 * workerd's clock stands still while it computes, so no deadline can end a
 * long run: its size is bounded instead. Text a request may give in one
 * field, and in its history all told; and the work of all its repeats, in
 * units of about 13 ns on the development machine (a character of prompt or
 * output, a byte of the user cache, 1/64 of a trie node): 200,000,000 is
 * about 3 s, and the documented runs (1,000 repeats of a 64 KiB cache) take
 * ~80,000,000.
 */
const BENCH_TEXT_CHARS = 16_384;
const BENCH_HISTORY_CHARS = 262_144;
export const BENCH_WORK_UNITS = 200_000_000;

const benchSchema = z.object({
  prompt: z.string().min(1).max(BENCH_TEXT_CHARS),
  /** Earlier texts of the same user: merged into the cache before timing. */
  history: z
    .array(z.string().max(BENCH_TEXT_CHARS))
    .max(256)
    .default([])
    .refine((h) => h.reduce((n, t) => n + t.length, 0) <= BENCH_HISTORY_CHARS, { message: `history must hold at most ${BENCH_HISTORY_CHARS.toLocaleString('en-US')} characters in all` }),
  /** The request's output (merged at the end); default: the prompt again. */
  output: z.string().max(BENCH_TEXT_CHARS).optional(),
  repeat: z.number().int().min(1).max(100_000).default(500),
  trieNodes: z.number().int().min(1).max(4096).default(128),
  maxBytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(64 * 1024),
});

export interface EdgeCpuFigures {
  repeat: number;
  cacheBytes: number;
  promptTokens: number;
  trieBytes: number;
  /** Microseconds per request, each part alone. */
  /**
   * cacheDecode is the request path's (no checksum, user-cache-store.ts);
   * cacheCheck the checked decode the merge does inside cacheMerge (not
   * added to the totals again).
   */
  microseconds: { tokenize: number; cacheDecode: number; cacheCheck: number; trieDraft: number; cacheMerge: number; userCache: number; total: number };
  /** Clock advance seen over the empty I/O baseline (ms): 0 would mean the clock did not move. */
  baselineMs: number;
}

let sink = 0;

async function timeIt(repeat: number, io: () => Promise<unknown>, work: () => void): Promise<number> {
  await io();
  const b0 = performance.now();
  await io();
  const baseline = performance.now() - b0;
  await io();
  const t0 = performance.now();
  for (let i = 0; i < repeat; i++) work();
  await io();
  const elapsed = performance.now() - t0 - baseline;
  return Math.max(0, (elapsed * 1000) / repeat);
}

export async function benchEdgeCpu(body: unknown, model: ServedModel, kv: KVNamespace): Promise<EdgeCpuFigures> {
  const opts = parseBody(benchSchema, body);
  const tokenizer = model.tokenizer;
  let bytes: Uint8Array | null = null;
  // As the Worker keeps them: values that name the model's vocabulary.
  const vocabSize = tokenizer.vocabSize;
  // Each merge re-reads and re-writes the whole cache: counted as it grows, against the same bound.
  let historyWork = 0;
  for (const text of opts.history) {
    historyWork += (bytes?.length ?? 0) + text.length;
    if (historyWork > BENCH_WORK_UNITS) {
      throw new ApiError(400, `history: merging it is past ${BENCH_WORK_UNITS.toLocaleString('en-US')} units of work (the cache read and written once a text); send fewer or shorter texts, or a smaller maxBytes`, 'invalid_request_error', 'invalid_value', 'history');
    }
    bytes = mergeIntoUserCache(bytes, tokenizer.encode(text), { maxBytes: opts.maxBytes, vocabSize });
  }
  const cacheBytes = bytes ?? mergeIntoUserCache(null, [], { maxBytes: opts.maxBytes, vocabSize });
  const promptIds = tokenizer.encode(opts.prompt);
  const outputIds = tokenizer.encode(opts.output ?? opts.prompt, { bos: false });
  const finished = promptIds.concat(outputIds);
  const cache = UserCache.decode(cacheBytes, { vocabSize, verify: false });
  const work = opts.repeat * (opts.prompt.length + (opts.output ?? opts.prompt).length + cacheBytes.length + 64 * opts.trieNodes);
  if (work > BENCH_WORK_UNITS) {
    throw new ApiError(
      400,
      `repeat: this run is ${work.toLocaleString('en-US')} units of work, repeat × (prompt + output characters + ${cacheBytes.length.toLocaleString('en-US')} bytes of user cache + 64 × trieNodes), more than ${BENCH_WORK_UNITS.toLocaleString('en-US')}: lower repeat (the edge computes it all at once)`,
      'invalid_request_error',
      'invalid_value',
      'repeat',
    );
  }
  const trie = draftEdgeTrie(cache, promptIds, { maxNodes: opts.trieNodes });
  const io = (): Promise<unknown> => kv.get('bench:clock-tick');
  const n = opts.repeat;

  const tokenize = await timeIt(n, io, () => {
    sink += tokenizer.encode(opts.prompt).length;
  });
  const cacheDecode = await timeIt(n, io, () => {
    sink += UserCache.decode(cacheBytes, { vocabSize, verify: false }) === cache ? 1 : 0;
  });
  const cacheCheck = await timeIt(n, io, () => {
    sink += UserCache.decode(cacheBytes, { vocabSize }) === cache ? 1 : 0;
  });
  const trieDraft = await timeIt(n, io, () => {
    sink += draftEdgeTrie(cache, promptIds, { maxNodes: opts.trieNodes }).length;
  });
  const cacheMerge = await timeIt(n, io, () => {
    sink += mergeIntoUserCache(cacheBytes, finished, { maxBytes: opts.maxBytes, vocabSize }).length;
  });
  await io();
  const b0 = performance.now();
  await io();
  const baselineMs = performance.now() - b0;
  return {
    repeat: n,
    cacheBytes: cacheBytes.length,
    promptTokens: promptIds.length,
    trieBytes: trie.length + (sink & 0), // keep `sink` alive so the work is not optimised away
    microseconds: {
      tokenize,
      cacheDecode,
      cacheCheck,
      trieDraft,
      cacheMerge,
      userCache: cacheDecode + trieDraft + cacheMerge,
      total: tokenize + cacheDecode + trieDraft + cacheMerge,
    },
    baselineMs,
  };
}
