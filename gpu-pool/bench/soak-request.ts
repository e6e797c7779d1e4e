/**
 * One HTTP request as a soak sends it: a whole reply, or a client that hangs
 * up after a while, or one that sends half its body and then goes away.
 * Never rejects: a connection that failed or was cut is status 0.
 */
import http from 'node:http';

export interface SoakReply {
  /** HTTP status; 0 when the client hung up or the connection failed first. */
  status: number;
  retryAfter: string | null;
  text: string;
  /** The whole reply came (a client meant to hang up may have been too late to). */
  complete: boolean;
}

export interface SoakSendOptions {
  /** Hang up this many ms after sending. */
  hangUpAfterMs?: number;
  /** Send the head and half the body, then hang up after this many ms. */
  stallForMs?: number;
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
    const req = http.request(url, { method, agent, headers: { ...headers, ...(bytes ? { 'content-length': String(bytes.length) } : {}) } });
    req.on('response', (res) => {
      let text = '';
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
