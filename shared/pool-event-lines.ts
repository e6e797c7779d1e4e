/**
 * A generation's events as NDJSON (`application/x-ndjson`), one event per
 * line: what the pool answers a client that does not ask for frames
 * (pool-event-frames.ts), such as curl or an edge from before them.
 */
import { poolEventMalformation } from './pool-event-shape';
import type { PoolEventDecoder } from './pool-event-decoder';
import type { PoolEvent } from './protocol';

/** One event as an NDJSON line. */
export function encodeEventLine(event: PoolEvent): string {
  return JSON.stringify(event) + '\n';
}

export class PoolEventLineDecoder implements PoolEventDecoder {
  private readonly decoder = new TextDecoder();
  private buffer = '';

  push(chunk: Uint8Array): void {
    this.buffer += this.decoder.decode(chunk, { stream: true });
  }

  next(): PoolEvent | null | string {
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line.length === 0) continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        return 'pool sent a malformed event';
      }
      // Valid JSON of the wrong shape is as broken a stream as a broken line.
      const malformation = poolEventMalformation(parsed);
      return malformation === null ? (parsed as PoolEvent) : `pool sent a malformed event (${malformation})`;
    }
    return null;
  }
}
