import { describe, expect, it } from 'vitest';
import { slotsHeldBy } from '../../edge/slot-holders';

describe('slotsHeldBy', () => {
  it('says what holds the slots and when each is likely free, one kind alone', () => {
    expect(slotsHeldBy([{ kind: 'background', count: 1, freeInS: 23 }], 5)).toBe('1 background response running (ends within 23 s)');
    expect(slotsHeldBy([{ kind: 'body', count: 1, freeInS: 28, endsInMs: 27_400 }], 5)).toBe('1 request body still uploading (a 408 in 27 s if it stalls)');
    expect(slotsHeldBy([{ kind: 'left', count: 1, freeInS: 4 }], 5)).toBe('1 request whose client left (its slot back within 4 s)');
    // One in progress may be the client's own, cut a moment ago: its lease is said (review h163).
    expect(slotsHeldBy([{ kind: 'answering', count: 1, freeInS: 1 }], 3)).toBe('1 request in progress (a request whose client left holds its slot up to 3 s)');
  });

  it("says when a body's 408 comes, never later than it comes: not Retry-After's figure, a heartbeat later and rounded up (review h203)", () => {
    // Just read from: a 30 s timeout, and Retry-After 31 (30.25 s rounded up). It said "a 408 in 31 s".
    expect(slotsHeldBy([{ kind: 'body', count: 1, freeInS: 31, endsInMs: 30_000 }], 5)).toBe('1 request body still uploading (a 408 in 30 s if it stalls)');
    expect(slotsHeldBy([{ kind: 'body', count: 1, freeInS: 30, endsInMs: 29_999 }], 5)).toBe('1 request body still uploading (a 408 in 29 s if it stalls)');
    // Under a second left (or past it: the 408 is on its way), not "in 0 s".
    expect(slotsHeldBy([{ kind: 'body', count: 1, freeInS: 1, endsInMs: 600 }], 5)).toBe('1 request body still uploading (a 408 within a second if it stalls)');
    expect(slotsHeldBy([{ kind: 'body', count: 1, freeInS: 1, endsInMs: -100 }], 5)).toBe('1 request body still uploading (a 408 within a second if it stalls)');
  });

  it('counts several of a kind, with the first of them to free, and joins the kinds', () => {
    expect(
      slotsHeldBy(
        [
          { kind: 'answering', count: 2, freeInS: 1 },
          { kind: 'body', count: 2, freeInS: 30, endsInMs: 29_600 },
          { kind: 'background', count: 3, freeInS: 12 },
          { kind: 'left', count: 2, freeInS: 5 },
        ],
        5,
      ),
    ).toBe(
      '2 requests in progress (a request whose client left holds its slot up to 5 s), 2 request bodies still uploading (the first 408 in 29 s if they stall), ' +
        '3 background responses running (the first ends within 12 s) and 2 requests whose clients left (the first slot back within 5 s)',
    );
    expect(slotsHeldBy([{ kind: 'background', count: 1, freeInS: 9 }, { kind: 'left', count: 1, freeInS: 2 }], 5)).toBe(
      '1 background response running (ends within 9 s) and 1 request whose client left (its slot back within 2 s)',
    );
  });
});
