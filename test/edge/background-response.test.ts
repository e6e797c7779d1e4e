/**
 * A background response as a poll and a chain see it, over workerd's KV: a
 * queued record whose run died (its isolate gone before it stored its end)
 * is failed a minute past its deadline, not queued for good, or cancelled
 * where that was asked.
 */
import { describe, expect, it } from 'vitest';
import type { ApiError } from '../../edge/api-error';
import { answerInBackground, polledResponse } from '../../edge/background-response';
import type { PreparedReply } from '../../edge/completion-handler';
import type { ResponseObject } from '../../edge/responses-format';
import { responseId } from '../../edge/responses-format';
import { planResponse } from '../../edge/responses-reply';
import { ResponseStore, type StoredEvents, type StoredResponse } from '../../edge/response-store';
import { EventLog } from '../../edge/background-stream';
import { ResponsesStreamFormat } from '../../edge/responses-stream';
import type { ResponseMeta } from '../../edge/openai-format';
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

  /**
   * A run whose end is already there (finish resolves at once), over workerd's KV; `afterEnd` runs once its end is
   * stored, as another isolate's cancel or delete that read the record queued lands just after the run's last read.
   */
  async function runThenStop(
    hex: string,
    afterEnd: (store: ResponseStore, id: string) => Promise<unknown>,
    streamed = false,
  ): Promise<{ stored: StoredResponse | null; live: string; kept: StoredEvents | null }> {
    const store = new ResponseStore(workerd(), `key-late-${hex}${streamed ? '-s' : ''}`, 0, 1 << 20);
    const record = storedRecord(responseId(hex.repeat(24 / hex.length)));
    const id = record.response.id;
    const started: ResponseObject = { ...record.response, status: 'in_progress', background: true, output: [], usage: null };
    const ended: ResponseObject = { ...record.response, background: true };
    const reply = { opening: Promise.resolve(), runs: [], headers: {} } as unknown as PreparedReply;
    const running: Promise<unknown>[] = [];
    const save = (response: ResponseObject, runsUntil?: number) => store.write({ ...record, response, ...(runsUntil !== undefined ? { runsUntil } : {}), ...(streamed ? { eventLog: true as const } : {}) });
    const events = streamed ? { log: new EventLog(), format: new ResponsesStreamFormat(started, {} as ResponseMeta, null), quietCommentMs: 60_000 } : null;
    const answered = await answerInBackground(started, reply, () => Promise.resolve(ended), save, store, { waitUntil: (p) => running.push(p), deadlineMs: 20_000, stopPollMs: 1_000 }, events);
    const live = streamed ? answered.text() : answered.json().then((queued) => expect((queued as ResponseObject).status).toBe('queued'));
    const until = Date.now() + 10_000;
    while ((await store.get(id))?.response.status !== 'completed' && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    await afterEnd(store, id);
    await Promise.all(running);
    return { stored: await store.get(id), live: String((await live) ?? ''), kept: await store.readEvents(id) };
  }

  it('writes cancelled over an end it stored when a cancel lands just after its last read (review h117)', async () => {
    expect((await runThenStop('ab', (store, id) => store.requestStop(id, 'cancel'))).stored?.response.status).toBe('cancelled');
  });

  it('leaves an end it stored deleted when a delete lands just after its last read', async () => {
    expect((await runThenStop('cd', (store, id) => store.delete(id))).stored).toBeNull();
  });

  it("tells its stream the end a late cancel made, not the completion it had stored first (review h121)", async () => {
    const { stored, live, kept } = await runThenStop('ef', (store, id) => store.requestStop(id, 'cancel'), true);
    expect(stored?.response.status).toBe('cancelled');
    // A cancelled one's stream ends without an end event, live and as kept.
    expect(live).not.toContain('response.completed');
    expect(kept?.ended).toBe(true);
    expect(kept?.frames.join('')).not.toContain('response.completed');
  });

  it("keeps none of a stream's events once a late delete removed its response, and says so to its stream (review h121)", async () => {
    const { stored, live, kept } = await runThenStop('a9', (store, id) => store.delete(id), true);
    expect(stored).toBeNull();
    expect(live).toContain('"code":"not_found"');
    expect(kept).toBeNull();
  });
});
