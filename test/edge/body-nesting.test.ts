import { describe, expect, it } from 'vitest';
import { MAX_BODY_NESTING, refuseDeepNesting } from '../../edge/body-nesting';
import { jsonSchemaRegex, MAX_SCHEMA_NESTING } from '../../shared/structured/json-schema-regex';

/** A schema `levels` deep, each level the kind of sub-schema given (properties and anyOf are two JSON levels a level). */
function deepSchema(kind: 'properties' | 'anyOf', levels: number): object {
  let schema: object = { type: 'string' };
  for (let i = 0; i < levels; i++) schema = kind === 'properties' ? { type: 'object', properties: { a: schema }, required: ['a'] } : { anyOf: [schema] };
  return schema;
}

/** The deepest schema the schema builder accepts of that kind (its MAX_SCHEMA_NESTING), found by the builder itself. */
function deepestAccepted(kind: 'properties' | 'anyOf'): object {
  for (let levels = MAX_SCHEMA_NESTING; levels > 0; levels--) {
    try {
      jsonSchemaRegex(deepSchema(kind, levels));
      return deepSchema(kind, levels);
    } catch {
      // Past the builder's bound: one level less.
    }
  }
  throw new Error('no schema accepted');
}

describe('refuseDeepNesting', () => {
  it('passes the deepest schemas the schema builder accepts, in a tool and in response_format', () => {
    for (const kind of ['properties', 'anyOf'] as const) {
      const schema = deepestAccepted(kind);
      // Past the builder's bound by one level, refused there (so the one here is its deepest).
      expect(() => jsonSchemaRegex({ anyOf: [schema] })).toThrow(/nests deeper than/);
      const tool = { model: 'm', messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function', function: { name: 'f', parameters: schema } }] };
      const format = { model: 'm', messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_schema', json_schema: { name: 'f', schema } } };
      expect(() => refuseDeepNesting(JSON.stringify(tool))).not.toThrow();
      expect(() => refuseDeepNesting(JSON.stringify(format))).not.toThrow();
    }
  });

  it('refuses a body nested past the bound with a 400, and passes one at it', () => {
    const at = `{"model":"m","prompt":"x","metadata":${'['.repeat(MAX_BODY_NESTING - 1)}${']'.repeat(MAX_BODY_NESTING - 1)}}`;
    expect(() => refuseDeepNesting(at)).not.toThrow();
    const past = `{"model":"m","prompt":"x","metadata":${'['.repeat(MAX_BODY_NESTING)}${']'.repeat(MAX_BODY_NESTING)}}`;
    expect(() => refuseDeepNesting(past)).toThrow(expect.objectContaining({ status: 400, code: 'invalid_value', message: expect.stringMatching(/deeper than 1024 levels/) }));
    // Brackets in a prompt are its text.
    expect(() => refuseDeepNesting(JSON.stringify({ model: 'm', prompt: '['.repeat(100_000) }))).not.toThrow();
  });
});
