/**
 * A client for one pool generation as an edge would open it: POST
 * /v1/generate, read the events as they arrive (binary frames, as the edge
 * asks for them, unless told NDJSON), time them.
 *
 * On node:http with a keep-alive agent rather than fetch: Node's fetch
 * (undici's WHATWG layer) cost the client ~0.35-0.4 ms more per request on
 * the 2-core VM (send → the server's handler: 0.54-0.59 against 0.19-0.21 ms
 * median, sequential POSTs to a bare server), and in the bench that sat
 * between every two requests at concurrency 1, where the pool waits for the
 * next one, and on the cores the pool shares at every level.
 */
import type { IncomingMessage } from 'node:http';
import { requestTo, sharedAgent } from './http-client';
import type { z } from 'zod';
import type { generateRequestSchema, PoolEvent, SpeculationUsage } from '../../shared/protocol';
import { POOL_EVENT_FRAMES_ACCEPT } from '../../shared/pool-event-frames';
import { poolEventFormat, readPoolEvents, type PoolEventFormat } from '../../shared/pool-event-stream';

export interface TimedGeneration {
  ok: boolean;
  error?: string;
  outputIds: number[];
  /** When the request started (sent; bench-serve moves it back to before the edge drafted its trie): TTFT runs from here. */
  sentAt: number;
  firstTokenAt: number;
  lastTokenAt: number;
  /** Milliseconds between the stream's consecutive token events (a stall shows here, not in TPOT's mean). */
  gaps: number[];
  usage?: SpeculationUsage;
}

/** A generate body as sent: the fields with defaults may be left out. */
type GenerateBody = z.input<typeof generateRequestSchema>;

export interface GenerationHooks {
  /**
   * The pool's 'trie-exhausted': a fresh base64 trie for prompt + these
   * output tokens (undefined = none), pushed to the running generation as the
   * edge does, without holding up the stream.
   */
  freshTrie?: (outputIds: readonly number[]) => Promise<string | undefined>;
  /** The form asked for: frames (the default, as the edge asks) or NDJSON. */
  events?: PoolEventFormat;
}

/** POSTs a JSON body; resolves with the response once its head has arrived. */
function postJson(url: string, token: string | null, body: unknown, accept?: string): Promise<IncomingMessage> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = requestTo(url, {
      method: 'POST',
      // One agent for every generation: connections are reused, and as many open as generations run at once.
      agent: sharedAgent(url),
      headers: {
        'content-type': 'application/json',
        'content-length': payload.length,
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(accept ? { accept } : {}),
      },
    });
    req.on('response', resolve);
    req.on('error', reject);
    req.end(payload);
  });
}

async function readText(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of res as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

export async function runGeneration(poolUrl: string, token: string | null, body: GenerateBody, hooks: GenerationHooks = {}): Promise<TimedGeneration> {
  const sentAt = performance.now();
  const out: TimedGeneration = { ok: false, outputIds: [], sentAt, firstTokenAt: NaN, lastTokenAt: NaN, gaps: [] };
  let res: IncomingMessage;
  try {
    res = await postJson(`${poolUrl}/v1/generate`, token, body, hooks.events === 'ndjson' ? 'application/x-ndjson' : POOL_EVENT_FRAMES_ACCEPT);
  } catch (err) {
    out.error = (err as Error).message;
    return out;
  }
  if (res.statusCode !== 200) {
    out.error = `HTTP ${res.statusCode}: ${(await readText(res).catch((err: Error) => err.message)).slice(0, 200)}`;
    return out;
  }
  // Stopping at `done` must not destroy the socket (the agent reuses it); what follows is drained below.
  const format = poolEventFormat(res.headers['content-type']);
  for await (const event of readPoolEvents(res.iterator({ destroyOnReturn: false }), { format })) {
    if (event.type === 'tokens') {
      const now = performance.now();
      if (out.outputIds.length === 0) out.firstTokenAt = now;
      else out.gaps.push(now - out.lastTokenAt);
      out.lastTokenAt = now;
      for (const id of event.ids) out.outputIds.push(id);
    } else if (event.type === 'trie-exhausted' && hooks.freshTrie) {
      const outputLength = Math.min(event.outputLength, out.outputIds.length);
      void hooks
        .freshTrie(out.outputIds.slice(0, outputLength))
        .then((trie) =>
          trie === undefined
            ? undefined
            : postJson(`${poolUrl}/v1/generations/${encodeURIComponent(body.id)}/trie`, token, { outputLength, trie }).then(readText),
        )
        // The generation may have finished meanwhile (404): the trie was simply late.
        .catch(() => undefined);
    } else if (event.type === 'done') {
      out.ok = event.finishReason !== 'error' && event.finishReason !== 'cancelled';
      out.usage = event.usage.speculation;
    } else if (event.type === 'error') {
      out.error = `${event.code}: ${event.message}`;
    }
  }
  res.resume();
  return out;
}
