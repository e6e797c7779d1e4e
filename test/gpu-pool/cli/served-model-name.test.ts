import { describe, expect, it } from 'vitest';
import { CliError } from '../../../gpu-pool/cli/cli-error';
import { MAX_SERVED_MODEL_NAME, servedModelName } from '../../../gpu-pool/cli/served-model-name';

describe('the served model name', () => {
  it('is the flag, else SSSD_MODEL_NAME (empty there is unset), else none: the checkpoint name', () => {
    expect(servedModelName('org/tiny-stories_260K.v2', { SSSD_MODEL_NAME: 'other' })).toBe('org/tiny-stories_260K.v2');
    expect(servedModelName(undefined, { SSSD_MODEL_NAME: 'ft:stories:acme@2+1' })).toBe('ft:stories:acme@2+1');
    expect(servedModelName(undefined, { SSSD_MODEL_NAME: '' })).toBeNull();
    expect(servedModelName(undefined, {})).toBeNull();
    expect(servedModelName('x'.repeat(MAX_SERVED_MODEL_NAME), {})).toHaveLength(MAX_SERVED_MODEL_NAME);
  });

  it('refuses, naming where it came from, an empty name, a long one, and one with spaces, quotes or a leading mark (exit 2)', () => {
    const refused = (flag: string | undefined, env: Record<string, string> = {}): CliError => {
      try {
        servedModelName(flag, env);
      } catch (err) {
        expect(err).toBeInstanceOf(CliError);
        expect((err as CliError).exitCode).toBe(2);
        return err as CliError;
      }
      throw new Error(`${String(flag)} was taken`);
    };
    expect(refused('').message).toMatch(/^--served-model-name is empty; give the name clients send as "model"/);
    expect(refused('x'.repeat(MAX_SERVED_MODEL_NAME + 1)).message).toBe(`--served-model-name is ${MAX_SERVED_MODEL_NAME + 1} characters long; a model name takes ${MAX_SERVED_MODEL_NAME} at most`);
    for (const bad of ['my model', 'quo"te', '-dash-first', '.hidden', 'tab\there', 'é-accent', 'a\nb']) expect(refused(bad).message, bad).toMatch(/^--served-model-name must start with a letter or digit and hold only letters, digits and/);
    expect(refused(undefined, { SSSD_MODEL_NAME: 'two words' }).message).toMatch(/^SSSD_MODEL_NAME must start with a letter or digit/);
  });
});
