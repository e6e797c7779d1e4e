/**
 * Worker-thread side of the background indexer: builds suffix arrays off the
 * pool's event loop so lookups never wait on a rebuild. Started through
 * suffix-array-worker.mjs, which registers tsx first (a worker does not inherit
 * the parent's loader).
 */
import { parentPort } from 'node:worker_threads';
import { buildSuffixArray } from './suffix-array';

export interface IndexRequest {
  id: number;
  tokens: Int32Array;
}
export type IndexReply = { id: number; suffixArray: Int32Array } | { id: number; error: string };

const port = parentPort;
if (port) {
  port.on('message', (msg: IndexRequest) => {
    let reply: IndexReply;
    try {
      const suffixArray = buildSuffixArray(msg.tokens);
      reply = { id: msg.id, suffixArray };
      port.postMessage(reply, [suffixArray.buffer as ArrayBuffer]);
    } catch (err) {
      reply = { id: msg.id, error: err instanceof Error ? err.message : String(err) };
      port.postMessage(reply);
    }
  });
}
