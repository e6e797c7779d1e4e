/**
 * A background stream's events over workerd's KV: kept as the run writes
 * them (a second at a time, cut at the store's bound), streamed to the
 * creating request as they come, and streamed again from any event, the end
 * told from the stored response where the events' own end was never kept.
 */
import { describe, it } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { EventLog, keepEvents, liveEventStream, resumedEventStream, startingAfter } from '../../edge/background-stream';
import { responseId } from '../../edge/responses-format';
import { ResponseStore, type StoredEvents, type StoredResponse } from '../../edge/response-store';
import { endEvents, eventFrame } from '../../edge/responses-stream';
import { longestStreamSilenceMs } from '../../edge/stream-silence';
import { storedRecord } from '../support/stored-response';
import { workerdKv } from '../support/workerd-kv';

const workerd = workerdKv();

/** Response `hex`'s record, made with background and stream, at `status`. */
function streamedRecord(hex: string, status: 'queued' | 'completed', runsUntil = Date.now() + 60_000): StoredResponse {
  const record = storedRecord(responseId(hex));
  const response = status === 'queued' ? { ...record.response, status, background: true, output: [], usage: null } : { ...record.response, background: true };
  return { ...record, response, runsUntil, eventLog: true };
}

const frames = (n: number, from = 0): string[] => Array.from({ length: n }, (_, i) => eventFrame('response.output_text.delta', from + i, { delta: `piece ${from + i} – ✓ 🙂` }));

async function textOf(response: Response): Promise<string> {
  return new Response(response.body).text();
}

describe.concurrent('the store of a background stream\'s events', () => {
  it('keeps the frames and their end as written, multi-byte text whole, and cuts them at the bound a record has', async ({ expect }) => {
    const store = new ResponseStore(workerd(), 'key-events', 0, 1 << 20);
    const id = responseId('a1a1a1a1a1a1a1a1a1a1a1a1');
    expect(await store.readEvents(id)).toBeNull();
    // Each write says when it was made: the run's heartbeat, read alone without the frames too.
    const at = Date.now();
    expect(await store.writeEvents(id, frames(5), false, at)).toBe('stored');
    expect(await store.readEvents(id)).toEqual({ frames: frames(5), ended: false, cut: false, aliveAt: at });
    expect(await store.lastHeartbeat(id)).toBe(at);
    expect(await store.writeEvents(id, frames(8), true, at + 1_100)).toBe('stored');
    expect(await store.readEvents(id)).toEqual({ frames: frames(8), ended: true, cut: false, aliveAt: at + 1_100 });

    // A bound that takes three frames and a part: three are kept, the rest said cut.
    const bytes = new TextEncoder().encode(frames(3).join('')).length;
    const small = new ResponseStore(workerd(), 'key-events-small', 0, bytes + 64 + 10);
    expect(await small.writeEvents(id, frames(6), true, at)).toBe('too_large');
    expect(await small.readEvents(id)).toEqual({ frames: frames(3), ended: true, cut: true, aliveAt: at });
  });

  it("are deleted with their response", async ({ expect }) => {
    const store = new ResponseStore(workerd(), 'key-events-delete', 0, 1 << 20);
    const record = streamedRecord('b2b2b2b2b2b2b2b2b2b2b2b2', 'completed');
    expect(await store.put(record)).toBe(true);
    expect(await store.writeEvents(record.response.id, frames(3), true)).toBe('stored');
    expect(await store.delete(record.response.id)).toBe(true);
    expect(await store.readEvents(record.response.id)).toBeNull();
  });

  it('keeps a log as it grows, at most a write a second, until its end is kept', async ({ expect }) => {
    const store = new ResponseStore(workerd(), 'key-keep', 0, 1 << 20);
    const id = responseId('c3c3c3c3c3c3c3c3c3c3c3c3');
    const log = new EventLog();
    const puts: number[] = [];
    const kept = keepEvents(log, { writeEvents: async (...args: Parameters<ResponseStore['writeEvents']>) => (puts.push(Date.now()), store.writeEvents(...args)) } as unknown as ResponseStore, id);
    for (const frame of frames(3)) log.append(frame);
    await new Promise((r) => setTimeout(r, 1_300));
    expect((await store.readEvents(id))?.frames.length).toBeGreaterThan(0);
    for (const frame of frames(2, 3)) log.append(frame);
    log.end();
    await kept;
    expect(await store.readEvents(id)).toEqual({ frames: frames(5), ended: true, cut: false, aliveAt: expect.any(Number) });
    for (let i = 1; i < puts.length; i++) expect(puts[i] - puts[i - 1]).toBeGreaterThanOrEqual(1_090);
  });
});

describe.concurrent('a background stream as read', () => {
  it('streams the log to its creator as it comes, a comment while it is quiet, and ends with it', async ({ expect }) => {
    const log = new EventLog();
    log.append(frames(1)[0]);
    const reader = liveEventStream(log, {}, 100).body!.pipeThrough(new TextDecoderStream()).getReader();
    expect((await reader.read()).value).toBe(frames(1)[0]);
    expect((await reader.read()).value).toBe(': the response is running\n\n');
    log.append(frames(1, 1)[0]);
    expect((await reader.read()).value).toBe(frames(1, 1)[0]);
    log.end();
    expect((await reader.read()).done).toBe(true);
  });

  it('streams the kept events again after starting_after, and follows them to their end', async ({ expect }) => {
    const store = new ResponseStore(workerd(), 'key-resume', 0, 1 << 20);
    const record = streamedRecord('d4d4d4d4d4d4d4d4d4d4d4d4', 'queued');
    const id = record.response.id;
    expect(await store.put(record)).toBe(true);
    await store.writeEvents(id, frames(4), false);
    const read = textOf(resumedEventStream(record, 1, store, 60_000));
    await new Promise((r) => setTimeout(r, 1_200));
    await store.writeEvents(id, frames(6), true);
    expect(await read).toBe(frames(6).slice(2).join(''));
    // Past its last event: nothing, and the stream ends.
    expect(await textOf(resumedEventStream(record, 5, store, 60_000))).toBe('');
  });

  it('read again in the isolate that runs it, follows the run itself event by event, and only for the key that made it', async ({ expect }) => {
    /** A store that counts its reads of kept events: a stream that follows the run makes none. */
    class CountingStore extends ResponseStore {
      reads = 0;
      override async readEvents(id: string): Promise<StoredEvents | null> {
        this.reads++;
        return super.readEvents(id);
      }
    }
    const kv = workerd();
    const store = new CountingStore(kv, 'key-running', 0, 1 << 20);
    const record = streamedRecord('a8a8a8a8a8a8a8a8a8a8a8a8', 'queued');
    const id = record.response.id;
    expect(await store.put(record)).toBe(true);
    const log = new EventLog();
    for (const frame of frames(3)) log.append(frame);
    const kept = keepEvents(log, store, id);

    const reader = resumedEventStream(record, 0, store, 60_000).body!.pipeThrough(new TextDecoderStream()).getReader();
    expect((await reader.read()).value).toBe(frames(2, 1).join(''));
    // An event the run writes now comes at once, where KV keeps it a second later at the soonest.
    const appended = Date.now();
    log.append(frames(1, 3)[0]);
    expect((await reader.read()).value).toBe(frames(1, 3)[0]);
    expect(Date.now() - appended).toBeLessThan(500);
    // Another key's stream of the same id does not see this run: KV has nothing of it for that key.
    const other = new CountingStore(kv, 'key-running-other', 0, 1 << 20);
    expect(await textOf(resumedEventStream(record, -1, other, 60_000))).toContain('"code":"not_found"');
    expect(other.reads).toBeGreaterThan(0);
    log.end();
    expect((await reader.read()).done).toBe(true);
    expect(store.reads).toBe(0);

    // Once its end is kept, a stream read again reads KV, as in any other isolate.
    await kept;
    expect(await textOf(resumedEventStream(record, 1, store, 60_000))).toBe(frames(2, 2).join(''));
    expect(store.reads).toBeGreaterThan(0);
  });

  it('follows a run in its isolate no later than its run may last: one whose waitUntil was cut is read from KV, its end told (review h153)', async ({ expect }) => {
    /** A store whose event writes never settle: the run's waitUntil was cut, and keepEvents never comes to its end. */
    class StuckStore extends ResponseStore {
      reads = 0;
      override writeEvents(): Promise<never> {
        return new Promise<never>(() => undefined);
      }
      override async readEvents(id: string): Promise<StoredEvents | null> {
        this.reads++;
        return super.readEvents(id);
      }
    }
    const store = new StuckStore(workerd(), 'key-stuck', 0, 1 << 20);
    const record = streamedRecord('b9b9b9b9b9b9b9b9b9b9b9b9', 'completed');
    expect(await store.put(record)).toBe(true);
    const log = new EventLog();
    for (const frame of frames(2)) log.append(frame);
    void keepEvents(log, store, record.response.id, Date.now() + 400);
    // Within its time: followed live, and that stream ends once the time is past though the log never ends.
    const live = await textOf(resumedEventStream(record, -1, store, 100));
    expect(live.startsWith(frames(2).join(''))).toBe(true);
    expect(store.reads).toBe(0);
    // Past it: read from KV, which has none of its events, so the stored response's end is told.
    const again = await textOf(resumedEventStream(record, 1, store, 60_000));
    expect(store.reads).toBeGreaterThan(0);
    expect(again).toBe(endEvents(record.response, 2).join(''));
  }, 15_000);

  it("tells the stored response's end where the events' end was never kept, and says a deleted one is gone", async ({ expect }) => {
    const store = new ResponseStore(workerd(), 'key-resume-end', 0, 1 << 20);
    const record = streamedRecord('e5e5e5e5e5e5e5e5e5e5e5e5', 'completed');
    expect(await store.put(record)).toBe(true);
    await store.writeEvents(record.response.id, frames(3), false);
    const started = Date.now();
    expect(await textOf(resumedEventStream(record, -1, store, 60_000))).toBe(frames(3).join('') + endEvents(record.response, 3).join(''));
    expect(Date.now() - started).toBeGreaterThanOrEqual(3_000);

    const deleted = streamedRecord('f6f6f6f6f6f6f6f6f6f6f6f6', 'queued');
    await store.writeEvents(deleted.response.id, frames(2), false);
    const text = await textOf(resumedEventStream(deleted, -1, store, 60_000));
    expect(text.startsWith(frames(2).join(''))).toBe(true);
    expect(text).toContain('"code":"not_found"');
  }, 15_000);

  it("ends a stream read again with its run's loss once the heartbeat its events carry is past its bound, and follows a quiet run whose heartbeat comes to its own end", async ({ expect }) => {
    const store = new ResponseStore(workerd(), 'key-resume-lost', 0, 1 << 20, 'AMS');
    /** Response `hex`'s record as its run (at AMS, another isolate's) stores it queued, a heartbeat every second. */
    const beating = (hex: string): StoredResponse => ({ ...streamedRecord(hex, 'queued', Date.now() + 3_600_000), aliveEveryMs: 1_000, aliveAt: Date.now(), ranAt: 'AMS' });
    const dead = beating('a3a3a3a3a3a3a3a3a3a3a3a3');
    expect(await store.put(dead)).toBe(true);
    await store.writeEvents(dead.response.id, frames(3), false);
    const started = Date.now();
    const told = await textOf(resumedEventStream(dead, -1, store, 60_000));
    expect(told.startsWith(frames(3).join(''))).toBe(true);
    expect(told.slice(frames(3).join('').length)).toMatch(/^event: error\n.*"code":"server_error".*went away.*\n\nevent: response\.failed\n/s);
    // Three intervals of its heartbeat, and a read of the kept events a second: not the deadline's minute (review h157: 77 s).
    expect(Date.now() - started).toBeLessThan(8_000);

    const quiet = beating('b4b4b4b4b4b4b4b4b4b4b4b4');
    const id = quiet.response.id;
    expect(await store.put(quiet)).toBe(true);
    await store.writeEvents(id, frames(2), false);
    const reading = textOf(resumedEventStream(quiet, -1, store, 60_000));
    // No event for 6 s, twice its bound: only its heartbeat, the kept events written again each second.
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 1_000));
      await store.writeEvents(id, frames(2), false);
    }
    expect(await store.put({ ...quiet, response: { ...storedRecord(id).response, background: true } })).toBe(true);
    await store.writeEvents(id, frames(3), true);
    expect(await reading).toBe(frames(3).join(''));
    expect(await store.stopRequested(id)).toBeNull();
  }, 20_000);

  it("is never silent longer than the bound a client's stall watch counts on (longestStreamSilenceMs), with a comment window under its read's second (review h208)", async ({ expect }) => {
    const store = new ResponseStore(workerd(), 'key-resume-silence', 0, 1 << 20);
    const running = streamedRecord('d8d8d8d8d8d8d8d8d8d8d8d8', 'queued');
    expect(await store.put(running)).toBe(true);
    await store.writeEvents(running.response.id, frames(1), false);
    const quietCommentMs = 200;
    const reader = resumedEventStream(running, -1, store, quietCommentMs).body!.getReader();
    // The kept frame at once, then only comments while the run writes nothing: the longest gap between them.
    let last = performance.now();
    let longest = 0;
    let chunks = 0;
    for (const until = last + 3_500; performance.now() < until; chunks++) {
      await reader.read();
      const now = performance.now();
      if (chunks > 0) longest = Math.max(longest, now - last);
      last = now;
    }
    await reader.cancel();
    expect(chunks).toBeGreaterThanOrEqual(3);
    // A read of the store's a second, and a comment at the first past the window: 1.2 s, not the 0.4 s that a live stream's comments bound. 0.3 s for a loaded KV read.
    expect(longest).toBeGreaterThan(2 * quietCommentMs);
    expect(longest).toBeLessThanOrEqual(longestStreamSilenceMs(0, quietCommentMs) + 300);
  }, 15_000);

  it("reads on to the events' end of a run a cancel was asked of, which polls show cancelled before its run stored that (review h170)", async ({ expect }) => {
    const store = new ResponseStore(workerd(), 'key-resume-cancel', 0, 1 << 20, 'AMS');
    const running: StoredResponse = { ...streamedRecord('c5c5c5c5c5c5c5c5c5c5c5c5', 'queued', Date.now() + 3_600_000), aliveEveryMs: 1_000, aliveAt: Date.now(), ranAt: 'AMS' };
    const id = running.response.id;
    expect(await store.put(running)).toBe(true);
    await store.writeEvents(id, frames(2), false);
    await store.requestStop(id, 'cancel');
    const reading = textOf(resumedEventStream(running, -1, store, 60_000));
    // The run (another isolate's) reads the cancel, and keeps its last events and their end a second or two later.
    await new Promise((r) => setTimeout(r, 1_500));
    await store.writeEvents(id, frames(3), true);
    expect(await reading).toBe(frames(3).join(''));
  }, 15_000);

  it('refuses a response not made with background and stream, and a starting_after that is not a sequence number', ({ expect }) => {
    const plain = storedRecord(responseId('a7a7a7a7a7a7a7a7a7a7a7a7'));
    const store = new ResponseStore(workerd(), 'key-refuse', 0, 1 << 20);
    expect(() => resumedEventStream(plain, -1, store, 60_000)).toThrow(ApiError);
    expect(startingAfter(new URLSearchParams(''))).toBe(-1);
    expect(startingAfter(new URLSearchParams('starting_after=0'))).toBe(0);
    for (const query of ['starting_after=-1', 'starting_after=', 'starting_after=1.5', 'starting_after=1&starting_after=2', 'starting_after=1234567890']) {
      expect(() => startingAfter(new URLSearchParams(query)), query).toThrow(/starting_after/);
    }
  });
});
