import { describe, expect, it } from 'vitest';
import { STORAGE_FLOOR_BYTES, StorageBudget } from '../../edge/storage-budget';
import { HeldMeters, StorageMeter } from '../../edge/storage-meter';

const MB = 1024 * 1024;

/** A meter on key 'k' of a real budget of `perDay`, its clock stopped (no refill between steps). */
function meterOn(budget: StorageBudget, perDay: number): StorageMeter {
  return new StorageMeter({ take: (bytes) => budget.takeAll('s', 'k', bytes, perDay, 0), charge: (bytes) => budget.charge('s', 'k', bytes, perDay, 0) });
}

/** Whether the key's bucket holds `bytes` (taken where it does). */
const holds = (budget: StorageBudget, bytes: number, perDay: number): boolean => budget.take('s', 'k', bytes, perDay, 0) === null;

describe('StorageMeter', () => {
  it('takes what it reserves before, then charges what the writes come to past it, each record at its largest write', () => {
    const budget = new StorageBudget();
    const meter = meterOn(budget, MB);
    expect(meter.reserve(10_000)).toBeNull();
    // Within the reservation: nothing more.
    meter.wrote('resp:a', 8_000);
    // The same record again, larger (a background response ended): only what it grew by; smaller: nothing.
    meter.wrote('resp:a', 12_000);
    meter.wrote('resp:a', 2_000);
    // A second record (its events): charged whole; a tiny one at the floor.
    meter.wrote('respevents:a', 5_000);
    meter.wrote('conv:c', 10);
    expect(holds(budget, MB - 12_000 - 5_000 - STORAGE_FLOOR_BYTES, MB)).toBe(true);
    expect(holds(budget, 1, MB)).toBe(false);
  });

  it("refuses a reservation the budget cannot cover and takes nothing, but charges writes past the budget, which the next reservation then waits out", () => {
    const budget = new StorageBudget();
    const perDay = 100_000;
    const meter = meterOn(budget, perDay);
    expect(meter.reserve(90_000)).toBeNull();
    // The generation ran: its record is charged whole, the bucket 40,000 below zero.
    meter.wrote('resp:a', 140_000);
    const next = meterOn(budget, perDay);
    // 41,024 bytes short, at 100,000 a day: ~35,444 s.
    expect(next.reserve(STORAGE_FLOOR_BYTES)).toBe(Math.ceil(((40_000 + STORAGE_FLOOR_BYTES) * 86_400) / perDay));
    // Refused, it took nothing: a day later the bucket is full again (it holds no more than a day's worth).
    expect(budget.take('s', 'k', perDay, perDay, 86_400_000 + 40_000 * 864)).toBeNull();
  });

  it('settles at what it wrote: what it reserved and did not write is given back (a turn not appended, a record refused, a write that failed)', () => {
    const budget = new StorageBudget();
    const meter = meterOn(budget, MB);
    expect(meter.reserve(300_000)).toBeNull();
    meter.wrote('resp:a', 100_000);
    meter.settle();
    expect(holds(budget, MB - 100_000, MB)).toBe(true);
    expect(holds(budget, 1, MB)).toBe(false);
  });

  it('gives all of a reservation back where nothing was written (a stream whose client left), and only once however often settled', () => {
    const budget = new StorageBudget();
    // Half the day spent before: a second settle that gave back again would show as more than that half.
    expect(holds(budget, MB / 2, MB)).toBe(true);
    const meter = meterOn(budget, MB);
    expect(meter.reserve(450_000)).toBeNull();
    meter.settle();
    meter.settle();
    expect(holds(budget, MB / 2 + 1, MB)).toBe(false);
    expect(holds(budget, MB / 2, MB)).toBe(true);
  });

  it('charges a write that comes after its settle (a late write) whole, once: neither free nor charged twice', () => {
    const budget = new StorageBudget();
    const meter = meterOn(budget, MB);
    expect(meter.reserve(200_000)).toBeNull();
    meter.wrote('resp:a', 50_000);
    meter.settle();
    // The record again, larger (its end written late), and another: each charged what it adds, past what was kept.
    meter.wrote('resp:a', 80_000);
    meter.wrote('conv:c', 20_000);
    meter.settle();
    expect(holds(budget, MB - 100_000, MB)).toBe(true);
    expect(holds(budget, 1, MB)).toBe(false);
  });

  it('settles to nothing where it reserved nothing (a request that stores nothing)', () => {
    const budget = new StorageBudget();
    meterOn(budget, MB).settle();
    expect(holds(budget, MB, MB)).toBe(true);
  });

  it("lets in a request of more than a day's worth on a full budget, and takes all of it: the writes it reserved are not charged twice, nor left uncharged", () => {
    const budget = new StorageBudget();
    const meter = meterOn(budget, MB);
    expect(meter.reserve(3 * MB)).toBeNull();
    meter.wrote('resp:a', 3 * MB);
    // Two days below zero: the next request waits them out, and a little more.
    expect(meterOn(budget, MB).reserve(STORAGE_FLOOR_BYTES)).toBe(Math.ceil(((2 * MB + STORAGE_FLOOR_BYTES) * 86_400) / MB));
  });
});

describe('HeldMeters', () => {
  /** A meter on key 'k' of `budget` (1 MiB a day, clock stopped), alive at `at`, that reserved `bytes`. */
  function reserved(budget: StorageBudget, bytes: number, at: number): StorageMeter {
    const meter = new StorageMeter({ take: (n) => budget.takeAll('s', 'k', n, MB, 0), charge: (n) => budget.charge('s', 'k', n, MB, 0) }, at);
    expect(meter.reserve(bytes)).toBeNull();
    return meter;
  }

  it("settles a meter whose request went silent past its lease (the runtime cancelled it: its work never ends), and not one that shows life", () => {
    const budget = new StorageBudget();
    const held = new HeldMeters();
    const cancelled = reserved(budget, 300_000, 0);
    const running = reserved(budget, 200_000, 0);
    held.hold('s/k', cancelled);
    held.hold('s/k', running);
    // The running one's timer says so; the cancelled one's runs no more.
    running.alive(2_500);
    // Within the lease: both held.
    held.settleLapsed('s/k', 3_000, 3_000);
    expect(holds(budget, MB - 500_000 + 1, MB)).toBe(false);
    // Past it: the silent one's 300,000 come back; the live one's 200,000 stay taken.
    held.settleLapsed('s/k', 3_000, 3_001);
    expect(holds(budget, MB - 200_000 + 1, MB)).toBe(false);
    expect(holds(budget, MB - 200_000, MB)).toBe(true);
  });

  it('gives nothing back twice: a meter settled by its own work, then released, is not settled again once silent', () => {
    const budget = new StorageBudget();
    const held = new HeldMeters();
    const meter = reserved(budget, 300_000, 0);
    held.hold('s/k', meter);
    meter.wrote('chatcmpl:a', 100_000);
    meter.settle();
    held.release('s/k', meter);
    held.settleLapsed('s/k', 3_000, 10_000);
    expect(holds(budget, MB - 100_000 + 1, MB)).toBe(false);
    expect(holds(budget, MB - 100_000, MB)).toBe(true);
  });

  it("settles only the key's own meters", () => {
    const budget = new StorageBudget();
    const held = new HeldMeters();
    const meter = reserved(budget, 300_000, 0);
    held.hold('s/k', meter);
    held.settleLapsed('s/other', 3_000, 10_000);
    expect(holds(budget, MB - 300_000 + 1, MB)).toBe(false);
  });
});
