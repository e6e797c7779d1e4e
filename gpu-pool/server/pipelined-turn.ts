/**
 * A generate request pipelined on a connection whose earlier response still
 * streams (HTTP/1.1 lets a client send several requests without waiting):
 * its response cannot flow before that one ends, so its generation waits
 * for its turn too. Started at once, it ran with every event it wrote held in
 * the process until then, out of the stalled-reader guard's sight (a
 * response without a socket), for as long as the stream ahead took: a client
 * pipelining hundreds on a few connections held hundreds of MB. Waiting
 * requests are bounded per connection, since each holds its parsed body.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { HttpError } from './http-error';

/** Generate requests that may wait their turn on one connection. */
export const MAX_PIPELINED_WAITING = 16;

/** Per connection, its waiting requests' ends (false: the connection closed first). */
const waitingOn = new WeakMap<Socket, Set<(turn: boolean) => void>>();

/**
 * Resolves true once `res` can be written (at once where it already can),
 * false if the connection closed first. Throws a 400 where the connection
 * already holds MAX_PIPELINED_WAITING waiting requests.
 */
export function pipelinedTurn(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  if (res.socket) return Promise.resolve(true);
  const socket = req.socket;
  // The request itself has closed by now (its body read to the end): the connection is what can still go.
  if (socket.destroyed) return Promise.resolve(false);
  let waiters = waitingOn.get(socket);
  if (!waiters) {
    const ends = new Set<(turn: boolean) => void>();
    waitingOn.set(socket, ends);
    // One listener a connection, however many wait on it. A pipelined response gets no 'close' of its own then.
    socket.once('close', () => {
      for (const end of [...ends]) end(false);
      waitingOn.delete(socket);
    });
    waiters = ends;
  }
  if (waiters.size >= MAX_PIPELINED_WAITING) {
    throw new HttpError(400, 'bad_request', `at most ${MAX_PIPELINED_WAITING} generate requests may wait pipelined behind a stream on one connection; open a connection per generation`);
  }
  const ends = waiters;
  return new Promise<boolean>((resolve) => {
    const end = (turn: boolean): void => {
      ends.delete(end);
      res.off('socket', onSocket);
      resolve(turn);
    };
    const onSocket = (): void => end(true);
    res.once('socket', onSocket);
    ends.add(end);
  });
}
