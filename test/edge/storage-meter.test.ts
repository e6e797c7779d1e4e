import { describe, expect, it } from 'vitest';
import { STORAGE_FLOOR_BYTES, StorageBudget } from '../../edge/storage-budget';
import { StorageMeter } from '../../edge/storage-meter';

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

  it('gives back what it reserved and did not write (refused after its reservation, or failed before its answer)', () => {
    const budget = new StorageBudget();
    const meter = meterOn(budget, MB);
    expect(meter.reserve(300_000)).toBeNull();
    meter.wrote('resp:a', 100_000);
    meter.unspent();
    expect(holds(budget, MB - 100_000, MB)).toBe(true);
    expect(holds(budget, 1, MB)).toBe(false);
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
