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
import type { PoolEventDecoder } from '../shared/pool-event-decoder';
import { encodeEventFrame, PoolEventFrameDecoder } from '../shared/pool-event-frames';
import { encodeEventLine, PoolEventLineDecoder } from '../shared/pool-event-lines';
import type { PoolEvent } from '../shared/protocol';
import { ApiError } from './api-error';
import { parseBody } from './request-schema';
import type { ServedModel } from './served-model';

/**
 * workerd's clock stands still while it computes, so no deadline can end a
 * long run: its size is bounded instead. Text a request may give in one
 * field, and in its history all told; and the work of all its repeats, in
 * units of about 13 ns on the development machine (a character of prompt or
 * output, a byte of the user cache, 1/64 of a trie node, 1/96 of an output
 * token read back as pool events): 200,000,000 is about 3 s, and the
 * documented runs (1,000 repeats of a 64 KiB cache) take ~100,000,000.
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
  /** Output tokens per `tokens` event as the pool's steps send them (1 = plain decoding; speculation sends several). */
  stepTokens: z.number().int().min(1).max(64).default(1),
});

export interface EdgeCpuFigures {
  repeat: number;
  cacheBytes: number;
  promptTokens: number;
  trieBytes: number;
  /** Microseconds per request, each part alone. */
  /**
   * cacheDecode is the request path's (no checksum, user-cache-store.ts);
   * cacheCheck a checked decode, apart (the merge inside cacheMerge sums
   * the old value's checksum beside its new value's since 2026-12-06, in
   * one loop; not added to the totals). poolEvents: reading the output back from the
   * pool as event frames, as the edge does; poolEventsNdjson the same as
   * NDJSON, what it cost before frames (not in the totals).
   */
  microseconds: {
    tokenize: number;
    cacheDecode: number;
    cacheCheck: number;
    trieDraft: number;
    cacheMerge: number;
    poolEvents: number;
    poolEventsNdjson: number;
    userCache: number;
    total: number;
  };
  /** The pool events read per request: one per step, and `done`. */
  poolEventCount: number;
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
  const work = opts.repeat * (opts.prompt.length + (opts.output ?? opts.prompt).length + cacheBytes.length + 64 * opts.trieNodes + 96 * outputIds.length);
  if (work > BENCH_WORK_UNITS) {
    throw new ApiError(
      400,
      `repeat: this run is ${work.toLocaleString('en-US')} units of work, repeat × (prompt + output characters + ${cacheBytes.length.toLocaleString('en-US')} bytes of user cache + 64 × trieNodes + 96 × ${outputIds.length} output tokens), more than ${BENCH_WORK_UNITS.toLocaleString('en-US')}: lower repeat (the edge computes it all at once)`,
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
  // The output as a pool sends it: a chunk per step (one socket write each), then `done`.
  const events = poolEventsOf(outputIds, opts.stepTokens, promptIds.length);
  const frameChunks = events.map(encodeEventFrame);
  const lineEncoder = new TextEncoder();
  const lineChunks = events.map((e) => lineEncoder.encode(encodeEventLine(e)));
  const poolEvents = await timeIt(n, io, () => {
    sink += readEvents(new PoolEventFrameDecoder(), frameChunks);
  });
  const poolEventsNdjson = await timeIt(n, io, () => {
    sink += readEvents(new PoolEventLineDecoder(), lineChunks);
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
      poolEvents,
      poolEventsNdjson,
      userCache: cacheDecode + trieDraft + cacheMerge,
      total: tokenize + cacheDecode + trieDraft + cacheMerge + poolEvents,
    },
    poolEventCount: events.length,
    baselineMs,
  };
}

/** A generation's events for `outputIds`, `stepTokens` a step, the last of each step the bonus token. */
function poolEventsOf(outputIds: number[], stepTokens: number, promptTokens: number): PoolEvent[] {
  const events: PoolEvent[] = [];
  for (let i = 0; i < outputIds.length; i += stepTokens) {
    const ids = outputIds.slice(i, i + stepTokens);
    const sources = ids.map((_, k): 'datastore' | 'model' => (k === ids.length - 1 ? 'model' : 'datastore'));
    events.push({ type: 'tokens', ids, sources, drafted: stepTokens === 1 ? 0 : 2 * stepTokens, accepted: ids.length - 1 });
  }
  const speculation = { drafts: 0, draftTokens: 0, acceptedTokens: 0, steps: events.length, meanAcceptanceLength: outputIds.length / Math.max(1, events.length) };
  events.push({ type: 'done', finishReason: 'length', usage: { promptTokens, completionTokens: outputIds.length, speculation } });
  return events;
}

/** Every event of `chunks`, as the edge reads a stream: a number so the work is not optimised away. */
function readEvents(decoder: PoolEventDecoder, chunks: Uint8Array[]): number {
  let seen = 0;
  for (const chunk of chunks) {
    decoder.push(chunk);
    for (let event = decoder.next(); event !== null; event = decoder.next()) seen += typeof event === 'string' ? 1000 : event.type.length;
  }
  return seen;
}
