import type { PoolEvent } from './protocol';

/**
 * Reads one form of a generation's body (pool-event-frames.ts,
 * pool-event-lines.ts): fed its chunks as they come, hands out whole events.
 */
export interface PoolEventDecoder {
  push(chunk: Uint8Array): void;
  /** The next whole event; null while more bytes are needed; a string: the stream is broken, and why. */
  next(): PoolEvent | null | string;
}
