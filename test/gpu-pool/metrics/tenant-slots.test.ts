import { describe, expect, it } from 'vitest';
import { NONE_SLOT, OTHER_SLOT, TenantSlots } from '../../../gpu-pool/metrics/tenant-slots';

const hash = (c: string): string => c.repeat(64);

describe('tenant slots (the per-tenant series\' label values)', () => {
  it('gives the first tenants seen a slot each, up to the cap; the next fold into "other", callers naming none are "none"', () => {
    const slots = new TenantSlots(2);
    const a = slots.slotOf(hash('a'), 0);
    const b = slots.slotOf(hash('b'), 0);
    expect(new Set([a, b, NONE_SLOT, OTHER_SLOT]).size).toBe(4);
    expect(slots.label(a)).toBe('aaaaaaaaaaaa');
    expect(slots.label(b)).toBe('bbbbbbbbbbbb');
    expect(slots.slotOf(hash('c'), 0)).toBe(OTHER_SLOT);
    expect(slots.label(OTHER_SLOT)).toBe('other');
    expect(slots.slotOf('', 0)).toBe(NONE_SLOT);
    expect(slots.label(NONE_SLOT)).toBe('none');
    // A tenant keeps its slot: seen again, the same one.
    expect(slots.slotOf(hash('a'), 5)).toBe(a);
  });

  it('with a cap of 0 gives no tenant a slot', () => {
    const slots = new TenantSlots(0);
    expect(slots.slotOf(hash('a'), 0)).toBe(OTHER_SLOT);
    expect(slots.slotOf('', 0)).toBe(NONE_SLOT);
    expect(slots.size).toBe(2);
  });

  it("gives a full cap's slot to a newcomer only from a tenant idle for the idle time with nothing queued or running, the longest idle first", () => {
    const reassigned: number[] = [];
    const slots = new TenantSlots(2, 1000, (slot) => reassigned.push(slot));
    const a = slots.slotOf(hash('a'), 0);
    const b = slots.slotOf(hash('b'), 100);
    // a has a generation here: never given away, however long it runs.
    slots.joined(a, 0);
    expect(slots.slotOf(hash('c'), 5000)).toBe(b);
    expect(reassigned).toEqual([b]);
    expect(slots.label(b)).toBe('cccccccccccc');
    slots.joined(b, 5000);
    // b, back, is a newcomer now; a and c have generations here: no slot is idle.
    expect(slots.slotOf(hash('b'), 5500)).toBe(OTHER_SLOT);
    // a's generation leaves at 6000; at 6900 it is idle 900 ms (under the idle time), at 7000 it gives its slot.
    slots.left(a, 6000);
    expect(slots.slotOf(hash('d'), 6900)).toBe(OTHER_SLOT);
    expect(slots.slotOf(hash('d'), 7000)).toBe(a);
    expect(slots.label(a)).toBe('dddddddddddd');
    expect(reassigned).toEqual([b, a]);
    // Seen again under its new slot (a refusal, a generation) it is not idle.
    expect(slots.slotOf(hash('d'), 7900)).toBe(a);
    expect(slots.slotOf(hash('e'), 8500)).toBe(OTHER_SLOT);
  });

  it('keeps a label one tenant\'s: another with the same first 12 characters, or one that would read "none" or "other", is "other"', () => {
    const slots = new TenantSlots(4);
    const a = slots.slotOf('tenant-prefix-one', 0);
    expect(slots.label(a)).toBe('tenant-prefi');
    expect(slots.slotOf('tenant-prefix-two', 0)).toBe(OTHER_SLOT);
    expect(slots.slotOf('none', 0)).toBe(OTHER_SLOT);
    expect(slots.slotOf('other', 0)).toBe(OTHER_SLOT);
    expect(slots.slotOf('short', 0)).not.toBe(OTHER_SLOT);
  });

  it('refuses a cap that is not a whole number in range: at most 1024, what a scrape writes cheaply (review h227)', () => {
    expect(() => new TenantSlots(-1)).toThrow(/from 0 to 1024/);
    expect(() => new TenantSlots(1.5)).toThrow(/from 0 to 1024/);
    expect(() => new TenantSlots(1025)).toThrow(/from 0 to 1024, not 1025/);
    expect(new TenantSlots(1024).size).toBe(1026);
  });
});
