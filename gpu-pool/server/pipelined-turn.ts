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

const waitingOn = new WeakMap<Socket, number>();

/**
 * Resolves true once `res` can be written (at once where it already can),
 * false if the connection closed first. Throws a 400 where the connection
 * already holds MAX_PIPELINED_WAITING waiting requests.
 */
export async function pipelinedTurn(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  if (res.socket) return true;
  const socket = req.socket;
  const waiting = waitingOn.get(socket) ?? 0;
  if (waiting >= MAX_PIPELINED_WAITING) {
    throw new HttpError(400, 'bad_request', `at most ${MAX_PIPELINED_WAITING} generate requests may wait pipelined behind a stream on one connection; open a connection per generation`);
  }
  waitingOn.set(socket, waiting + 1);
  try {
    return await new Promise<boolean>((resolve) => {
      const onSocket = (): void => {
        req.off('close', onClose);
        resolve(true);
      };
      // A pipelined request's response gets no 'close' when the connection goes; its request does.
      const onClose = (): void => {
        res.off('socket', onSocket);
        resolve(false);
      };
      res.once('socket', onSocket);
      req.once('close', onClose);
    });
  } finally {
    waitingOn.set(socket, (waitingOn.get(socket) ?? 1) - 1);
  }
}
