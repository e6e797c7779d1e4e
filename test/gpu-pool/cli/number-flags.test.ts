import { describe, expect, it } from 'vitest';
import { decimalNumber, parseNumberFlag } from '../../../gpu-pool/cli/number-flags';

describe('numeric flags', () => {
  it('take numbers written in decimal only (Number() took "" for 0, 0x10 for 16, 1e3 for 1000)', () => {
    for (const [raw, value] of [['8', 8], ['-1', -1], ['0.25', 0.25], [' 3 ', 3], ['.5', 0.5], ['2.', 2]] as const) expect(decimalNumber(raw), raw).toBe(value);
    for (const raw of ['', ' ', '0x10', '1e3', 'Infinity', 'NaN', '1,5', '--2']) expect(decimalNumber(raw), raw).toBeNaN();
    expect(() => parseNumberFlag('--temperature', '0x10', { min: 0, max: 2 })).toThrow(/--temperature must be a number >= 0 and <= 2, not "0x10"/);
    expect(parseNumberFlag('--temperature', '0.7', { min: 0, max: 2 })).toBe(0.7);
  });
});
