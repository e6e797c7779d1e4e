/**
 * The bench's edge, split as the real one is. Drafting a trie from the user's
 * cache is on the request path (~40 µs on dev-sessions), so it runs on the
 * client's thread; merging a finished request back into the cache is the
 * edge's waitUntil work, off the response path (66 µs to ~1 ms as a cache
 * grows to 256 KiB), so it runs on a worker thread that sends each merged
 * cache back.
 *
 * Why not all on one side: with the whole edge in the client's thread, the
 * merges (several ms each before the user-cache codec got faster) stalled the
 * reading of every stream in flight, and at concurrency 8+ the client set the
 * pace. With the whole edge on the worker, each trie was a round trip to a
 * sleeping thread: ~0.9 ms on the 2-core VM against 36 µs of drafting, paid
 * before every `sssd` request and never by `off` (at concurrency 1 the gaps
 * between requests came to 109 ms of an `sssd` level's 2.8 s; split, 46-50 ms;
 * `off`, 14 ms).
 *
 * A trie waits only for merges of its own user still on the worker (the
 * user's previous turn must be in the cache it drafts from); other users'
 * merges never hold it up. Falls back to all in-thread where a worker cannot
 * start.
 */
import { Worker } from 'node:worker_threads';
import { EdgeEmulator } from './edge-emulator';

export type EdgeWorkerRequest =
  | { type: 'reset'; epoch: number; vocabSize: number }
  | { type: 'record'; epoch: number; user: string; promptIds: number[]; outputIds: number[] };

/** The worker's messages: `ready` once its modules are loaded, then a merged cache after each record of the current epoch. */
export type EdgeWorkerReply = { type: 'ready' } | { type: 'merged'; epoch: number; user: string; cache: Uint8Array };

export interface BenchEdge {
  /**
   * Resolves once the edge can work at full speed: the merge thread has
   * loaded its modules (~0.5 s of CPU on two threads under tsx). The bench
   * waits for it before its warm-up, so that start-up does not compete with
   * the pool during the first measured level.
   */
  ready(): Promise<void>;
  /** Base64 trie for this user's prompt, at most `maxDepth` deep (EdgeEmulator.trieFor), or undefined when the user has no history yet. */
  trieFor(user: string, promptIds: readonly number[], greedy?: boolean, maxDepth?: number): Promise<string | undefined>;
  /** Merges a finished request into the user's cache (after the response, as the edge's waitUntil). */
  record(user: string, promptIds: readonly number[], outputIds: readonly number[]): void;
  /** Empties every user's cache. */
  reset(): void;
  close(): Promise<void>;
}

/** The edge with its merges on a worker thread, or all in this thread when no worker can start. */
export function startBenchEdge(vocabSize: number): BenchEdge {
  try {
    return new MergeThreadEdge(vocabSize);
  } catch {
    return new InThreadEdge(vocabSize);
  }
}

class InThreadEdge implements BenchEdge {
  private edge: EdgeEmulator;
  constructor(private readonly vocabSize: number) {
    this.edge = new EdgeEmulator(vocabSize);
  }
  ready(): Promise<void> {
    return Promise.resolve();
  }
  trieFor(user: string, promptIds: readonly number[], greedy = true, maxDepth = Infinity): Promise<string | undefined> {
    return Promise.resolve(this.edge.trieFor(user, promptIds, greedy, maxDepth));
  }
  record(user: string, promptIds: readonly number[], outputIds: readonly number[]): void {
    setImmediate(() => this.edge.record(user, promptIds, outputIds));
  }
  reset(): void {
    this.edge = new EdgeEmulator(this.vocabSize);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

export class MergeThreadEdge implements BenchEdge {
  private readonly worker: Worker;
  /** This thread's copy of every user's cache (tries are drafted from it). */
  private edge: EdgeEmulator;
  /** Bumped by reset: merges of an earlier epoch are dropped when they come back. */
  private epoch = 0;
  /** Merges recorded in this turn, not posted yet (see flush). */
  private outbox: EdgeWorkerRequest[] = [];
  /** Merges recorded and not back yet, per user. */
  private readonly inFlight = new Map<string, number>();
  private readonly waiting = new Map<string, Waiter[]>();
  private failed: Error | null = null;
  private readonly started: Promise<void>;
  private markStarted: (err?: Error) => void = () => undefined;

  constructor(private readonly vocabSize: number) {
    this.edge = new EdgeEmulator(vocabSize);
    this.started = new Promise<void>((resolve, reject) => {
      this.markStarted = (err) => (err ? reject(err) : resolve());
    });
    // Awaited or not: a worker that fails before `ready` must not leave an unhandled rejection.
    this.started.catch(() => undefined);
    // edge-worker.mjs registers tsx (a worker does not inherit the parent's loader), then loads edge-worker.ts.
    this.worker = new Worker(new URL('./edge-worker.mjs', import.meta.url));
    this.worker.unref();
    this.worker.on('message', (reply: EdgeWorkerReply) => (reply.type === 'ready' ? this.markStarted() : this.merged(reply)));
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`bench edge worker exited (${code})`)));
    this.post({ type: 'reset', epoch: this.epoch, vocabSize });
  }

  ready(): Promise<void> {
    return this.started;
  }

  async trieFor(user: string, promptIds: readonly number[], greedy = true, maxDepth = Infinity): Promise<string | undefined> {
    if (this.failed) throw this.failed;
    // Nothing to draft: no wait for the user's merges.
    if (maxDepth < 1) return undefined;
    if ((this.inFlight.get(user) ?? 0) > 0) {
      await new Promise<void>((resolve, reject) => {
        const list = this.waiting.get(user) ?? [];
        list.push({ resolve, reject });
        this.waiting.set(user, list);
      });
    }
    return this.edge.trieFor(user, promptIds, greedy, maxDepth);
  }

  record(user: string, promptIds: readonly number[], outputIds: readonly number[]): void {
    if (this.failed) return;
    // Counted now, so this user's next trie waits for the merge; posted after
    // this turn, once the client has sent whatever request it starts next.
    this.inFlight.set(user, (this.inFlight.get(user) ?? 0) + 1);
    this.outbox.push({ type: 'record', epoch: this.epoch, user, promptIds: [...promptIds], outputIds: [...outputIds] });
    if (this.outbox.length === 1) setImmediate(this.flush);
  }

  /**
   * Posts the merges recorded in the last turn. A postMessage that wakes the
   * sleeping worker took ~240 µs of the client's thread on the 2-core VM (25
   * µs in isolation): paid before the next request went out, it held the pool
   * idle at concurrency 1, where the edge's waitUntil work never holds up
   * a request.
   */
  private readonly flush = (): void => {
    const batch = this.outbox;
    this.outbox = [];
    for (const m of batch) this.post(m);
  };

  reset(): void {
    this.epoch++;
    this.edge = new EdgeEmulator(this.vocabSize);
    this.inFlight.clear();
    this.outbox = [];
    // Tries waiting on a merge of the old epoch go on with the emptied caches.
    for (const list of this.waiting.values()) for (const w of list) w.resolve();
    this.waiting.clear();
    this.post({ type: 'reset', epoch: this.epoch, vocabSize: this.vocabSize });
  }

  async close(): Promise<void> {
    this.fail(new Error('bench edge closed'));
    await this.worker.terminate();
  }

  private merged(reply: Extract<EdgeWorkerReply, { type: 'merged' }>): void {
    if (reply.epoch !== this.epoch) return;
    this.edge.adopt(reply.user, reply.cache);
    const left = (this.inFlight.get(reply.user) ?? 1) - 1;
    if (left > 0) {
      this.inFlight.set(reply.user, left);
      return;
    }
    this.inFlight.delete(reply.user);
    const list = this.waiting.get(reply.user);
    this.waiting.delete(reply.user);
    if (list) for (const w of list) w.resolve();
  }

  private post(message: EdgeWorkerRequest): void {
    if (!this.failed) this.worker.postMessage(message);
  }

  private fail(err: Error): void {
    if (this.failed) return;
    this.failed = err;
    this.markStarted(err);
    for (const list of this.waiting.values()) for (const w of list) w.reject(err);
    this.waiting.clear();
  }
}
