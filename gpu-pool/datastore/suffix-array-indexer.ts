/**
 * Where suffix arrays for live appends get built: a worker thread (default, so
 * the pool's step loop keeps running during a rebuild), or inline on this
 * thread (fallback when a worker cannot start; blocks for the build's length).
 */
import { Worker } from 'node:worker_threads';
import { buildSuffixArray } from './suffix-array';
import type { IndexReply, IndexRequest } from './suffix-array-worker';

export interface SuffixArrayIndexer {
  readonly kind: 'worker' | 'inline';
  build(tokens: Int32Array): Promise<Int32Array>;
  close(): Promise<void>;
}

export function createInlineIndexer(): SuffixArrayIndexer {
  return {
    kind: 'inline',
    build: async (tokens) => {
      // Let already-queued callbacks run before this thread goes busy.
      await new Promise<void>((resolve) => setImmediate(resolve));
      return buildSuffixArray(tokens);
    },
    close: async () => {},
  };
}

interface Pending {
  resolve(sa: Int32Array): void;
  reject(err: Error): void;
}

/** One long-lived worker, started on first use; it only holds the process open while a build is pending. */
export function createWorkerIndexer(): SuffixArrayIndexer {
  let worker: Worker | null = null;
  let nextId = 1;
  const pending = new Map<number, Pending>();

  const failAll = (err: Error): void => {
    for (const p of pending.values()) p.reject(err);
    pending.clear();
    worker = null;
  };

  const start = (): Worker => {
    const w = new Worker(new URL('./suffix-array-worker.mjs', import.meta.url));
    w.on('message', (reply: IndexReply) => {
      const p = pending.get(reply.id);
      if (!p) return;
      pending.delete(reply.id);
      if (pending.size === 0) w.unref();
      if ('error' in reply) p.reject(new Error(`suffix array build failed: ${reply.error}`));
      else p.resolve(reply.suffixArray);
    });
    w.on('error', (err) => failAll(err));
    w.on('exit', (code) => {
      if (worker === w) failAll(new Error(`indexing worker exited with code ${code}`));
    });
    w.unref();
    return w;
  };

  return {
    kind: 'worker',
    build(tokens) {
      worker ??= start();
      const w = worker;
      const id = nextId++;
      return new Promise<Int32Array>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        w.ref();
        const msg: IndexRequest = { id, tokens };
        w.postMessage(msg); // structured clone: the caller keeps its tokens
      });
    },
    async close() {
      const w = worker;
      worker = null;
      failAll(new Error('indexer closed'));
      if (w) await w.terminate();
    },
  };
}
