/**
 * A generation's events as binary frames: what the pool writes for an edge
 * that asks, read back as the same events whatever the chunks, a tokens
 * event as bytes, and a broken stream ending with one error.
 */
import { describe, expect, it } from 'vitest';
import { encodeEventFrame, MAX_FRAME_BODY_BYTES, POOL_EVENT_FRAMES_TYPE } from '../../shared/pool-event-frames';
import { poolEventFormat, readPoolEvents } from '../../shared/pool-event-stream';
import type { PoolEvent } from '../../shared/protocol';
import { splitBytes } from '../support/split-bytes';

const done: PoolEvent = {
  type: 'done',
  finishReason: 'length',
  usage: { promptTokens: 7, completionTokens: 9, cachedPromptTokens: 4, speculation: { drafts: 2, draftTokens: 11, acceptedTokens: 5, steps: 4, meanAcceptanceLength: 2.25 } },
};
const stream: PoolEvent[] = [
  { type: 'queued', queuedMs: 1000 },
  { type: 'start', id: 'gen-1', queuedMs: 1012, cachedPromptTokens: 4 },
  { type: 'prompt-logprobs', logprobs: [-1.5, -0.25], topLogprobs: [[[3, -0.5]], [[9, -0.125]]] },
  { type: 'tokens', ids: [511, 0, 4_294_967_295, 42], sources: ['edge', 'context', 'datastore', 'model'], drafted: 11, accepted: 3 },
  { type: 'trie-exhausted', outputLength: 4 },
  { type: 'tokens', ids: [7], sources: ['model'], drafted: 0, accepted: 0, logprobs: [-0.1234567890123], topLogprobs: [[[7, -0.1234567890123], [8, -2.5]]] },
  { type: 'tokens', ids: [], sources: [], drafted: 3, accepted: 0 },
  done,
];

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function* chunksOf(parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield p;
}

async function readFrames(parts: Uint8Array[]): Promise<PoolEvent[]> {
  const out: PoolEvent[] = [];
  for await (const e of readPoolEvents(chunksOf(parts), { format: 'frames' })) out.push(e);
  return out;
}

/** A frame of the given kind around `body`, as the pool writes one. */
function frame(kind: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + body.length);
  new DataView(out.buffer).setUint32(0, body.length, true);
  out[4] = kind;
  out.set(body, 5);
  return out;
}

describe('event frames', () => {
  it('carry every event back as it was, the stream cut into chunks at every byte', async () => {
    const bytes = concat(stream.map(encodeEventFrame));
    expect(await readFrames([bytes])).toEqual(stream);
    for (let at = 1; at < bytes.length; at++) expect(await readFrames(splitBytes(bytes, [at])), `cut at ${at}`).toEqual(stream);
    // A byte at a time: every frame and every header spans chunks.
    expect(await readFrames(splitBytes(bytes, Array.from({ length: bytes.length - 1 }, (_, i) => i + 1)))).toEqual(stream);
  });

  it('write a tokens event as bytes: 17 bytes and 5 a token, no JSON', () => {
    const event: PoolEvent = { type: 'tokens', ids: [300, 1, 2], sources: ['datastore', 'edge', 'model'], drafted: 8, accepted: 2 };
    const bytes = encodeEventFrame(event);
    expect(bytes.length).toBe(17 + 5 * 3);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    expect([view.getUint32(0, true), bytes[4], view.getUint32(5, true), view.getUint32(9, true), view.getUint32(13, true)]).toEqual([12 + 15, 1, 8, 2, 3]);
    expect([view.getUint32(17, true), view.getUint32(21, true), view.getUint32(25, true)]).toEqual([300, 1, 2]);
    expect([...bytes.subarray(29)]).toEqual([3, 1, 0]);
    // With log-probabilities it rides as JSON, their doubles whole.
    const withLogprobs = encodeEventFrame({ ...event, logprobs: [-0.1, -0.2, -0.3] });
    expect(withLogprobs[4]).toBe(2);
    expect(JSON.parse(new TextDecoder().decode(withLogprobs.subarray(5)))).toEqual({ ...event, logprobs: [-0.1, -0.2, -0.3] });
  });

  it('read a large frame that comes in many small chunks', async () => {
    const logprobs = Array.from({ length: 50_000 }, (_, i) => -(i + 1) / 7);
    const big: PoolEvent = { type: 'prompt-logprobs', logprobs };
    const bytes = concat([encodeEventFrame(big), encodeEventFrame(done)]);
    const cuts = Array.from({ length: Math.floor(bytes.length / 997) }, (_, i) => (i + 1) * 997);
    expect(await readFrames(splitBytes(bytes, cuts))).toEqual([big, done]);
  });

  it('skip a frame of a kind they do not know, as NDJSON readers skip an unknown event type', async () => {
    const later = frame(9, new Uint8Array([1, 2, 3]));
    const empty = frame(10, new Uint8Array(0));
    expect(await readFrames([concat([encodeEventFrame(stream[3]), later, empty, encodeEventFrame(done)])])).toEqual([stream[3], done]);
  });

  it('end with one error for a broken frame, and at done or an error leave the rest unread', async () => {
    const tokens = encodeEventFrame(stream[3]);
    const malformed = (message: string): PoolEvent[] => [stream[3], { type: 'error', code: 'internal', message }];
    // A tokens frame whose length does not match its count.
    const short = frame(1, new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0, 0]));
    expect(await readFrames([concat([tokens, short, encodeEventFrame(done)])])).toEqual(malformed('pool sent a malformed event (a tokens frame whose length does not match its count)'));
    expect(await readFrames([concat([tokens, frame(1, new Uint8Array(8)), encodeEventFrame(done)])])).toEqual(malformed('pool sent a malformed event (a tokens frame too short)'));
    // A source past the known ones.
    const badSource = encodeEventFrame(stream[3]);
    badSource[badSource.length - 1] = 4;
    expect(await readFrames([concat([tokens, badSource, encodeEventFrame(done)])])).toEqual(malformed('pool sent a malformed event (a token source out of range)'));
    // JSON that does not parse, and JSON of the wrong shape.
    expect(await readFrames([concat([tokens, frame(2, new TextEncoder().encode('{"type": tok')), encodeEventFrame(done)])])).toEqual(malformed('pool sent a malformed event'));
    expect(await readFrames([concat([tokens, frame(2, new TextEncoder().encode('{"type":"tokens"}')), encodeEventFrame(done)])])).toEqual(malformed('pool sent a malformed event (tokens without ids)'));
    // A length no frame has (a proxy's HTML page read as frames): refused at its header, not waited for.
    const page = new TextEncoder().encode('<!DOCTYPE html><html>');
    expect(new DataView(page.buffer).getUint32(0, true)).toBeGreaterThan(MAX_FRAME_BODY_BYTES);
    expect(await readFrames([concat([tokens, page])])).toEqual(malformed(`pool sent a malformed event (a frame of ${new DataView(page.buffer).getUint32(0, true)} bytes)`));
    // Cut inside a frame, or after whole frames without done.
    expect(await readFrames([concat([tokens, encodeEventFrame(done).subarray(0, 9)])])).toEqual(malformed('pool stream ended without a done event'));
    expect(await readFrames([tokens])).toEqual(malformed('pool stream ended without a done event'));
    // done and error end the reading.
    const error: PoolEvent = { type: 'error', code: 'internal', message: 'the pass failed' };
    expect(await readFrames([concat([tokens, encodeEventFrame(error), tokens, encodeEventFrame(done)])])).toEqual([stream[3], error]);
    expect(await readFrames([concat([encodeEventFrame(done), tokens])])).toEqual([done]);
  });

  it('are read where the content-type names them, NDJSON otherwise', () => {
    expect(poolEventFormat(POOL_EVENT_FRAMES_TYPE)).toBe('frames');
    expect(poolEventFormat('Application/Vnd.SSSD.Pool-Events; charset=binary')).toBe('frames');
    expect(poolEventFormat('application/x-ndjson')).toBe('ndjson');
    expect(poolEventFormat(null)).toBe('ndjson');
    expect(poolEventFormat(`${POOL_EVENT_FRAMES_TYPE}+json`)).toBe('ndjson');
  });
});
