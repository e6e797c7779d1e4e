/**
 * Which form a generation's events take: frames only for a client whose
 * `accept` names them, so curl and edges from before them keep NDJSON.
 */
import { describe, expect, it } from 'vitest';
import { eventEncodingFor } from '../../../gpu-pool/server/event-encoding';
import { POOL_EVENT_FRAMES_ACCEPT, POOL_EVENT_FRAMES_TYPE } from '../../../shared/pool-event-frames';

const contentType = (accept: string | undefined): string => eventEncodingFor(accept).contentType;

describe('eventEncodingFor', () => {
  it('answers frames to a client that names them, with or without a q above 0, in any case, anywhere in its list', () => {
    for (const accept of [POOL_EVENT_FRAMES_TYPE, POOL_EVENT_FRAMES_ACCEPT, `application/json, ${POOL_EVENT_FRAMES_TYPE};q=0.5`, 'APPLICATION/VND.SSSD.POOL-EVENTS'])
      expect(contentType(accept), accept).toBe(POOL_EVENT_FRAMES_TYPE);
  });

  it('answers NDJSON to everyone else: no accept, */*, NDJSON, or frames refused with q=0', () => {
    for (const accept of [undefined, '', '*/*', 'application/x-ndjson', `${POOL_EVENT_FRAMES_TYPE};q=0`, `${POOL_EVENT_FRAMES_TYPE}+json`])
      expect(contentType(accept), String(accept)).toBe('application/x-ndjson');
  });

  it('writes a tokens event as a frame for the one and as a JSON line for the other', () => {
    const event = { type: 'tokens', ids: [5], sources: ['model'], drafted: 0, accepted: 0 } as const;
    const frame = eventEncodingFor(POOL_EVENT_FRAMES_TYPE).encode({ ...event, ids: [...event.ids], sources: [...event.sources] });
    expect(frame).toBeInstanceOf(Uint8Array);
    expect((frame as Uint8Array)[4]).toBe(1);
    expect(eventEncodingFor(undefined).encode({ ...event, ids: [...event.ids], sources: [...event.sources] })).toBe('{"type":"tokens","ids":[5],"sources":["model"],"drafted":0,"accepted":0}\n');
  });
});
