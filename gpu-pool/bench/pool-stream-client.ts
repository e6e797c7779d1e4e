/**
 * A client for one pool generation as an edge would open it: POST
 * /v1/generate, read the NDJSON events as they arrive, time them.
 */
import type { GenerateRequest, PoolEvent, SpeculationUsage } from '../../shared/protocol';
import { readPoolEvents } from '../../shared/pool-event-stream';

export interface TimedGeneration {
  ok: boolean;
  error?: string;
  outputIds: number[];
  sentAt: number;
  firstTokenAt: number;
  lastTokenAt: number;
  usage?: SpeculationUsage;
}

type GenerateBody = Omit<GenerateRequest, 'sampling' | 'useDatastore' | 'contributeToDatastore' | 'speculation'> &
  Partial<Pick<GenerateRequest, 'sampling' | 'useDatastore' | 'contributeToDatastore' | 'speculation'>>;

export interface GenerationHooks {
  /**
   * The pool's 'trie-exhausted': a fresh base64 trie for prompt + these
   * output tokens (undefined = none), pushed to the running generation as the
   * edge does, without holding up the stream.
   */
  freshTrie?: (outputIds: readonly number[]) => Promise<string | undefined>;
}

export async function runGeneration(poolUrl: string, token: string | null, body: GenerateBody, hooks: GenerationHooks = {}): Promise<TimedGeneration> {
  const sentAt = performance.now();
  const out: TimedGeneration = { ok: false, outputIds: [], sentAt, firstTokenAt: NaN, lastTokenAt: NaN };
  let res: Response;
  try {
    res = await fetch(`${poolUrl}/v1/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
  } catch (err) {
    out.error = (err as Error).message;
    return out;
  }
  if (res.status !== 200) {
    out.error = `HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`;
    return out;
  }
  for await (const event of readPoolEvents(res.body!)) {
    if (event.type === 'tokens') {
      const now = performance.now();
      if (out.outputIds.length === 0) out.firstTokenAt = now;
      out.lastTokenAt = now;
      for (const id of event.ids) out.outputIds.push(id);
    } else if (event.type === 'trie-exhausted' && hooks.freshTrie) {
      const outputLength = Math.min(event.outputLength, out.outputIds.length);
      void hooks
        .freshTrie(out.outputIds.slice(0, outputLength))
        .then((trie) =>
          trie === undefined
            ? undefined
            : fetch(`${poolUrl}/v1/generations/${encodeURIComponent(body.id)}/trie`, {
                method: 'POST',
                headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
                body: JSON.stringify({ outputLength, trie }),
              }).then((r) => r.arrayBuffer()),
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
  return out;
}
