/**
 * A background response as a poll and a chain see it, over workerd's KV: a
 * queued record whose run died (its isolate gone before it stored its end)
 * is failed a minute past its deadline, not queued for good, or cancelled
 * where that was asked.
 */
import { describe, expect, it } from 'vitest';
import type { ApiError } from '../../edge/api-error';
import { polledResponse } from '../../edge/background-response';
import { responseId } from '../../edge/responses-format';
import { planResponse } from '../../edge/responses-reply';
import { ResponseStore, type StoredResponse } from '../../edge/response-store';
import { storedRecord } from '../support/stored-response';
import { workerdKv } from '../support/workerd-kv';

const workerd = workerdKv();

/** A background response stored queued, its run due to end by `runsUntil`. */
function queuedRecord(id: string, runsUntil: number): StoredResponse {
  const record = storedRecord(id);
  return { ...record, response: { ...record.response, status: 'queued', background: true, output: [], usage: null }, runsUntil };
}

describe('a background response as polled', () => {
  it('is queued until a minute past its deadline, then failed (its run died), or cancelled where a cancel was asked', async () => {
    const store = new ResponseStore(workerd(), 'key-bg', 0, 1 << 20);
    const now = Date.now();
    const running = queuedRecord(responseId('a1a1a1a1a1a1a1a1a1a1a1a1'), now + 5_000);
    expect((await polledResponse(running, store, now)).status).toBe('queued');
    expect((await polledResponse(running, store, now + 64_000)).status).toBe('queued');
    const dead = await polledResponse(running, store, now + 66_000);
    expect(dead).toMatchObject({ status: 'failed', error: { code: 'server_error', message: expect.stringMatching(/went away/) } });

    const cancelled = queuedRecord(responseId('b2b2b2b2b2b2b2b2b2b2b2b2'), now + 5_000);
    await store.requestStop(cancelled.response.id, 'cancel');
    expect((await polledResponse(cancelled, store, now + 66_000)).status).toBe('cancelled');
    // A finished one is as it is.
    const done = storedRecord(responseId('c3c3c3c3c3c3c3c3c3c3c3c3'));
    expect(await polledResponse(done, store, now + 1e9)).toBe(done.response);
  });

  it('refuses a chain from one still running, and from one whose run died as from a failed one (it said "still running" for good)', async () => {
    const store = new ResponseStore(workerd(), 'key-bg-chain', 0, 1 << 20);
    const chain = async (id: string) => (await planResponse({ model: 'm', previous_response_id: id, input: 'more' }, store, responseId('d4d4d4d4d4d4d4d4d4d4d4d4')).catch((e: unknown) => e)) as ApiError;
    const running = queuedRecord(responseId('e5e5e5e5e5e5e5e5e5e5e5e5'), Date.now() + 60_000);
    expect(await store.put(running)).toBe(true);
    expect((await chain(running.response.id)).message).toMatch(/still running in the background/);
    const died = queuedRecord(responseId('f6f6f6f6f6f6f6f6f6f6f6f6'), Date.now() - 120_000);
    expect(await store.put(died)).toBe(true);
    expect((await chain(died.response.id)).message).toMatch(/failed \(The background response stopped without a result/);
  });
});
