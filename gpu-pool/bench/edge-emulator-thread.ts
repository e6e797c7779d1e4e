/**
 * The bench's edge, run on a worker thread. The edge's work (drafting a trie
 * from the user's cache, merging a finished request back into it: several ms
 * per request) happens on the edge's machines in production, in waitUntil,
 * off the response path. Run on the benchmark client's only thread it stalled
 * the reading of every stream in flight while it ran, so at concurrency 8+
 * the client, not the pool, set the pace of `sssd` runs (the pool sat idle
 * for a quarter of the time at 32 even for `off`). On its own thread it still
 * takes the same CPU time on this machine, but it no longer blocks the client.
 * Falls back to the in-thread EdgeEmulator where a worker cannot start.
 */
import { Worker } from 'node:worker_threads';
import { EdgeEmulator } from './edge-emulator';

export type EdgeWorkerRequest =
  | { type: 'reset'; vocabSize: number }
  | { type: 'trie'; id: number; user: string; promptIds: number[] }
  | { type: 'record'; user: string; promptIds: number[]; outputIds: number[] };

export interface EdgeWorkerReply {
  id: number;
  trie: string | undefined;
}

export interface BenchEdge {
  /** Base64 trie for this user's prompt, or undefined when the user has no history yet. */
  trieFor(user: string, promptIds: readonly number[]): Promise<string | undefined>;
  /** Merges a finished request into the user's cache (after the response, as the edge's waitUntil). */
  record(user: string, promptIds: readonly number[], outputIds: readonly number[]): void;
  /** Empties every user's cache. */
  reset(): void;
  close(): Promise<void>;
}

/** The edge on a worker thread, or in this thread when no worker can start. */
export function startBenchEdge(vocabSize: number): BenchEdge {
  try {
    return new EdgeEmulatorThread(vocabSize);
  } catch {
    return new InThreadEdge(vocabSize);
  }
}

class InThreadEdge implements BenchEdge {
  private edge: EdgeEmulator;
  constructor(private readonly vocabSize: number) {
    this.edge = new EdgeEmulator(vocabSize);
  }
  trieFor(user: string, promptIds: readonly number[]): Promise<string | undefined> {
    return Promise.resolve(this.edge.trieFor(user, promptIds));
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

class EdgeEmulatorThread implements BenchEdge {
  private readonly worker: Worker;
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve: (trie: string | undefined) => void; reject: (err: Error) => void }>();
  private failed: Error | null = null;

  constructor(private readonly vocabSize: number) {
    // The sources are TypeScript run through tsx, whose loader a worker does
    // not inherit: the worker registers it, then loads its entry.
    const tsx = import.meta.resolve('tsx/esm/api');
    const entry = new URL('./edge-worker.ts', import.meta.url).href;
    const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`;
    this.worker = new Worker(boot, { eval: true });
    this.worker.unref();
    this.worker.on('message', (reply: EdgeWorkerReply) => {
      const w = this.waiting.get(reply.id);
      this.waiting.delete(reply.id);
      w?.resolve(reply.trie);
    });
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`bench edge worker exited (${code})`)));
    this.reset();
  }

  trieFor(user: string, promptIds: readonly number[]): Promise<string | undefined> {
    if (this.failed) return Promise.reject(this.failed);
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.post({ type: 'trie', id, user, promptIds: [...promptIds] });
    });
  }

  record(user: string, promptIds: readonly number[], outputIds: readonly number[]): void {
    this.post({ type: 'record', user, promptIds: [...promptIds], outputIds: [...outputIds] });
  }

  reset(): void {
    this.post({ type: 'reset', vocabSize: this.vocabSize });
  }

  async close(): Promise<void> {
    this.failed ??= new Error('bench edge closed');
    await this.worker.terminate();
  }

  private post(message: EdgeWorkerRequest): void {
    if (!this.failed) this.worker.postMessage(message);
  }

  private fail(err: Error): void {
    if (this.failed) return;
    this.failed = err;
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }
}
