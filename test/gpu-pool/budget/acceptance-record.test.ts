import { describe, expect, it } from 'vitest';
import { AcceptanceRecord } from '../../../gpu-pool/budget/acceptance-record';

describe('AcceptanceRecord', () => {
  it('trusts the drafters until a tree is verified, then corrects their estimates by what was accepted', () => {
    const a = new AcceptanceRecord();
    expect(a.probScale('sssd')).toBe(1);
    // Trees whose estimates sum to 4 accept 2: the estimates are twice too high.
    for (let i = 0; i < 3000; i++) a.recordTree('sssd', -1, 4, 2);
    expect(a.probScale('sssd')).toBeCloseTo(0.5, 2);
  });

  it('keeps greedy and sampled rows apart, so one kind cannot starve or over-feed the other', () => {
    const a = new AcceptanceRecord();
    for (let i = 0; i < 3000; i++) {
      a.recordTree('sssd', -1, 4, 6);
      a.recordTree('sssd:sampled', -1, 4, 1);
    }
    expect(a.probScale('sssd')).toBeCloseTo(1.5, 2);
    expect(a.probScale('sssd:sampled')).toBeCloseTo(0.25, 2);
    expect(a.probScale('pld')).toBe(1);
  });

  it('bounds the correction, so a run of empty or perfect drafts cannot zero or blow up the budget', () => {
    const a = new AcceptanceRecord();
    for (let i = 0; i < 3000; i++) a.recordTree('low', -1, 10, 0);
    for (let i = 0; i < 3000; i++) a.recordTree('high', -1, 0.1, 8);
    expect(a.probScale('low')).toBe(0.05);
    expect(a.probScale('high')).toBe(2);
  });

  it("expects of a row its own record, else its kind's mean, else one token", () => {
    const a = new AcceptanceRecord();
    expect(a.expected('sssd', -1)).toBe(1);
    a.recordTree('sssd', -1, 4, 3);
    expect(a.expected('sssd', -1)).toBe(3);
    expect(a.expected('sssd', 0.5)).toBe(0.5);
  });

  it("starts a row's own record from its kind's mean, so one unlucky first draft does not stop it drafting", () => {
    const a = new AcceptanceRecord();
    for (let i = 0; i < 500; i++) a.recordTree('sssd', -1, 6, 5);
    const row = a.recordTree('sssd', -1, 6, 0);
    expect(row).toBeGreaterThan(3);
    // Then it follows the row's own steps: a few more empty drafts and it expects little.
    let kept = row;
    for (let i = 0; i < 6; i++) kept = a.recordTree('sssd', kept, 6, 0);
    expect(kept).toBeLessThan(0.5);
  });

  it('keeps one depth calibration per chain key', () => {
    const a = new AcceptanceRecord();
    expect(a.chainCalibration('chain')).toBe(a.chainCalibration('chain'));
    expect(a.chainCalibration('chain')).not.toBe(a.chainCalibration('chain:sampled'));
  });
});
