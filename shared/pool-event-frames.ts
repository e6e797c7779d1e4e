/**
 * A generation's events as length-prefixed binary frames
 * (`application/vnd.sssd.pool-events`; docs/protocol.md, "Event frames"), the
 * form an edge asks for. A `tokens` event, one per row per step, is bytes: no
 * JSON to write at the pool or to parse at the edge, where CPU is billed per
 * request (JSON cost ~1.5 µs to write and ~1 µs to parse an event on the
 * development VM, ~0.3 µs as a frame). Every other event, and a `tokens` one
 * with log-probabilities, rides a frame as its JSON.
 *
 * A frame: u32 body length (little-endian), u8 kind, then the body.
 *   kind 1, tokens: u32 drafted, u32 accepted, u32 count, count × u32 id,
 *                   count × u8 source (an index into `tokenSources`);
 *   kind 2, json:   one event as UTF-8 JSON.
 * A reader skips a frame of a kind it does not know (protocol 1 grows by
 * adding them, as NDJSON readers skip event types they do not know).
 */
import { poolEventMalformation } from './pool-event-shape';
import { tokenSources, type PoolEvent, type TokenSource } from './protocol';
import type { PoolEventDecoder } from './pool-event-decoder';

/** The media type of a frame stream: an edge's `accept`, the pool's `content-type`. */
export const POOL_EVENT_FRAMES_TYPE = 'application/vnd.sssd.pool-events';
/** What a client that reads frames sends as `accept` (errors outside a stream are JSON). */
export const POOL_EVENT_FRAMES_ACCEPT = `${POOL_EVENT_FRAMES_TYPE}, application/json;q=0.9`;

const KIND_TOKENS = 1;
const KIND_JSON = 2;
/** u32 body length + u8 kind. */
const HEADER_BYTES = 5;
/** A tokens body before its ids: drafted, accepted, count. */
const TOKENS_FIXED_BYTES = 12;
/** The longest body read: V8's longest string, so any JSON frame one can parse fits (a prompt's top log-probabilities can be large). */
export const MAX_FRAME_BODY_BYTES = 2 ** 29 - 24;

const sourceIndex = new Map<TokenSource, number>(tokenSources.map((source, i) => [source, i]));
const textEncoder = new TextEncoder();

/** One event as a frame. */
export function encodeEventFrame(event: PoolEvent): Uint8Array {
  if (event.type === 'tokens' && event.logprobs === undefined && event.topLogprobs === undefined) {
    const count = event.ids.length;
    const frame = new Uint8Array(HEADER_BYTES + TOKENS_FIXED_BYTES + 5 * count);
    putUint32(frame, 0, TOKENS_FIXED_BYTES + 5 * count);
    frame[4] = KIND_TOKENS;
    putUint32(frame, 5, event.drafted);
    putUint32(frame, 9, event.accepted);
    putUint32(frame, 13, count);
    let at = HEADER_BYTES + TOKENS_FIXED_BYTES;
    for (let i = 0; i < count; i++, at += 4) putUint32(frame, at, event.ids[i]);
    for (let i = 0; i < count; i++) frame[at + i] = sourceIndex.get(event.sources[i]) ?? 0;
    return frame;
  }
  const json = textEncoder.encode(JSON.stringify(event));
  const frame = new Uint8Array(HEADER_BYTES + json.length);
  putUint32(frame, 0, json.length);
  frame[4] = KIND_JSON;
  frame.set(json, HEADER_BYTES);
  return frame;
}

// Byte by byte, little-endian: a DataView a frame cost more than the frame's own writes and reads (~0.2 µs of ~0.45).
function putUint32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value;
  bytes[at + 1] = value >>> 8;
  bytes[at + 2] = value >>> 16;
  bytes[at + 3] = value >>> 24;
}

function getUint32(bytes: Uint8Array, at: number): number {
  return (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16)) + bytes[at + 3] * 0x1000000;
}

/**
 * Frames → events, fed the body's chunks as they come. Chunks are kept as
 * they are and joined only for a frame that spans them, so a large frame in
 * many chunks costs one copy, not one per chunk.
 */
export class PoolEventFrameDecoder implements PoolEventDecoder {
  private chunks: Uint8Array[] = [];
  /** Where reading resumes in chunks[0]. */
  private offset = 0;
  private available = 0;
  /** The frame whose header was read and whose body has not all come: its kind and body length. */
  private kind = -1;
  private bodyLength = 0;
  private readonly text = new TextDecoder();

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.available += chunk.length;
  }

  next(): PoolEvent | null | string {
    for (;;) {
      if (this.kind < 0) {
        if (this.available < HEADER_BYTES) return null;
        const header = this.take(HEADER_BYTES);
        const length = getUint32(header, 0);
        if (length > MAX_FRAME_BODY_BYTES) return `pool sent a malformed event (a frame of ${length} bytes)`;
        this.kind = header[4];
        this.bodyLength = length;
      }
      if (this.available < this.bodyLength) return null;
      const body = this.take(this.bodyLength);
      const kind = this.kind;
      this.kind = -1;
      if (kind === KIND_TOKENS) return decodeTokens(body);
      if (kind === KIND_JSON) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(this.text.decode(body));
        } catch {
          return 'pool sent a malformed event';
        }
        const malformation = poolEventMalformation(parsed);
        return malformation === null ? (parsed as PoolEvent) : `pool sent a malformed event (${malformation})`;
      }
      // A kind from a later pool: skipped, as NDJSON readers skip event types they do not know.
    }
  }

  /** The next n bytes: a view where they lie in one chunk, a copy where they span chunks. */
  private take(n: number): Uint8Array {
    this.available -= n;
    const first = this.chunks[0];
    if (n === 0) return new Uint8Array(0);
    if (first.length - this.offset >= n) {
      const out = first.subarray(this.offset, this.offset + n);
      this.offset += n;
      if (this.offset === first.length) this.dropFirst();
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0];
      const part = Math.min(n - filled, chunk.length - this.offset);
      out.set(chunk.subarray(this.offset, this.offset + part), filled);
      filled += part;
      this.offset += part;
      if (this.offset === chunk.length) this.dropFirst();
    }
    return out;
  }

  private dropFirst(): void {
    this.chunks.shift();
    this.offset = 0;
  }
}

function decodeTokens(body: Uint8Array): PoolEvent | string {
  if (body.length < TOKENS_FIXED_BYTES) return 'pool sent a malformed event (a tokens frame too short)';
  const drafted = getUint32(body, 0);
  const accepted = getUint32(body, 4);
  const count = getUint32(body, 8);
  if (body.length !== TOKENS_FIXED_BYTES + 5 * count) return 'pool sent a malformed event (a tokens frame whose length does not match its count)';
  const ids = new Array<number>(count);
  const sources = new Array<TokenSource>(count);
  let at = TOKENS_FIXED_BYTES;
  for (let i = 0; i < count; i++, at += 4) ids[i] = getUint32(body, at);
  for (let i = 0; i < count; i++) {
    const source = tokenSources[body[at + i]];
    if (source === undefined) return 'pool sent a malformed event (a token source out of range)';
    sources[i] = source;
  }
  return { type: 'tokens', ids, sources, drafted, accepted };
}
