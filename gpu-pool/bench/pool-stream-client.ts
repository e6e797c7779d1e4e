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

export async function runGeneration(poolUrl: string, token: string | null, body: GenerateBody): Promise<TimedGeneration> {
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
    } else if (event.type === 'done') {
      out.ok = event.finishReason !== 'error' && event.finishReason !== 'cancelled';
      out.usage = event.usage.speculation;
    } else if (event.type === 'error') {
      out.error = `${event.code}: ${event.message}`;
    }
  }
  return out;
}
