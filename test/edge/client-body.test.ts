import { describe, expect, it, vi } from 'vitest';
import { ClientBody } from '../../edge/client-body';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

/** Everything the body gives a reader, to its end, as text. */
async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  return new Response(stream).text();
}

describe('ClientBody', () => {
  it('gives the reader what was sent, in order, and ends where it is closed (sends after that are dropped)', async () => {
    let left = 0;
    const body = new ClientBody({ gone: () => void left++ });
    body.send(bytes('data: a\n\n'));
    body.send(bytes(': comment\n\n'));
    body.close();
    body.send(bytes('data: late\n\n'));
    expect(body.ended).toBe(true);
    expect(await readAll(body.stream)).toBe('data: a\n\n: comment\n\n');
    expect(left).toBe(0);
  });

  it("tells of the client's leaving once when the runtime cancels the body, and sends nothing after", async () => {
    let left = 0;
    const body = new ClientBody({ gone: () => void left++ });
    const reader = body.stream.getReader();
    body.send(bytes('data: a\n\n'));
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('data: a\n\n');
    // What the runtime does with a response body whose client went.
    await reader.cancel(new Error('Network connection lost.'));
    expect(left).toBe(1);
    expect(body.ended).toBe(true);
    body.send(bytes('data: b\n\n'));
    body.close();
    body.abandon();
    expect(left).toBe(1);
  });

  it('drops what waits unsent when the caller finds the client gone first (its signal), with no word back', async () => {
    let left = 0;
    const body = new ClientBody({ gone: () => void left++ });
    body.send(bytes('data: a\n\n'));
    body.abandon();
    body.send(bytes('data: b\n\n'));
    await expect(readAll(body.stream)).rejects.toThrow('client disconnected');
    expect(left).toBe(0);
  });

  it('tells how long what was sent has waited with none of it taken: 0 while the reader keeps up, growing once it stops', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const at = (ms: number): void => void vi.setSystemTime(1_000_000 + ms);
      at(0);
      const body = new ClientBody({ gone: () => undefined });
      const reader = body.stream.getReader();
      at(5_000);
      expect(body.unreadForMs()).toBe(0);
      body.send(bytes('data: a\n\n'));
      await reader.read();
      // Taken: nothing waits, however long since.
      at(10_000);
      expect(body.unreadForMs()).toBe(0);
      body.send(bytes('data: b\n\n'));
      body.send(bytes('data: c\n\n'));
      at(10_500);
      expect(body.unreadForMs()).toBe(500);
      // One taken of the two: the reader is there, if behind.
      await reader.read();
      at(11_000);
      expect(body.unreadForMs()).toBe(0);
      // None taken since: the wait counts from then.
      body.send(bytes('data: d\n\n'));
      at(13_000);
      expect(body.unreadForMs()).toBe(2_000);
    } finally {
      vi.useRealTimers();
    }
  });

  it('says all that was sent is taken once the reader has taken it, however late, and not where what waits stays unread for the window', async () => {
    const read = new ClientBody({ gone: () => undefined });
    const reader = read.stream.getReader();
    read.send(bytes('data: a\n\n'));
    read.send(bytes('data: b\n\n'));
    // A reader behind, taking one chunk now and the other later: waited for, past the window it keeps taking within.
    const taken = read.taken(150);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await reader.read();
    await new Promise((resolve) => setTimeout(resolve, 100));
    await reader.read();
    expect(await taken).toBe(true);

    const left = new ClientBody({ gone: () => undefined });
    left.stream.getReader();
    left.send(bytes('data: a\n\n'));
    const started = Date.now();
    expect(await left.taken(100)).toBe(false);
    expect(Date.now() - started).toBeGreaterThanOrEqual(95);

    const cancelled = new ClientBody({ gone: () => undefined });
    cancelled.send(bytes('data: a\n\n'));
    await cancelled.stream.cancel(new Error('Network connection lost.'));
    expect(await cancelled.taken(1_000)).toBe(false);
  });
});
