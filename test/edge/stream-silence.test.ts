import { describe, expect, it } from 'vitest';
import type { CompletionRun, CompletionSummary } from '../../edge/completion-run';
import { sseStream, type SendFrame, type StreamFormat } from '../../edge/sse-response';
import { longestStreamSilenceMs, longestWaitForHeadersMs } from '../../edge/stream-silence';
import { DOWN_POOL_ANSWER_MS } from '../../edge/open-generation';
import type { SourcedText } from '../../edge/token-text';

const summary = {
  finishReason: 'length',
  stopReason: null,
  usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
  promptLogprobs: null,
} as CompletionSummary;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A run that yields a piece, falls silent `silentMs` (a pool hung mid-reply), yields another and ends. */
function runSilentFor(silentMs: number): CompletionRun {
  const fake = {
    clientStillThere: null as (() => Promise<boolean>) | null,
    cancel() {},
    async *run(): AsyncGenerator<SourcedText[], CompletionSummary> {
      yield [{ text: 'a', source: 'model' } as SourcedText];
      await sleep(silentMs);
      yield [{ text: 'b', source: 'model' } as SourcedText];
      return summary;
    },
  };
  return fake as unknown as CompletionRun;
}

const format: StreamFormat = {
  begin: (send: SendFrame) => send('data: begin\n\n'),
  piece: (_i: number, segments: SourcedText[], send: SendFrame) => send(`data: ${segments.map((s) => s.text).join('')}\n\n`),
  finished: () => undefined,
  ended: () => undefined,
  failed: () => undefined,
  close: (send: SendFrame) => send('data: [DONE]\n\n'),
};

/** The longest wait between two reads of the stream's body, from its start to its end, and what it said. */
async function longestGap(response: Response): Promise<{ gapMs: number; text: string }> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  let last = performance.now();
  let gapMs = 0;
  for (;;) {
    const { value, done } = await reader.read();
    const now = performance.now();
    gapMs = Math.max(gapMs, now - last);
    last = now;
    if (done) return { gapMs, text };
    text += decoder.decode(value, { stream: true });
  }
}

// What a client's stall watch may count on (the demo page gives up at three times it). The margin is for timers late
// under load; without the comments each gap would be the whole silence (1.2 s).
const LATE_TIMER_MS = 150;

describe('longestStreamSilenceMs', () => {
  it('bounds the silence of a stream whose pool hangs mid-reply: comments fill it', async () => {
    const quietCommentMs = 200;
    const { gapMs, text } = await longestGap(sseStream([runSilentFor(1_200)], format, { id: 'x', smooth: false, headers: {}, quietCommentMs }));
    expect(text).toMatch(/data: a\n\n(: waiting for the pool\n\n){3,}data: b\n\n/);
    expect(gapMs).toBeLessThanOrEqual(longestStreamSilenceMs(0, quietCommentMs) + LATE_TIMER_MS);
  });

  it('bounds the silence of a stream queued at its pool before its first chunk: heartbeats fill it', async () => {
    const heartbeatMs = 500;
    // 2.1 s: four heartbeats when timers are on time, three at least when they run late under load (CI at 2ee5725: two in 1.6 s).
    const opening = sleep(2_100);
    const { gapMs, text } = await longestGap(sseStream([runSilentFor(0)], format, { id: 'x', smooth: false, headers: {}, opening, heartbeatMs, quietCommentMs: 100 }));
    expect(text).toMatch(/^(: waiting for the pool\n\n){3,}data: begin\n\n/);
    // The bound covers the heartbeat (and, past it, a resumed background stream's read a second: background-stream.test.ts).
    expect(longestStreamSilenceMs(heartbeatMs, 100)).toBeGreaterThanOrEqual(heartbeatMs);
    expect(gapMs).toBeLessThanOrEqual(heartbeatMs + LATE_TIMER_MS);
  });
});

// How long openGeneration takes on pools that never answer is measured in open-generation.test.ts; the demo page's
// wait on it, in test/e2e/demo-page.test.ts.
describe('longestWaitForHeadersMs', () => {
  it("is one pool's stall window, a short window for each pool after it, and the heartbeat's grace", () => {
    const one = longestWaitForHeadersMs(30_000, 1, 500) ?? 0;
    expect(one).toBeGreaterThan(30_000);
    expect(longestWaitForHeadersMs(30_000, 3, 500)).toBe(one + 2 * DOWN_POOL_ANSWER_MS);
    // A window shorter than the short one is all a doubted pool gets too.
    expect(longestWaitForHeadersMs(1_000, 3, 500)).toBe((longestWaitForHeadersMs(1_000, 1, 500) ?? 0) + 2 * 1_000);
    // No pool: every generation is a 503 at once, within the bound of one.
    expect(longestWaitForHeadersMs(30_000, 0, 500)).toBe(one);
  });

  it('sets no bound where a stream\'s headers wait for its first tokens (no heartbeat): they may queue at a pool for long', () => {
    expect(longestWaitForHeadersMs(30_000, 1, 0)).toBeNull();
  });
});
