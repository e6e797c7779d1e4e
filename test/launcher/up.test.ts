import { describe, expect, it } from 'vitest';
import { CliError } from '../../gpu-pool/cli/cli-error';
import { selfContinuationsWanted } from '../../launcher/up';

describe('SSSD_DATASTORE_SELF', () => {
  it("builds the default datastore with the model's own continuations unless told off", () => {
    expect(selfContinuationsWanted(undefined)).toBe(true);
    expect(selfContinuationsWanted('')).toBe(true);
    expect(selfContinuationsWanted('on')).toBe(true);
    expect(selfContinuationsWanted('off')).toBe(false);
  });

  it('refuses anything else with a one-line error naming the variable', () => {
    expect(() => selfContinuationsWanted('no')).toThrow(CliError);
    expect(() => selfContinuationsWanted('no')).toThrow(/SSSD_DATASTORE_SELF must be on or off, got "no"/);
  });
});
