import { describe, expect, it } from 'vitest';
import { decimalNumber, parseNumberFlag } from '../../../gpu-pool/cli/number-flags';

describe('numeric flags', () => {
  it('take numbers written in decimal only (Number() took "" for 0, 0x10 for 16, 1e3 for 1000)', () => {
    for (const [raw, value] of [['8', 8], ['-1', -1], ['0.25', 0.25], [' 3 ', 3], ['.5', 0.5], ['2.', 2]] as const) expect(decimalNumber(raw), raw).toBe(value);
    for (const raw of ['', ' ', '0x10', '1e3', 'Infinity', 'NaN', '1,5', '--2']) expect(decimalNumber(raw), raw).toBeNaN();
    expect(() => parseNumberFlag('--temperature', '0x10', { min: 0, max: 2 })).toThrow(/--temperature must be a number >= 0 and <= 2, not "0x10"/);
    expect(parseNumberFlag('--temperature', '0.7', { min: 0, max: 2 })).toBe(0.7);
  });

  it('take an integer by its digits, not once rounded, and say why a range is what it is', () => {
    for (const [raw, value] of [['5', 5], ['5.0', 5], ['5.', 5], ['9007199254740991', 2 ** 53 - 1]] as const) expect(parseNumberFlag('--n', raw, { integer: true }), raw).toBe(value);
    // 9007199254740990.6 reads as the integer 9007199254740991.
    for (const raw of ['5.5', '9007199254740990.6', '0.01']) expect(() => parseNumberFlag('--n', raw, { integer: true }), raw).toThrow(`--n must be an integer, not "${raw}"`);
    expect(() => parseNumberFlag('--n', '11', { integer: true, min: 0, max: 10, why: 'ten at most' })).toThrow('--n must be an integer >= 0 and <= 10 (ten at most), not "11"');
  });
});
