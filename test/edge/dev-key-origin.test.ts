import { describe, expect, it } from 'vitest';
import { checkDevKeyOrigin } from '../../edge/dev-key-origin';
import { refusalOf } from '../support/refusal';

const refusal = (origin: string): { status: number; code: string | null; message: string } => refusalOf(() => checkDevKeyOrigin(origin));

describe("the development key's origins", () => {
  it('serves pages on loopback addresses and clients that send no Origin', () => {
    for (const origin of [undefined, 'http://localhost:5173', 'http://app.localhost', 'http://127.0.0.1:3000', 'http://127.9.9.9', 'http://[::1]:8080', 'http://0.0.0.0:5173', 'http://[::ffff:127.0.0.1]:5173', 'http://[::ffff:7f01:203]']) expect(() => checkDevKeyOrigin(origin)).not.toThrow();
  });

  it('refuses other pages with a 403 that says what to open instead, and how to make a key of their own for this stack', () => {
    // A page opened from a file sends Origin: null: the message names that, since the page is on this machine.
    expect(refusal('null')).toMatchObject({ status: 403, code: 'origin_not_allowed', message: expect.stringContaining('Origin: null (opened from a file') });
    // A dev server reached by the machine's network address (as Vite's --host prints it).
    const network = refusal('http://192.168.1.20:5173');
    expect(network.message).toContain("not this machine's network address");
    // An IPv4-mapped address is this machine only where the address inside is loopback.
    expect(refusal('http://[::ffff:192.168.1.20]:5173')).toMatchObject({ status: 403, code: 'origin_not_allowed' });
    for (const r of [refusal('null'), network, refusal('https://evil.example')]) {
      // Every address it serves is named, not some of them (review h141).
      expect(r.message).toContain('whose address is localhost, *.localhost, 127.x.x.x, [::1], [::ffff:127.x.x.x] or 0.0.0.0:');
      expect(r.message).toContain('http://localhost:PORT');
      expect(r.message).toContain('node bin/sssd.mjs key create --local');
    }
  });
});
