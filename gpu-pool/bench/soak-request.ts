/**
 * One HTTP request as a soak sends it: a whole reply, or a client that hangs
 * up after a while, or one that sends half its body and then goes away.
 * Never rejects: a connection that failed or was cut is status 0.
 */
import type http from 'node:http';
import { keepAliveAgent, requestTo } from './http-client';

/** A keep-alive agent for the soak's address: https for a deployed Worker (always https), http for a local one. */
export const soakAgent = keepAliveAgent;

/**
 * A server that sends nothing for this long has hung: the reply is cut and
 * said so (`stalledMs`). The pool sends a `queued` event each second while a
 * generation waits, the edge a comment every 5 s of a quiet stream.
 */
export const SOAK_IDLE_MS = 60_000;

export interface SoakReply {
  /** HTTP status; 0 when the client hung up or the connection failed first. */
  status: number;
  retryAfter: string | null;
  text: string;
  /** The whole reply came (a client meant to hang up may have been too late to). */
  complete: boolean;
  /** Cut by the soak because the server sent nothing for this many ms (it hung). */
  stalledMs?: number;
}

export interface SoakSendOptions {
  /** Hang up this many ms after sending. */
  hangUpAfterMs?: number;
  /** Send the head and half the body, then hang up after this many ms. */
  stallForMs?: number;
  /** Cut the request when the server sends nothing for this long (SOAK_IDLE_MS). */
  idleMs?: number;
}

/** Why a reply came to nothing, in the soak's report: hung, or cut. */
export function cutReason(reply: SoakReply): string {
  return reply.stalledMs !== undefined ? `the server sent nothing for ${reply.stalledMs / 1000} s (hung)` : 'the connection was cut before a whole reply';
}

export function soakRequest(
  agent: http.Agent,
  url: string,
  method: string,
  headers: Record<string, string>,
  body: string | Buffer | null,
  options: SoakSendOptions = {},
): Promise<SoakReply> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (reply: SoakReply): void => {
      if (!settled) {
        settled = true;
        resolve(reply);
      }
    };
    const cut = (): SoakReply => ({ status: 0, retryAfter: null, text: '', complete: false });
    const bytes = body === null ? null : Buffer.isBuffer(body) ? body : Buffer.from(body);
    let req: http.ClientRequest;
    try {
      req = requestTo(url, { method, agent, headers: { ...headers, ...(bytes ? { 'content-length': String(bytes.length) } : {}) } });
    } catch {
      // A URL the client cannot take (a bad port): as a failed connection, never a throw.
      done(cut());
      return;
    }
    const idleMs = options.idleMs ?? SOAK_IDLE_MS;
    let text = '';
    req.setTimeout(idleMs, () => {
      req.destroy();
      done({ ...cut(), text, stalledMs: idleMs });
    });
    req.on('response', (res) => {
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => done({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] ?? null, text, complete: true }));
      res.on('error', () => done({ ...cut(), text }));
      res.on('aborted', () => done({ ...cut(), text }));
    });
    req.on('error', () => done(cut()));
    if (options.stallForMs !== undefined && bytes) {
      req.write(bytes.subarray(0, bytes.length >> 1));
      setTimeout(() => {
        req.destroy();
        done(cut());
      }, options.stallForMs);
      return;
    }
    req.end(bytes ?? undefined);
    if (options.hangUpAfterMs !== undefined) {
      setTimeout(() => {
        req.destroy();
        done(cut());
      }, options.hangUpAfterMs);
    }
  });
}
