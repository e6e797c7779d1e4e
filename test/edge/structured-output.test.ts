/**
 * vLLM's choice constraint at the edge: structured_outputs.choice, or the
 * older guided_choice, read as vLLM reads them; bad lists refused naming the
 * field.
 */
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { structuredOutput } from '../../edge/structured-output';
import { chatRequestSchema, completionRequestSchema, parseOpenAiBody } from '../../edge/request-schema';

function choicesOf(body: Record<string, unknown>, endpoint: 'completion' | 'chat' = 'completion'): string[] | null {
  if (endpoint === 'chat') return structuredOutput(parseOpenAiBody(chatRequestSchema, { model: 'm', messages: [{ role: 'user', content: 'hi' }], ...body }, 'chat')).choices;
  return structuredOutput(parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'hi', ...body })).choices;
}

function refusal(body: Record<string, unknown>): { param: string | null; code: string | null; message: string } {
  try {
    choicesOf(body);
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError);
    return (err as ApiError).toBody().error;
  }
  throw new Error('not refused');
}

describe('choice constraint (vLLM structured_outputs.choice, guided_choice)', () => {
  it('reads structured_outputs.choice, or guided_choice where structured_outputs is not sent, on either endpoint', () => {
    expect(choicesOf({})).toBeNull();
    expect(choicesOf({ structured_outputs: null, guided_choice: null })).toBeNull();
    expect(choicesOf({ structured_outputs: { choice: ['yes', 'no'] } })).toEqual(['yes', 'no']);
    expect(choicesOf({ guided_choice: ['yes', 'no'] }, 'chat')).toEqual(['yes', 'no']);
    // vLLM takes structured_outputs where both are sent.
    expect(choicesOf({ structured_outputs: { choice: ['a'] }, guided_choice: ['b'] })).toEqual(['a']);
    // Its options that change nothing for a choice, and duplicates, are taken.
    expect(choicesOf({ structured_outputs: { choice: ['é', 'é'], disable_fallback: true, whitespace_pattern: null } })).toEqual(['é', 'é']);
  });

  it('refuses an empty list, an empty or half-character choice, no constraint, and ignore_eos, naming the field', () => {
    expect(refusal({ structured_outputs: { choice: [] } })).toMatchObject({ param: 'structured_outputs.choice', code: 'invalid_value', message: expect.stringContaining('at least one choice') });
    expect(refusal({ guided_choice: ['yes', ''] })).toMatchObject({ param: 'guided_choice', message: expect.stringContaining('[1] is empty') });
    expect(refusal({ guided_choice: ['\ud83d'] })).toMatchObject({ param: 'guided_choice', message: expect.stringContaining('lone surrogate') });
    expect(refusal({ guided_choice: 'yes' })).toMatchObject({ param: 'guided_choice' });
    expect(refusal({ guided_choice: ['x'.repeat(70_000)] })).toMatchObject({ param: 'guided_choice', message: expect.stringContaining('65536 UTF-8 bytes') });
    expect(refusal({ structured_outputs: {} })).toMatchObject({ param: 'structured_outputs', code: 'invalid_value' });
    expect(refusal({ guided_choice: ['yes'], ignore_eos: true })).toMatchObject({ param: 'ignore_eos', code: 'invalid_value' });
    expect(refusal({ structured_outputs: { choice: ['yes'], regex: 'y.*' } })).toMatchObject({ param: 'structured_outputs.regex', code: 'unsupported_parameter' });
  });
});
