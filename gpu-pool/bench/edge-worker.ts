/**
 * Worker-thread side of EdgeEmulatorThread (edge-emulator-thread.ts): owns the
 * per-user caches and answers trie requests in message order, so a trie
 * requested after a record sees that record.
 */
import { parentPort } from 'node:worker_threads';
import { EdgeEmulator } from './edge-emulator';
import type { EdgeWorkerRequest, EdgeWorkerReply } from './edge-emulator-thread';

const port = parentPort;
if (!port) throw new Error('edge-worker.ts runs as a worker thread');
let edge: EdgeEmulator | null = null;
port.on('message', (m: EdgeWorkerRequest) => {
  switch (m.type) {
    case 'reset':
      edge = new EdgeEmulator(m.vocabSize);
      break;
    case 'record':
      edge?.record(m.user, m.promptIds, m.outputIds);
      break;
    case 'trie': {
      const reply: EdgeWorkerReply = { id: m.id, trie: edge?.trieFor(m.user, m.promptIds) };
      port.postMessage(reply);
      break;
    }
  }
});
