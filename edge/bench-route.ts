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
import { parseBody } from './request-schema';
import type { ServedModel } from './served-model';

/** Text a request may give in one field; and the characters tokenized and merged, over all its repeats. */
const BENCH_TEXT_CHARS = 16_384;
export const BENCH_WORK_CHARS = 4_000_000;

const benchSchema = z
  .object({
    prompt: z.string().min(1).max(BENCH_TEXT_CHARS),
    /** Earlier texts of the same user: merged into the cache before timing. */
    history: z.array(z.string().max(BENCH_TEXT_CHARS)).max(256).default([]),
    /** The request's output (merged at the end); default: the prompt again. */
    output: z.string().max(BENCH_TEXT_CHARS).optional(),
    repeat: z.number().int().min(1).max(100_000).default(500),
    trieNodes: z.number().int().min(1).max(4096).default(128),
    maxBytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(64 * 1024),
  })
  // workerd's clock stands still while it computes, so no deadline can end a long run: its size is bounded instead.
  .refine((b) => b.repeat * (b.prompt.length + (b.output ?? b.prompt).length) <= BENCH_WORK_CHARS, {
    message: `repeat × (prompt + output characters) must be at most ${BENCH_WORK_CHARS.toLocaleString('en-US')}: the edge computes it all at once`,
    path: ['repeat'],
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
  for (const text of opts.history) bytes = mergeIntoUserCache(bytes, tokenizer.encode(text), { maxBytes: opts.maxBytes, vocabSize });
  const cacheBytes = bytes ?? mergeIntoUserCache(null, [], { maxBytes: opts.maxBytes, vocabSize });
  const promptIds = tokenizer.encode(opts.prompt);
  const outputIds = tokenizer.encode(opts.output ?? opts.prompt, { bos: false });
  const finished = promptIds.concat(outputIds);
  const cache = UserCache.decode(cacheBytes, { vocabSize, verify: false });
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
