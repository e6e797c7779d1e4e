/**
 * How a generation's events are written: binary frames when the request's
 * `accept` names them (the edge and the serving benchmark ask), NDJSON
 * otherwise (curl, a client or edge from before frames). See docs/protocol.md,
 * "Event frames".
 */
import { encodeEventFrame, POOL_EVENT_FRAMES_TYPE } from '../../shared/pool-event-frames';
import { encodeEventLine } from '../../shared/pool-event-lines';
import type { PoolEvent } from '../../shared/protocol';

export interface EventEncoding {
  /** Its label in sssd_pool_event_streams_total. */
  name: 'frames' | 'ndjson';
  contentType: string;
  encode(event: PoolEvent): Uint8Array | string;
}

const frames: EventEncoding = { name: 'frames', contentType: POOL_EVENT_FRAMES_TYPE, encode: encodeEventFrame };
const lines: EventEncoding = { name: 'ndjson', contentType: 'application/x-ndjson', encode: encodeEventLine };

/** Frames where `accept` lists their media type with a q above 0; NDJSON for anything else, `*\/*` included. */
export function eventEncodingFor(accept: string | undefined): EventEncoding {
  if (accept === undefined || !accept.toLowerCase().includes(POOL_EVENT_FRAMES_TYPE)) return lines;
  for (const range of accept.split(',')) {
    const [mediaType, ...params] = range.split(';');
    if (mediaType.trim().toLowerCase() !== POOL_EVENT_FRAMES_TYPE) continue;
    const q = params.map((p) => p.trim().toLowerCase()).find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0 ? frames : lines;
  }
  return lines;
}
