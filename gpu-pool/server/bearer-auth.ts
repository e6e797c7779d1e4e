/**
 * Bearer-token check for the /v1 routes. The comparison is constant-time over
 * SHA-256 digests (equal lengths whatever the caller sends), so response time
 * says nothing about how much of the token matched. Besides the pool's token
 * it may accept the tokens it replaces while edges move to it (rotation):
 * every one is compared, whichever matches.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export class BearerAuth {
  private readonly accepted: Buffer[];

  /** `token` null = authentication disabled (--insecure-no-auth); `previous`: tokens still accepted during a rotation. */
  constructor(token: string | null, previous: readonly string[] = []) {
    this.accepted = token === null ? [] : [token, ...previous].map(digest);
  }

  get enabled(): boolean {
    return this.accepted.length > 0;
  }

  /** True when the Authorization header carries one of the pool's tokens (or auth is off). */
  check(authorization: string | undefined): boolean {
    if (this.accepted.length === 0) return true;
    const match = /^Bearer\s+(.+)$/i.exec(authorization ?? '');
    const given = digest(match ? match[1].trim() : '');
    let ok = false;
    for (const expected of this.accepted) ok = timingSafeEqual(given, expected) || ok;
    return ok && match !== null;
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}
