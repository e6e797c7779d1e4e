import { afterEach, describe, expect, it, vi } from 'vitest';
import type { CompletionRun, CompletionSummary } from '../../edge/completion-run';
import { RequestLog, type CancelCause, type RequestLogLine } from '../../edge/request-log';
import { sseStream, type SendFrame, type StreamFormat } from '../../edge/sse-response';
import type { SourcedText } from '../../edge/token-text';

const summary: CompletionSummary = {
  finishReason: 'length',
  stopReason: null,
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
  promptLogprobs: null,
} as CompletionSummary;

/** A run that yields a piece every 20 ms until cancelled (then it ends, as CompletionRun does), noting its cancels. */
function slowRun(): { run: CompletionRun; cancels: CancelCause[] } {
  const cancels: CancelCause[] = [];
  let cancelled = false;
  const fake = {
    clientStillThere: null as (() => Promise<boolean>) | null,
    cancel(by: CancelCause = 'client') {
      cancels.push(by);
      cancelled = true;
    },
    async *run(): AsyncGenerator<SourcedText[], CompletionSummary> {
      for (let i = 0; i < 500 && !cancelled; i++) {
        yield [{ text: `t${i} `, source: 'model' } as SourcedText];
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return summary;
    },
  };
  return { run: fake as unknown as CompletionRun, cancels };
}

/** A run that yields `pieces` pieces, 20 ms apart, and ends on its own (a cancel after that does nothing, as CompletionRun's). */
function shortRun(pieces: number): CompletionRun {
  const fake = {
    clientStillThere: null as (() => Promise<boolean>) | null,
    cancel: () => undefined,
    async *run(): AsyncGenerator<SourcedText[], CompletionSummary> {
      for (let i = 0; i < pieces; i++) {
        yield [{ text: `t${i} `, source: 'model' } as SourcedText];
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return summary;
    },
  };
  return fake as unknown as CompletionRun;
}

/** Frames as plain `data:` lines; what the stream ended as. */
function plainFormat(): StreamFormat & { endedAs: string[] } {
  const endedAs: string[] = [];
  return {
    endedAs,
    begin: (send: SendFrame) => send('data: begin\n\n'),
    piece: (_i: number, segments: SourcedText[], send: SendFrame) => send(`data: ${segments.map((s) => s.text).join('')}\n\n`),
    finished: () => undefined,
    ended: () => void endedAs.push('ended'),
    failed: () => void endedAs.push('failed'),
    close: (send: SendFrame) => send('data: [DONE]\n\n'),
    abandoned: () => void endedAs.push('abandoned'),
  };
}

afterEach(() => vi.restoreAllMocks());

const until = async (check: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
};

describe('sseStream', () => {
  it('takes a client whose body is left unread for stalledClientMs as gone, and hands its task to waitUntil until the reply is kept', async () => {
    const { run, cancels } = slowRun();
    const format = plainFormat();
    const held: Array<Promise<unknown>> = [];
    const response = sseStream([run], format, { id: 'x', smooth: false, headers: {}, stalledClientMs: 150, waitUntil: (promise) => void held.push(promise) });
    expect(held).toHaveLength(1);
    const reader = response.body!.getReader();
    await reader.read();
    // The runtime reads no more (what wrangler dev did with some bodies whose client left): no cancel, no signal.
    const stoppedAt = Date.now();
    await held[0];
    expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(150);
    expect(cancels).toEqual(['client']);
    expect(format.endedAs).toEqual(['abandoned']);
  });

  it('keeps a reply whose run ended on its own as read only once all it sent was taken: a body left unread is abandoned and logged client_left', async () => {
    const info = vi.spyOn(console, 'info').mockImplementation(() => undefined);
    const lines = (): RequestLogLine[] => info.mock.calls.map(([text]) => JSON.parse(String(text)) as RequestLogLine);
    for (const reads of ['one', 'all'] as const) {
      info.mockClear();
      const format = plainFormat();
      const held: Array<Promise<unknown>> = [];
      const log = new RequestLog('0123456789abcdef01234567', 'POST');
      // Its run ends 100 ms on, well within the window (what a short reply does a moment after its client left).
      const response = sseStream([shortRun(5)], format, { id: 'x', smooth: false, headers: {}, stalledClientMs: 300, waitUntil: (promise) => void held.push(promise), requestLog: log });
      log.responded(200, '/v1/chat/completions', null, null);
      const reader = response.body!.getReader();
      await reader.read();
      if (reads === 'all') while (!(await reader.read()).done);
      await held[0];
      await new Promise((resolve) => setTimeout(resolve, 0));
      expect(format.endedAs).toEqual([reads === 'all' ? 'ended' : 'abandoned']);
      expect(lines()).toHaveLength(1);
      expect(lines()[0].client_left).toBe(reads === 'all' ? undefined : true);
    }
  });

  it('never takes a reader that keeps taking, however far behind, for gone', async () => {
    const { run, cancels } = slowRun();
    const format = plainFormat();
    const held: Array<Promise<unknown>> = [];
    const response = sseStream([run], format, { id: 'x', smooth: false, headers: {}, stalledClientMs: 150, waitUntil: (promise) => void held.push(promise) });
    const reader = response.body!.getReader();
    // One frame every 100 ms, from a run writing one every 20: ever further behind, never 150 ms without a read.
    const startedAt = Date.now();
    while (Date.now() - startedAt < 1_000) {
      await reader.read();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(cancels).toEqual([]);
    expect(format.endedAs).toEqual([]);
    await reader.cancel(new Error('done reading'));
    await held[0];
    expect(cancels).toEqual(['client']);
  });

  it("cancels the runs for the client and keeps the reply as abandoned when the runtime cancels the body (the client left)", async () => {
    const { run, cancels } = slowRun();
    const format = plainFormat();
    const response = sseStream([run], format, { id: 'x', smooth: false, headers: {} });
    const reader = response.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain('data: begin');
    await reader.cancel(new Error('Network connection lost.'));
    await until(() => format.endedAs.length > 0);
    expect(cancels).toEqual(['client']);
    expect(format.endedAs).toEqual(['abandoned']);
  });

  it("cancels the runs once when the client's signal fires, and the reader sees the stream broken, not ended", async () => {
    const { run, cancels } = slowRun();
    const format = plainFormat();
    const client = new AbortController();
    const response = sseStream([run], format, { id: 'x', smooth: false, headers: {}, clientSignal: client.signal });
    const reader = response.body!.getReader();
    await reader.read();
    client.abort();
    await expect((async () => {
      for (;;) if ((await reader.read()).done) return 'ended';
    })()).rejects.toThrow('client disconnected');
    await until(() => format.endedAs.length > 0);
    expect(cancels).toEqual(['client']);
    expect(format.endedAs).toEqual(['abandoned']);
  });

  it("tells goesOn its task, which ends once what the format stores after the client left is written (a request's storage is settled then)", async () => {
    const { run } = slowRun();
    let stored = false;
    const format = { ...plainFormat(), abandoned: async () => {
      await new Promise((resolve) => setTimeout(resolve, 50));
      stored = true;
    } };
    const works: Array<Promise<unknown>> = [];
    const response = sseStream([run], format, { id: 'x', smooth: false, headers: {}, goesOn: (work) => works.push(work) });
    expect(works).toHaveLength(1);
    const reader = response.body!.getReader();
    await reader.read();
    await reader.cancel(new Error('Network connection lost.'));
    expect(stored).toBe(false);
    await works[0];
    expect(stored).toBe(true);
  });

  it("tells a resume the client is gone where the body is cancelled during its check, and still there otherwise", async () => {
    const { run } = slowRun();
    const response = sseStream([run], plainFormat(), { id: 'x', smooth: false, headers: {} });
    const reader = response.body!.getReader();
    await reader.read();
    const stillThere = (run as unknown as { clientStillThere: () => Promise<boolean> }).clientStillThere;
    expect(await stillThere()).toBe(true);
    const check = stillThere();
    await reader.cancel(new Error('Network connection lost.'));
    expect(await check).toBe(false);
  });
});
