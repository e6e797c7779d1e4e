/**
 * Reading a pool's NDJSON generation stream, as a web stream (fetch, workerd)
 * and as a Node response's chunks (the serving benchmark): lines split across
 * chunks, reading stops at `done`, a broken stream ends with one `error`.
 */
import { describe, expect, it } from 'vitest';
import { readPoolEvents } from '../../shared/pool-event-stream';
import type { PoolEvent } from '../../shared/protocol';
import { splitBytes } from '../support/split-bytes';

const enc = new TextEncoder();
const tokens = (ids: number[]): PoolEvent => ({ type: 'tokens', ids, sources: ids.map(() => 'model'), drafted: 0, accepted: 0 });
const done: PoolEvent = {
  type: 'done',
  finishReason: 'stop',
  usage: { promptTokens: 1, completionTokens: 3, speculation: { drafts: 0, draftTokens: 0, acceptedTokens: 0, steps: 3, meanAcceptanceLength: 1 } },
};

/** The NDJSON text cut into chunks at the given offsets. */
function cut(text: string, at: number[]): Uint8Array[] {
  return splitBytes(enc.encode(text), at);
}

function webStream(chunks: Uint8Array[], onCancel?: () => void): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(chunks[i++]);
      else controller.close();
    },
    cancel: () => onCancel?.(),
  });
}

/** Chunks as an async iterable that records how far it was read. */
function iterable(chunks: Uint8Array[], fail?: Error): AsyncIterable<Uint8Array> & { pulled: number } {
  const it = {
    pulled: 0,
    async *[Symbol.asyncIterator]() {
      for (const c of chunks) {
        it.pulled++;
        yield c;
      }
      if (fail) throw fail;
    },
  };
  return it;
}

async function collect(body: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>): Promise<PoolEvent[]> {
  const out: PoolEvent[] = [];
  for await (const e of readPoolEvents(body)) out.push(e);
  return out;
}

const text = `${JSON.stringify(tokens([5, 6]))}\n\n${JSON.stringify(tokens([7]))}\n${JSON.stringify(done)}\n`;

describe('readPoolEvents', () => {
  it('parses lines split anywhere across chunks, from a web stream and from an async iterable', async () => {
    const at = [3, 17, 18, text.indexOf('\n\n') + 1, text.length - 5];
    const want = [tokens([5, 6]), tokens([7]), done];
    expect(await collect(webStream(cut(text, at)))).toEqual(want);
    expect(await collect(iterable(cut(text, at)))).toEqual(want);
  });

  it('stops at done: the rest is left unread and a web stream is cancelled', async () => {
    const after = `${text}${JSON.stringify(tokens([9]))}\n`;
    const chunks = cut(after, [text.length]);
    let cancelled = false;
    expect(await collect(webStream(chunks, () => (cancelled = true)))).toEqual([tokens([5, 6]), tokens([7]), done]);
    expect(cancelled).toBe(true);
    const source = iterable(chunks);
    expect((await collect(source)).at(-1)).toEqual(done);
    expect(source.pulled).toBe(1);
  });

  it("ends a web stream's reading at its signal by cancelling the reader: the pending read ends, nothing fails", async () => {
    let cancelled = false;
    // A pool that sent one step and then nothing: the read after it waits.
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(enc.encode(`${JSON.stringify(tokens([1]))}\n`));
      },
      cancel: () => {
        cancelled = true;
      },
    });
    const stop = new AbortController();
    const events = readPoolEvents(body, { signal: stop.signal });
    expect((await events.next()).value).toEqual(tokens([1]));
    const pending = events.next();
    stop.abort();
    // Ended as a stream without `done` ends, with the source cancelled (the pool's connection closed).
    expect((await pending).value).toEqual({ type: 'error', code: 'internal', message: 'pool stream ended without a done event' });
    expect((await events.next()).done).toBe(true);
    expect(cancelled).toBe(true);
  });

  it('ends with one error for a malformed line, an event of the wrong shape, a stream without done, or a broken stream', async () => {
    const malformed = await collect(iterable(cut(`${JSON.stringify(tokens([1]))}\n{"type": tok\n${JSON.stringify(done)}\n`, [])));
    expect(malformed).toEqual([tokens([1]), { type: 'error', code: 'internal', message: 'pool sent a malformed event' }]);

    // Valid JSON of the wrong shape (a pool of another version, a proxy): the same error, naming what is wrong.
    for (const [line, why] of [
      ['null', 'not an object'],
      ['{"type":"tokens"}', 'tokens without ids'],
      ['{"type":"tokens","ids":[1,-2],"sources":["model","model"],"drafted":0,"accepted":0}', 'a token id that is not a count'],
      ['{"type":"tokens","ids":[1,2],"sources":["model"],"drafted":0,"accepted":0}', 'tokens whose sources do not match its ids'],
      ['{"type":"done","finishReason":"stop"}', 'done without usage'],
      ['{"type":"error"}', 'error without a code and message'],
    ] as const) {
      expect(await collect(iterable(cut(`${JSON.stringify(tokens([1]))}\n${line}\n${JSON.stringify(done)}\n`, []))), line).toEqual([
        tokens([1]),
        { type: 'error', code: 'internal', message: `pool sent a malformed event (${why})` },
      ]);
    }
    // An event type it does not know passes (protocol 1 grows by adding events; readers ignore them).
    expect(await collect(iterable(cut(`{"type":"later-event","x":1}\n${JSON.stringify(done)}\n`, [])))).toEqual([{ type: 'later-event', x: 1 }, done]);

    const short = await collect(webStream(cut(`${JSON.stringify(tokens([1]))}\n`, [])));
    expect(short.at(-1)).toEqual({ type: 'error', code: 'internal', message: 'pool stream ended without a done event' });

    const broken = await collect(iterable(cut(`${JSON.stringify(tokens([1]))}\n`, []), new Error('socket hang up')));
    expect(broken).toHaveLength(2);
    expect(broken[1]).toMatchObject({ type: 'error', code: 'internal' });
    expect((broken[1] as { message: string }).message).toMatch(/pool stream broke: .*socket hang up/);
  });

  it('refuses an event missing one field its readers act on: logprobs short of the ids, done without completionTokens, error without a message', async () => {
    for (const [line, why] of [
      ['{"type":"tokens","ids":[1,2],"sources":["model","model"],"drafted":0,"accepted":0,"logprobs":[-0.1]}', 'tokens whose logprobs do not match its ids'],
      ['{"type":"done","finishReason":"stop","usage":{"promptTokens":1,"speculation":{}}}', 'done without token counts'],
      ['{"type":"error","code":"internal"}', 'error without a code and message'],
    ] as const) {
      expect(await collect(iterable(cut(`${line}\n${JSON.stringify(done)}\n`, []))), line).toEqual([
        { type: 'error', code: 'internal', message: `pool sent a malformed event (${why})` },
      ]);
    }
  });

  it('stops at an error event: the lines after it are left unread', async () => {
    const error: PoolEvent = { type: 'error', code: 'busy', message: 'pool is full' };
    const after = `${JSON.stringify(tokens([1]))}\n${JSON.stringify(error)}\n${JSON.stringify(tokens([2]))}\n${JSON.stringify(done)}\n`;
    const chunks = cut(after, [after.indexOf(JSON.stringify(tokens([2])))]);
    const source = iterable(chunks);
    expect(await collect(source)).toEqual([tokens([1]), error]);
    expect(source.pulled).toBe(1);
    let cancelled = false;
    expect(await collect(webStream(chunks, () => (cancelled = true)))).toEqual([tokens([1]), error]);
    expect(cancelled).toBe(true);
  });
});
