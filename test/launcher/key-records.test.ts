import { describe, expect, it } from 'vitest';
import { keyEntry, parseHashPrefix } from '../../launcher/key-records';
import { keyTable } from '../../launcher/key-record-commands';

const hash = 'ab'.repeat(32);

describe('key records as `sssd key list` reads them', () => {
  it("reads a record as the edge does: its defaults, a revoked one, one the edge refuses, and a name no key's hash can match", () => {
    expect(keyEntry({ name: `key:${hash}` }, '{"disabled":true,"concurrency":2}')).toMatchObject({ state: 'disabled', tenant: hash.slice(0, 12), scope: hash.slice(0, 24), rpm: null, concurrency: 2, metadata: null, created: null });
    // "disabled": "true" is not a revocation the edge reads: it refuses the key, for that reason.
    expect(keyEntry({ name: `key:${hash}`, metadata: { tenant: 'acme' } }, '{"disabled":"true"}')).toMatchObject({ state: 'refused', refusedWhy: expect.stringMatching(/^disabled: /) as unknown, tenant: 'acme' });
    // The edge looks keys up by their hash in lower case: an upper-case name is never found.
    expect(keyEntry({ name: `key:${hash.toUpperCase()}` }, '{}')).toMatchObject({ state: 'refused', refusedWhy: expect.stringContaining('lower-case hex') as unknown });
    expect(keyEntry({ name: 'key:' }, '{}').state).toBe('refused');
  });

  it('takes a hash prefix of 6 to 64 hex digits, `key:` before it allowed, and nothing else (not the key itself)', () => {
    expect(parseHashPrefix(` key:${hash.slice(0, 6).toUpperCase()} `, 'key revoke')).toBe(hash.slice(0, 6));
    expect(parseHashPrefix(hash, 'key revoke')).toBe(hash);
    for (const bad of ['abcde', `${hash}0`, 'sk-0123456789', '']) expect(() => parseHashPrefix(bad, 'key revoke')).toThrow(/^key revoke: name the key by its hash/);
  });

  it('quotes a tenant with spaces or control characters in the table, whose columns stay aligned', () => {
    const rows = keyTable([keyEntry({ name: `key:${hash}` }, '{"tenant":"o\'brien & co\\n"}'), keyEntry({ name: `key:${'cd'.repeat(32)}` }, '{"tenant":"b","rpm":5}')]).split('\n');
    expect(rows[1]).toContain(`${hash.slice(0, 12)}  "o'brien & co\\n"  ${hash.slice(0, 24)}`);
    expect(rows.map((row) => row.indexOf('SCOPE') >= 0 ? row.indexOf('SCOPE') : row.search(/[0-9a-f]{24}/))).toEqual([rows[0].indexOf('SCOPE'), rows[0].indexOf('SCOPE'), rows[0].indexOf('SCOPE')]);
  });
});
