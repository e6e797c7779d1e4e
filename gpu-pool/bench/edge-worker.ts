/**
 * Worker-thread side of MergeThreadEdge (edge-emulator-thread.ts): merges
 * finished requests into the users' caches, in message order, and sends each
 * merged cache back to the client's thread, which drafts tries from it.
 */
import { parentPort } from 'node:worker_threads';
import { EdgeEmulator } from './edge-emulator';
import type { EdgeWorkerRequest, EdgeWorkerReply } from './edge-emulator-thread';

const port = parentPort;
if (!port) throw new Error('edge-worker.ts runs as a worker thread');
let edge: EdgeEmulator | null = null;
let epoch = -1;
port.on('message', (m: EdgeWorkerRequest) => {
  switch (m.type) {
    case 'reset':
      edge = new EdgeEmulator(m.vocabSize);
      epoch = m.epoch;
      break;
    case 'record': {
      if (!edge || m.epoch !== epoch) break;
      const reply: EdgeWorkerReply = { type: 'merged', epoch, user: m.user, cache: edge.record(m.user, m.promptIds, m.outputIds) };
      port.postMessage(reply);
      break;
    }
  }
});
// Every module is loaded by now: the client may start timing.
port.postMessage({ type: 'ready' } satisfies EdgeWorkerReply);
