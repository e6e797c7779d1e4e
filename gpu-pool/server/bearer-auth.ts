/**
 * Bearer-token check for the /v1 routes. The comparison is constant-time over
 * SHA-256 digests (equal lengths whatever the caller sends), so response time
 * says nothing about how much of the token matched.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export class BearerAuth {
  private readonly expected: Buffer | null;

  /** `token` null = authentication disabled (--insecure-no-auth). */
  constructor(token: string | null) {
    this.expected = token === null ? null : digest(token);
  }

  get enabled(): boolean {
    return this.expected !== null;
  }

  /** True when the Authorization header carries the pool's token (or auth is off). */
  check(authorization: string | undefined): boolean {
    if (this.expected === null) return true;
    const match = /^Bearer\s+(.+)$/i.exec(authorization ?? '');
    const given = digest(match ? match[1].trim() : '');
    return timingSafeEqual(given, this.expected) && match !== null;
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}
