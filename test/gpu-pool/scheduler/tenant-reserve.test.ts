import { describe, expect, it } from 'vitest';
import { defaultTenantReserve, TenantReserve } from '../../../gpu-pool/scheduler/tenant-reserve';

describe('the rows held back for tenants with none running', () => {
  it('are kept from a tenant with rows running while another tenant has a generation here', () => {
    const reserve = new TenantReserve(2, 1000);
    for (let i = 0; i < 5; i++) reserve.joined('hog');
    reserve.joined('b');
    // 2 rows free, the reserve's: hog (rows running) may not take one; b (none running) may.
    expect(reserve.mayTake('hog', 3, 2, 0)).toBe(false);
    expect(reserve.mayTake('hog', 3, 3, 0)).toBe(true);
    expect(reserve.mayTake('b', 0, 1, 0)).toBe(true);
    expect(reserve.holdsBackFrom('hog', 3, 0)).toBe(true);
    expect(reserve.holdsBackFrom('b', 0, 0)).toBe(false);
    // A tenant with a row running is held back from the reserve as any other: it is for a tenant's first row.
    expect(reserve.mayTake('b', 1, 2, 0)).toBe(false);
  });

  it('are not held for a tenant alone: one tenant (or callers naming none) fills every row', () => {
    const reserve = new TenantReserve(2, 1000);
    for (let i = 0; i < 5; i++) reserve.joined('');
    expect(reserve.sharedWith('', 0)).toBe(false);
    expect(reserve.mayTake('', 4, 1, 0)).toBe(true);
    expect(reserve.holdsBackFrom('', 4, 0)).toBe(false);
  });

  it('stay held for the window after the other tenant\'s last generation left, then go back', () => {
    const reserve = new TenantReserve(1, 1000);
    reserve.joined('b');
    reserve.left('b', 100);
    reserve.joined('hog');
    expect(reserve.mayTake('hog', 3, 1, 1099)).toBe(false);
    expect(reserve.mayTake('hog', 3, 1, 1100)).toBe(true);
  });

  it('count a tenant present until its last generation leaves', () => {
    const reserve = new TenantReserve(1, 1000);
    reserve.joined('b');
    reserve.joined('b');
    reserve.joined('hog');
    reserve.left('b', 0);
    // One of b's still here, long after: shared.
    expect(reserve.sharedWith('hog', 1_000_000)).toBe(true);
    reserve.left('b', 10);
    expect(reserve.sharedWith('hog', 500)).toBe(true);
    expect(reserve.sharedWith('hog', 1010)).toBe(false);
  });

  it("find the last other tenant to leave even where the admitted tenant itself left since", () => {
    const reserve = new TenantReserve(1, 1000);
    reserve.joined('b');
    reserve.left('b', 0);
    reserve.joined('hog');
    reserve.left('hog', 500);
    reserve.joined('hog');
    reserve.left('hog', 600);
    reserve.joined('hog');
    // hog left last (twice), b before it: b's departure at 0 still holds the reserve until 1000.
    expect(reserve.sharedWith('hog', 900)).toBe(true);
    expect(reserve.sharedWith('hog', 1000)).toBe(false);
    // For b, hog is the other tenant, and present.
    expect(reserve.sharedWith('b', 5000)).toBe(true);
  });

  it('are off at 0', () => {
    const reserve = new TenantReserve(0, 1000);
    reserve.joined('hog');
    reserve.joined('b');
    expect(reserve.mayTake('hog', 3, 1, 0)).toBe(true);
    expect(reserve.holdsBackFrom('hog', 3, 0)).toBe(false);
  });

  it('are held no more once closed (a draining pool: no new tenant can come for them)', () => {
    const reserve = new TenantReserve(1, 1000);
    reserve.joined('hog');
    reserve.joined('b');
    expect(reserve.mayTake('hog', 3, 1, 0)).toBe(false);
    reserve.close();
    expect(reserve.holdsBackFrom('hog', 3, 0)).toBe(false);
    expect(reserve.mayTake('hog', 3, 1, 0)).toBe(true);
  });

  it('default to a sixteenth of the rows, at least one, never all of them', () => {
    expect(defaultTenantReserve(128)).toBe(8);
    expect(defaultTenantReserve(4)).toBe(1);
    expect(defaultTenantReserve(2)).toBe(1);
    expect(defaultTenantReserve(1)).toBe(0);
  });
});
