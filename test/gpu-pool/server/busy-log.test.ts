/** The busy answers' log line: said at once after a quiet spell, then at most one a minute with the count held, and every episode leaves one. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BusyLog } from '../../../gpu-pool/server/busy-log';

describe('BusyLog', () => {
  let now: number;
  let lines: string[];
  let log: BusyLog;
  beforeEach(() => {
    vi.useFakeTimers();
    now = 0;
    lines = [];
    log = new BusyLog((line) => lines.push(line), 60_000, () => now);
  });
  afterEach(() => {
    log.close();
    vi.useRealTimers();
  });
  const advance = (ms: number): void => {
    now += ms;
    vi.advanceTimersByTime(ms);
  };

  it('says the first at once, holds the rest of the minute, then says their count and the latest reason', () => {
    log.note('at capacity (2 of 2)');
    expect(lines).toEqual([expect.stringMatching(/^pool: answered busy 1 time\(s\) since it started, the latest: at capacity \(2 of 2\) \(sssd_pool_rejected_requests_total/)]);
    for (let i = 0; i < 57; i++) {
      advance(500);
      log.note(i < 56 ? 'at capacity (2 of 2)' : 'token reservations full');
    }
    expect(lines).toHaveLength(1);
    advance(60_000 - 57 * 500);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/^pool: answered busy 57 time\(s\) since the last such line, 60 s ago \(58 in all\), the latest: token reservations full \(/);
    // Nothing held: no more lines while none come.
    advance(300_000);
    expect(lines).toHaveLength(2);
  });

  it('a second overload episode, however many came before, gets its own line at once (review h223)', () => {
    for (let i = 0; i < 1500; i++) log.note('first burst');
    advance(60_000);
    expect(lines.map((l) => l.match(/answered busy (\d+)/)?.[1])).toEqual(['1', '1499']);
    advance(10 * 60_000);
    log.note('second burst');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatch(/answered busy 1 time\(s\) since the last such line, 600 s ago \(1501 in all\), the latest: second burst/);
  });

  it('close() says what is held instead of losing it', () => {
    log.note('a');
    advance(1000);
    log.note('b');
    log.note('c');
    log.close();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/answered busy 2 time\(s\) since the last such line, 1 s ago \(3 in all\), the latest: c /);
    advance(120_000);
    expect(lines).toHaveLength(2);
  });
});
