/**
 * A background response as a poll and a chain see it, over workerd's KV: a
 * queued record whose run died (its isolate gone before it stored its end)
 * is failed once its heartbeat is late (a record from before heartbeats: a
 * minute past its deadline), not queued for good, or cancelled where that
 * was asked; and the heartbeat as the run writes it, within the KV writes
 * it makes anyway where its events flow. A cancel or a delete taken in the
 * run's isolate stops it at once; what must precede its end (its turn in its
 * conversation) is done before the end is written.
 */
import { describe, expect, it, vi, type ExpectStatic } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { answerInBackground, cancelledAnswer, haltRunHere, polledResponse } from '../../edge/background-response';
import type { CompletionRun } from '../../edge/completion-run';
import { RequestLog, type CancelCause, type RequestLogLine } from '../../edge/request-log';
import type { PreparedReply } from '../../edge/completion-handler';
import type { ResponseObject } from '../../edge/responses-format';
import { responseId } from '../../edge/responses-format';
import { planResponse } from '../../edge/responses-reply';
import { ResponseStore, type PutOutcome, type RunningRecord, type StoredEvents, type StoredResponse } from '../../edge/response-store';
import { EventLog } from '../../edge/background-stream';
import { eventFrame, ResponsesStreamFormat } from '../../edge/responses-stream';
import type { ResponseMeta } from '../../edge/openai-format';
import type { SourcedText } from '../../edge/token-text';
import { storedRecord } from '../support/stored-response';
import { offUsage } from '../support/completion-usage';
import { workerdKv } from '../support/workerd-kv';
import { refusalOfAsync } from '../support/refusal';

const workerd = workerdKv();

/** A background response stored queued, its run due to end by `runsUntil`. */
function queuedRecord(id: string, runsUntil: number): StoredResponse {
  const record = storedRecord(id);
  return { ...record, response: { ...record.response, status: 'queued', background: true, output: [], usage: null }, runsUntil };
}

describe.concurrent('a background response as polled', () => {
  it('is queued until a minute past its deadline, then failed (its run died), or cancelled where a cancel was asked', async ({ expect }) => {
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

  it('refuses a chain from one still running, and from one whose run died as from a failed one (it said "still running" for good)', async ({ expect }) => {
    const store = new ResponseStore(workerd(), 'key-bg-chain', 0, 1 << 20);
    const chain = (id: string) => refusalOfAsync(planResponse({ model: 'm', previous_response_id: id, input: 'more' }, store, responseId('d4d4d4d4d4d4d4d4d4d4d4d4')));
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
   * `expect`: the test's own, which counts its assertions (the tests of this file run at once).
   */
  async function runThenStop(
    expect: ExpectStatic,
    hex: string,
    afterEnd: (store: ResponseStore, id: string) => Promise<unknown>,
    streamed = false,
  ): Promise<{ stored: StoredResponse | null; live: string; kept: StoredEvents | null }> {
    const store = new ResponseStore(workerd(), `key-late-${hex}${streamed ? '-s' : ''}`, 0, 1 << 20);
    const record = storedRecord(responseId(hex.repeat(24 / hex.length)));
    const id = record.response.id;
    const started: ResponseObject = { ...record.response, status: 'in_progress', background: true, output: [], usage: null };
    const ended: ResponseObject = { ...record.response, background: true };
    const reply = { opening: Promise.resolve(), runs: [], headers: {}, detachFromClient: () => undefined } as unknown as PreparedReply;
    const running: Promise<unknown>[] = [];
    const save = (response: ResponseObject, running?: RunningRecord) => store.write({ ...record, response, ...running, ...(streamed ? { eventLog: true as const } : {}) });
    const events = streamed ? { log: new EventLog(), format: new ResponsesStreamFormat(started, {} as ResponseMeta, null), quietCommentMs: 60_000 } : null;
    const answered = await answerInBackground(started, reply, () => Promise.resolve(ended), save, store, { waitUntil: (p) => running.push(p), deadlineMs: 20_000, stopPollMs: 1_000 }, events);
    const live = streamed ? answered.text() : answered.json().then((queued) => expect((queued as ResponseObject).status).toBe('queued'));
    const until = Date.now() + 10_000;
    while ((await store.get(id))?.response.status !== 'completed' && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    await afterEnd(store, id);
    await Promise.all(running);
    return { stored: await store.get(id), live: String((await live) ?? ''), kept: await store.readEvents(id) };
  }

  it('writes cancelled over an end it stored when a cancel lands just after its last read (review h117)', async ({ expect }) => {
    expect((await runThenStop(expect, 'ab', (store, id) => store.requestStop(id, 'cancel'))).stored?.response.status).toBe('cancelled');
  });

  it('leaves an end it stored deleted when a delete lands just after its last read', async ({ expect }) => {
    expect((await runThenStop(expect, 'cd', (store, id) => store.delete(id))).stored).toBeNull();
  });

  it("tells its stream the end a late cancel made, not the completion it had stored first (review h121)", async ({ expect }) => {
    const { stored, live, kept } = await runThenStop(expect, 'ef', (store, id) => store.requestStop(id, 'cancel'), true);
    expect(stored?.response.status).toBe('cancelled');
    // A cancelled one's stream ends without an end event, live and as kept.
    expect(live).not.toContain('response.completed');
    expect(kept?.ended).toBe(true);
    expect(kept?.frames.join('')).not.toContain('response.completed');
  });

  it("keeps none of a stream's events once a late delete removed its response, and says so to its stream (review h121)", async ({ expect }) => {
    const { stored, live, kept } = await runThenStop(expect, 'a9', (store, id) => store.delete(id), true);
    expect(stored).toBeNull();
    expect(live).toContain('"code":"not_found"');
    expect(kept).toBeNull();
  });
});

/** Response `hex`'s record as a run that keeps a heartbeat stores it queued: at `location`, its first beat `aliveAt`. */
function beatingRecord(hex: string, aliveAt: number, aliveEveryMs: number, location: string | null): StoredResponse {
  return { ...queuedRecord(responseId(hex), aliveAt + 3_600_000), aliveEveryMs, aliveAt, ...(location !== null ? { ranAt: location } : {}) };
}

describe.concurrent("a background run's heartbeat as a poll reads it", () => {
  it("shows a run failed once its heartbeat is three intervals old where it ran, and keeps saying so whatever its run writes after", async ({ expect }) => {
    const store = new ResponseStore(workerd(), 'key-beat', 0, 1 << 20, 'AMS');
    const now = Date.now();
    const record = beatingRecord('a1b2a1b2a1b2a1b2a1b2a1b2', now, 1_000, 'AMS');
    const id = record.response.id;
    expect((await polledResponse(record, store, now + 2_900)).status).toBe('queued');
    // A later beat, kept beside the record (it is not rewritten), counts from when it was written.
    expect(await store.writeHeartbeat(id, now + 2_000, now + 60_000)).toBe('stored');
    expect((await polledResponse(record, store, now + 4_900)).status).toBe('queued');
    expect(await store.stopRequested(id)).toBeNull();
    const lost = await polledResponse(record, store, now + 5_100);
    expect(lost).toMatchObject({ status: 'failed', output: [], error: { code: 'server_error', message: expect.stringMatching(/went away/) } });
    // The verdict is marked for the run (which stores itself failed on reading it) and for every later poll: a beat
    // that comes after, from a run that was only late, does not bring it back.
    expect(await store.stopRequested(id)).toBe('lost');
    await new Promise((r) => setTimeout(r, 1_100));
    expect(await store.writeHeartbeat(id, Date.now(), Date.now() + 60_000)).toBe('stored');
    expect(await polledResponse(record, store)).toMatchObject({ status: 'failed', error: lost.error });
  });

  it('shows a lost run made with stream with the output its kept events had sent, cut, as its run stores one told it was lost (review h177: output [])', async ({ expect }) => {
    const store = new ResponseStore(workerd(), 'key-beat-output', 0, 1 << 20, 'AMS');
    const now = Date.now();
    const record: StoredResponse = { ...beatingRecord('b1c2b1c2b1c2b1c2b1c2b1c2', now, 1_000, 'AMS'), eventLog: true };
    const id = record.response.id;
    // Its run's events as its format sent them, up to two deltas, kept; then the run went away.
    const format = new ResponsesStreamFormat({ ...record.response, status: 'in_progress' }, {} as ResponseMeta, null);
    const frames: string[] = [];
    format.begin((frame) => frames.push(frame));
    for (const text of ['Once upon', ' a time']) format.piece(0, [{ text, source: 'model' } as SourcedText], (frame) => frames.push(frame));
    expect(await store.writeEvents(id, frames, false, now)).toBe('stored');
    const lost = await polledResponse(record, store, now + 5_100);
    expect(lost).toMatchObject({ status: 'failed', error: { message: expect.stringMatching(/went away/) }, output: [{ type: 'message', status: 'incomplete', content: [{ text: 'Once upon a time' }] }] });
    // Read so by every later poll (the verdict is marked), and from the events a stream read again passes it.
    expect(await polledResponse(record, store)).toEqual(lost);
    expect(await polledResponse(record, store, Date.now(), null, frames.slice(0, -1))).toMatchObject({ output: [{ content: [{ text: 'Once upon' }] }] });
    // One made without stream has no events: no output.
    const plain = beatingRecord('d3e4d3e4d3e4d3e4d3e4d3e4', now, 1_000, 'AMS');
    expect((await polledResponse(plain, store, now + 5_100)).output).toEqual([]);
  });

  it('gives a reader at another location, or one that cannot tell where it is, KV\'s minute more: a stale copy there is not a dead run', async ({ expect }) => {
    const now = Date.now();
    for (const [hex, location] of [['c3d4c3d4c3d4c3d4c3d4c3d4', 'FRA'], ['e5f6e5f6e5f6e5f6e5f6e5f6', null]] as const) {
      const store = new ResponseStore(workerd(), `key-beat-far-${hex}`, 0, 1 << 20, location);
      const record = beatingRecord(hex, now, 1_000, 'AMS');
      expect((await polledResponse(record, store, now + 10_000)).status).toBe('queued');
      expect((await polledResponse(record, store, now + 62_900)).status).toBe('queued');
      expect((await polledResponse(record, store, now + 63_100)).status).toBe('failed');
    }
    // A run whose location was not known is read as from elsewhere at every location.
    const unknown = beatingRecord('a7b8a7b8a7b8a7b8a7b8a7b8', now, 1_000, null);
    expect((await polledResponse(unknown, new ResponseStore(workerd(), 'key-beat-unknown', 0, 1 << 20, 'AMS'), now + 10_000)).status).toBe('queued');
  });

  it('shows a run taken for lost cancelled where a cancel was asked first, and a record from before heartbeats as before (a minute past its deadline)', async ({ expect }) => {
    const now = Date.now();
    const store = new ResponseStore(workerd(), 'key-beat-cancel', 0, 1 << 20, 'AMS');
    const cancelled = beatingRecord('c9d0c9d0c9d0c9d0c9d0c9d0', now, 1_000, 'AMS');
    await store.requestStop(cancelled.response.id, 'cancel');
    expect((await polledResponse(cancelled, store, now + 5_000)).status).toBe('cancelled');
    // The stronger stop stands: no verdict is written over the cancel.
    expect(await store.stopRequested(cancelled.response.id)).toBe('cancel');
    const old = queuedRecord(responseId('e1f2e1f2e1f2e1f2e1f2e1f2'), now + 5_000);
    expect((await polledResponse(old, store, now + 30_000)).status).toBe('queued');
    expect((await polledResponse(old, store, now + 66_000)).status).toBe('failed');
  });
});

describe.concurrent('a background run stopped or ended in its own isolate', () => {
  /**
   * A run of response `hex` whose one generation goes on until it is cancelled (finish then ends with what it had), or
   * until `end` is called; `beforeEnd` as answerInBackground takes it. Its store reads stop marks once a minute only:
   * what stops it sooner is the halt in its isolate. `expect`: the test's own (its tests run at once).
   */
  async function startGeneration(expect: ExpectStatic, hex: string, beforeEnd?: (ended: ResponseObject) => Promise<void>) {
    const store = new ResponseStore(workerd(), `key-halt-${hex}`, 0, 1 << 20, 'AMS');
    const record = storedRecord(responseId(hex));
    const id = record.response.id;
    const started: ResponseObject = { ...record.response, status: 'in_progress', background: true, output: [], usage: null };
    const cancels: CancelCause[] = [];
    let end: (response: ResponseObject) => void = () => undefined;
    const finished = new Promise<ResponseObject>((resolve) => {
      end = resolve;
    });
    // What it generated as it was stopped: 7 tokens, which its usage must carry (the request log bills them).
    const run = { cancel: (why: CancelCause) => void (cancels.push(why), end({ ...started, status: 'failed', output: [] })), waitingForPool: false, usageSoFar: () => offUsage(3, 7) };
    const goneOn: Promise<unknown>[] = [];
    const reply = { opening: Promise.resolve(), runs: [run as unknown as CompletionRun], headers: {}, detachFromClient: () => undefined, goesOn: (work: Promise<unknown>) => goneOn.push(work) } as unknown as PreparedReply;
    const running: Promise<unknown>[] = [];
    const writes: string[] = [];
    const save = async (response: ResponseObject, runningRecord?: RunningRecord) => {
      writes.push(response.status);
      return store.write({ ...record, response, ...runningRecord });
    };
    const answer = await answerInBackground(started, reply, () => finished, save, store, { waitUntil: (p) => running.push(p), deadlineMs: 60_000, stopPollMs: 60_000 }, null, beforeEnd);
    expect(((await answer.json()) as ResponseObject).status).toBe('queued');
    return { store, id, ended: { ...record.response, background: true }, cancels, writes, end, done: () => Promise.all(running), goneOn };
  }

  it("tells the request's goesOn its run, which ends once its end is stored: its storage is settled after its last write", async ({ expect }) => {
    const run = await startGeneration(expect, 'a9d1a9d1a9d1a9d1a9d1a9d1');
    expect(run.goneOn).toHaveLength(1);
    run.end({ ...run.ended, status: 'completed' });
    await Promise.all(run.goneOn);
    expect(run.writes).toEqual(['queued', 'completed']);
    expect((await run.store.get(run.id))?.response.status).toBe('completed');
  });

  it('stops at once on a cancel taken here, not at its next read of the stop mark, and stores it cancelled with the usage of what it generated (review h170)', async ({ expect }) => {
    const run = await startGeneration(expect, 'a3c4a3c4a3c4a3c4a3c4a3c4');
    await run.store.requestStop(run.id, 'cancel');
    const askedAt = Date.now();
    expect(haltRunHere(run.store, run.id, 'cancel')).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(run.cancels).toEqual(['cancel']);
    await run.done();
    // Ended within the queued record's KV second and the late stop's, not at the stop mark's minute.
    expect(Date.now() - askedAt).toBeLessThan(5_000);
    const stored = (await run.store.get(run.id))?.response;
    expect(stored).toMatchObject({ status: 'cancelled', usage: { input_tokens: 3, output_tokens: 7, total_tokens: 10 } });
    // Its end stored, it is no longer here to halt.
    expect(haltRunHere(run.store, run.id, 'cancel')).toBe(false);
  });

  it('shows a cancel taken here with the usage of what it generated, in its answer and at each poll before its run stores its end, as that end is stored (review: usage was null then)', async ({ expect }) => {
    const run = await startGeneration(expect, 'a6b7a6b7a6b7a6b7a6b7a6b7');
    await run.store.requestStop(run.id, 'cancel');
    const queued = (await run.store.get(run.id))!;
    expect(queued.response).toMatchObject({ status: 'queued', usage: null });
    // Polled before its run has stopped: its usage so far.
    expect(await polledResponse(queued, run.store)).toMatchObject({ status: 'cancelled', output: [], usage: { input_tokens: 3, output_tokens: 7, total_tokens: 10 } });
    expect(haltRunHere(run.store, run.id, 'cancel')).toBe(true);
    const answer = await cancelledAnswer(run.store, queued.response);
    expect(run.cancels).toEqual(['cancel']);
    const polled = await polledResponse(queued, run.store);
    expect((await run.store.get(run.id))!.response.status).toBe('queued');
    await run.done();
    const stored = (await run.store.get(run.id))!.response;
    expect(stored).toMatchObject({ status: 'cancelled', usage: { output_tokens: 7 } });
    expect(answer).toEqual(stored);
    expect(polled).toEqual(stored);
    // Run by another isolate (or no more), nothing of its usage is known here until its run stores it: null, as queued.
    expect(await cancelledAnswer(run.store, queued.response)).toMatchObject({ status: 'cancelled', usage: null });
  });

  it('stops at once on a delete taken here, and writes nothing after it', async ({ expect }) => {
    const run = await startGeneration(expect, 'b5d6b5d6b5d6b5d6b5d6b5d6');
    expect(await run.store.delete(run.id)).toBe(true);
    expect(haltRunHere(run.store, run.id, 'delete')).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(run.cancels).toEqual(['delete']);
    await run.done();
    expect(await run.store.get(run.id)).toBeNull();
    expect(run.writes).toEqual(['queued']);
  });

  it('is polled cancelled from the cancel on, while its run is alive and before it stored that: never back to queued (review h170)', async ({ expect }) => {
    const store = new ResponseStore(workerd(), 'key-live-cancel', 0, 1 << 20, 'AMS');
    const now = Date.now();
    const record = beatingRecord('c7e8c7e8c7e8c7e8c7e8c7e8', now, 5_000, 'AMS');
    expect((await polledResponse(record, store, now + 100)).status).toBe('queued');
    await store.requestStop(record.response.id, 'cancel');
    for (const at of [now + 100, now + 1_000, now + 14_000]) expect((await polledResponse(record, store, at)).status).toBe('cancelled');
  });

  it('does what precedes its end (its turn appended) before a poll can find it ended, and nothing of it for a run cancelled (review h170)', async ({ expect }) => {
    let store: ResponseStore | null = null;
    const seen: string[] = [];
    const run = await startGeneration(expect, 'd9f0d9f0d9f0d9f0d9f0d9f0', async (ended) => {
      seen.push(`before end: ${ended.status}`);
      // As a conversation written a moment ago holds the turn's write back for KV's second.
      await new Promise((r) => setTimeout(r, 1_500));
      seen.push(`polled then: ${(await store!.get(ended.id))?.response.status}`);
    });
    store = run.store;
    run.end(run.ended);
    await run.done();
    expect(seen).toEqual(['before end: completed', 'polled then: queued']);
    expect(run.writes).toEqual(['queued', 'completed']);

    const cancelled = await startGeneration(expect, 'e1a2e1a2e1a2e1a2e1a2e1a2', async () => void seen.push('before a cancelled end'));
    await cancelled.store.requestStop(cancelled.id, 'cancel');
    haltRunHere(cancelled.store, cancelled.id, 'cancel');
    await cancelled.done();
    expect(seen).not.toContain('before a cancelled end');
    expect(cancelled.writes).toEqual(['queued', 'cancelled']);
  });

  it("writes its request's log line once its end is stored, with the stored end's error where that is failed (review h223: at its deadline it had none)", async ({ expect }) => {
    const info = vi.spyOn(console, 'info').mockImplementation(() => undefined);
    const lines = (id: string): RequestLogLine[] => info.mock.calls.map(([text]) => JSON.parse(String(text)) as RequestLogLine).filter((line) => line.id === id);
    for (const [hex, deadlineMs] of [['a1b2c3d4e5f6a1b2c3d4e5f6', 60_000], ['b2c3d4e5f6a1b2c3d4e5f6a1', 300]] as const) {
      const store = new ResponseStore(workerd(), `key-log-${hex}`, 0, 1 << 20, 'AMS');
      const record = storedRecord(responseId(hex));
      const started: ResponseObject = { ...record.response, status: 'in_progress', background: true, output: [], usage: null };
      const log = new RequestLog(hex, 'POST');
      log.completion('m', 1, false, 3, 'ab'.repeat(32));
      const stopped: Array<CancelCause | null> = [];
      let end: (response: ResponseObject) => void = () => undefined;
      const finished = new Promise<ResponseObject>((resolve) => (end = resolve));
      const finish = (why: CancelCause | null): void => {
        stopped.push(why);
        log.generationsEnded([{ finishReason: why === null ? 'length' : null, completionTokens: 7, poolsTried: 1, resumes: 0, cancelled: why, cachedTokens: 0, pool: 0, error: null, firstTokenAt: Date.now() }]);
        end(why === null ? { ...record.response, background: true } : { ...started, status: 'failed', output: [] });
      };
      const run = { cancel: (why: CancelCause) => finish(why), waitingForPool: false, usageSoFar: () => offUsage(3, 7) };
      const reply = { opening: Promise.resolve(), runs: [run as unknown as CompletionRun], headers: {}, detachFromClient: () => undefined, log } as unknown as PreparedReply;
      const running: Promise<unknown>[] = [];
      const save = (response: ResponseObject, runningRecord?: RunningRecord) => store.write({ ...record, response, ...runningRecord });
      await answerInBackground(started, reply, () => finished, save, store, { waitUntil: (p) => running.push(p), deadlineMs, stopPollMs: 60_000 }, null);
      log.responded(200, '/v1/responses', null, null);
      // Ended within KV's second of its queued record: its end waits for that second, and so does its line.
      if (deadlineMs === 60_000) finish(null);
      await new Promise((r) => setTimeout(r, 450));
      expect(stopped).toEqual([deadlineMs === 60_000 ? null : 'deadline']);
      expect((await store.get(started.id))?.response.status).toBe('queued');
      expect(lines(`req-${hex}`)).toEqual([]);
      await Promise.all(running);
      const stored = (await store.get(started.id))!.response;
      const [line] = lines(`req-${hex}`);
      expect(lines(`req-${hex}`)).toHaveLength(1);
      if (deadlineMs === 60_000) {
        expect(stored.status).toBe('completed');
        expect(line).toMatchObject({ status: 200, completion_tokens: 7, finish_reasons: ['length'] });
        expect(line.error).toBeUndefined();
      } else {
        expect(stored).toMatchObject({ status: 'failed', error: { code: 'server_error' } });
        expect(line).toMatchObject({ status: 200, stopped_by: 'deadline', error: 'server_error' });
      }
    }
    info.mockRestore();
  });

  it('stores its end where what precedes it failed', async ({ expect }) => {
    const run = await startGeneration(expect, 'f3b4f3b4f3b4f3b4f3b4f3b4', () => Promise.reject(new Error('conversation store down')));
    run.end(run.ended);
    await run.done();
    expect((await run.store.get(run.id))?.response.status).toBe('completed');
  });
});

describe("a background request's answer (review h177: it waited for the first token, its client's leaving unheard)", () => {
  /**
   * A background request of response `hex` whose one generation a pool has taken (`accepted`, where given) and opens
   * when `open` is called, or fails opening with `fail`; the client's signal is `signal`, its leaving cancels the run as
   * the request's handler does until the answer detaches it. The run's finish waits for the opening, as driveFormat.
   */
  function request(hex: string, accepted: boolean, signal: AbortSignal) {
    const store = new ResponseStore(workerd(), `key-answer-${hex}`, 0, 1 << 20, 'AMS');
    const record = storedRecord(responseId(hex));
    const started: ResponseObject = { ...record.response, status: 'in_progress', background: true, output: [], usage: null };
    let open: () => void = () => undefined;
    let fail: (err: unknown) => void = () => undefined;
    const opening = new Promise<void>((resolve, reject) => {
      open = resolve;
      fail = reject;
    });
    const cancels: CancelCause[] = [];
    const run = {
      accepted: accepted ? Promise.resolve() : new Promise<void>(() => undefined),
      replyStarted: false,
      waitingForPool: false,
      usageSoFar: () => offUsage(3, 0),
      cancel: (why: CancelCause) => {
        cancels.push(why);
        fail(new Error('cancelled'));
      },
    };
    const leave = (): void => run.cancel('client');
    signal.addEventListener('abort', leave, { once: true });
    const detached: boolean[] = [];
    const reply = {
      opening,
      runs: [run as unknown as CompletionRun],
      headers: {},
      heartbeatMs: 100,
      clientSignal: signal,
      detachFromClient: () => {
        detached.push(true);
        signal.removeEventListener('abort', leave);
      },
    } as unknown as PreparedReply;
    const running: Promise<unknown>[] = [];
    const writes: string[] = [];
    const save = async (response: ResponseObject, runningRecord?: RunningRecord) => {
      writes.push(response.status);
      return store.write({ ...record, response, ...runningRecord });
    };
    const finish = async (): Promise<ResponseObject> => {
      await opening;
      return { ...record.response, background: true };
    };
    const answer = answerInBackground(started, reply, finish, save, store, { waitUntil: (p) => running.push(p), deadlineMs: 60_000, stopPollMs: 60_000 }, null);
    return { store, id: record.response.id, run, cancels, writes, detached, answer, open, fail, done: () => Promise.all(running) };
  }

  it('is queued once a pool holds the generation past the grace, before its first token; a refusal after is the run\'s, stored failed with its error', async () => {
    const client = new AbortController();
    const r = request('a5b6a5b6a5b6a5b6a5b6a5b6', true, client.signal);
    const asked = Date.now();
    const answer = await r.answer;
    expect(Date.now() - asked).toBeLessThan(1_000);
    expect(((await answer.json()) as ResponseObject).status).toBe('queued');
    expect((await r.store.get(r.id))?.response.status).toBe('queued');
    // Told its reply has started: a pool that fails it before its first token is tried again (open-generation.ts).
    expect(r.run.replyStarted).toBe(true);
    // The client leaving now does not stop it.
    expect(r.detached).toEqual([true]);
    client.abort();
    expect(r.cancels).toEqual([]);
    r.fail(new ApiError(503, 'No inference pool can take the request now; retry in 2 s.', 'service_unavailable', 'pool_unavailable'));
    await r.done();
    expect((await r.store.get(r.id))?.response).toMatchObject({ status: 'failed', error: { code: 'pool_unavailable', message: expect.stringMatching(/No inference pool/) } });
  });

  it('is the request\'s own error where opening fails before it (busy, a refusal), with nothing stored', async () => {
    const r = request('c7d8c7d8c7d8c7d8c7d8c7d8', false, new AbortController().signal);
    setTimeout(() => r.fail(new ApiError(400, 'The inference pool rejected the request: regex: no token prints "{"', 'invalid_request_error', 'pool_rejected')), 300);
    expect(await r.answer.catch((e: unknown) => e)).toMatchObject({ status: 400, code: 'pool_rejected' });
    expect(r.writes).toEqual([]);
    expect(await r.store.get(r.id)).toBeNull();
  });

  it('is never given where its client leaves before it: the run is cancelled and nothing is stored or run', async () => {
    const client = new AbortController();
    // No pool has taken it yet (one slow to answer, or busy rounds): nothing is sent.
    const r = request('e9f0e9f0e9f0e9f0e9f0e9f0', false, client.signal);
    setTimeout(() => client.abort(), 300);
    expect(await r.answer.catch((e: unknown) => e)).toBeInstanceOf(Error);
    expect(r.cancels).toEqual(['client']);
    expect(r.detached).toEqual([]);
    expect(r.writes).toEqual([]);
    expect(await r.store.get(r.id)).toBeNull();
    await r.done();
  });
});

describe.concurrent("a background run's heartbeat as the run writes it", () => {
  /** A store over workerd's KV that counts its writes (KV puts) by kind: the Workers bill of a run. */
  class CountingStore extends ResponseStore {
    records = 0;
    events: number[] = [];
    beats: number[] = [];
    override async write(record: StoredResponse): Promise<PutOutcome> {
      this.records++;
      return super.write(record);
    }
    override async writeEvents(id: string, frames: readonly string[], ended: boolean, aliveAt?: number): Promise<PutOutcome> {
      this.events.push(Date.now());
      return super.writeEvents(id, frames, ended, aliveAt);
    }
    override async writeHeartbeat(id: string, aliveAt: number, expiresAt: number): Promise<PutOutcome> {
      this.beats.push(Date.now());
      return super.writeHeartbeat(id, aliveAt, expiresAt);
    }
  }

  /** A background run of response `hex` whose generation ends when `end` is called, with its result; `streamed`: made with stream. */
  async function startRun(store: ResponseStore, hex: string, aliveEveryMs: number, streamed: boolean) {
    const record = storedRecord(responseId(hex));
    const started: ResponseObject = { ...record.response, status: 'in_progress', background: true, output: [], usage: null };
    let end: (response: ResponseObject) => void = () => undefined;
    const finished = new Promise<ResponseObject>((resolve) => {
      end = resolve;
    });
    const reply = { opening: Promise.resolve(), runs: [], headers: {}, detachFromClient: () => undefined } as unknown as PreparedReply;
    const running: Promise<unknown>[] = [];
    const save = (response: ResponseObject, run?: RunningRecord) => store.write({ ...record, response, ...run, ...(streamed ? { eventLog: true as const } : {}) });
    const log = new EventLog();
    const events = streamed ? { log, format: new ResponsesStreamFormat(started, {} as ResponseMeta, null), quietCommentMs: 60_000 } : null;
    const answer = await answerInBackground(started, reply, () => finished, save, store, { waitUntil: (p) => running.push(p), deadlineMs: 60_000, stopPollMs: 200, aliveEveryMs }, events);
    void answer.body?.cancel();
    return { id: record.response.id, ended: { ...record.response, background: true }, log, end, done: () => Promise.all(running) };
  }

  it('writes one alone every interval where nothing else is written, so a poll where it runs never finds a slow run lost, and none once it ended', async ({ expect }) => {
    const store = new CountingStore(workerd(), 'key-beating', 0, 1 << 20, 'AMS');
    const run = await startRun(store, 'a2b3a2b3a2b3a2b3a2b3a2b3', 1_000, false);
    const verdicts: string[] = [];
    const until = Date.now() + 5_000;
    while (Date.now() < until) {
      const stored = await store.get(run.id);
      verdicts.push((await polledResponse(stored!, store)).status);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(new Set(verdicts)).toEqual(new Set(['queued']));
    // A beat a second for 5 s: about 5, a KV write each, and the queued record's.
    expect(store.beats.length).toBeGreaterThanOrEqual(3);
    expect(store.beats.length).toBeLessThanOrEqual(6);
    for (let i = 1; i < store.beats.length; i++) expect(store.beats[i] - store.beats[i - 1]).toBeGreaterThanOrEqual(990);
    run.end(run.ended);
    await run.done();
    expect((await store.get(run.id))?.response.status).toBe('completed');
    const beats = store.beats.length;
    await new Promise((r) => setTimeout(r, 1_000));
    expect(store.beats.length).toBe(beats);
    expect(store.records).toBe(2);
  });

  it('writes none alone while its stream\'s events are written, and the kept events again where they stop coming for an interval', async ({ expect }) => {
    const store = new CountingStore(workerd(), 'key-beating-stream', 0, 1 << 20, 'AMS');
    const run = await startRun(store, 'c4d5c4d5c4d5c4d5c4d5c4d5', 2_000, true);
    // Events every 200 ms for 4 s: the writes that keep them (one per KV second) are the heartbeat, and no more.
    const flowFrom = Date.now();
    for (let i = 0; i < 20; i++) {
      run.log.append(eventFrame('response.output_text.delta', i, { delta: `piece ${i}` }));
      await new Promise((r) => setTimeout(r, 200));
    }
    const flowing = store.events.length;
    expect(flowing).toBeGreaterThanOrEqual(3);
    expect(flowing).toBeLessThanOrEqual(Math.floor((Date.now() - flowFrom) / 1_100) + 1);
    // Then 5 s without an event (a pool that is slow to go on): the events written again every 2 s, no more.
    const quietFrom = Date.now();
    await new Promise((r) => setTimeout(r, 5_000));
    const quiet = store.events.slice(flowing);
    expect(quiet.length).toBeGreaterThanOrEqual(2);
    expect(quiet.length).toBeLessThanOrEqual(3);
    expect(quiet[0] - quietFrom).toBeLessThan(2_600);
    const kept = await store.readEvents(run.id);
    expect(kept?.frames).toHaveLength(20);
    expect(Date.now() - kept!.aliveAt!).toBeLessThan(3_000);
    expect(store.beats).toEqual([]);
    run.end(run.ended);
    await run.done();
  }, 20_000);

  it('stores itself failed, with the output it had, where a reader took it for lost: never the completion over a failed a client was shown', async ({ expect }) => {
    const store = new ResponseStore(workerd(), 'key-beat-told', 0, 1 << 20, 'AMS');
    const run = await startRun(store, 'e6f7e6f7e6f7e6f7e6f7e6f7', 400, false);
    await store.requestStop(run.id, 'lost');
    run.end(run.ended);
    await run.done();
    const stored = await store.get(run.id);
    expect(stored?.response).toMatchObject({ status: 'failed', error: { code: 'server_error', message: expect.stringMatching(/went away/) } });
    expect(stored?.response.output.map((item) => item.status)).toEqual(run.ended.output.map(() => 'incomplete'));
    expect(stored?.response.output).toHaveLength(1);
  });
});
