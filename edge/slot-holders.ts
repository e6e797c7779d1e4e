/**
 * A concurrency 429's words for what holds the key's slots, and when each is
 * likely free (the limiter's leases, rate-limiter.ts), so that a client can
 * choose to wait, poll its background response, or cancel it. Counts and
 * times only: a key may serve many users, and a 429 names no one's request
 * or response.
 */
import type { SlotHolder } from './rate-limiter';

/** "1 background response running (ends within 23 s)", the kinds joined with "and"; `leaseS`: SSSD_CONCURRENCY_LEASE_SECONDS. */
export function slotsHeldBy(holders: readonly SlotHolder[], leaseS: number): string {
  const said = holders.map((holder) => heldBy(holder, leaseS));
  if (said.length === 0) return 'other requests of this key';
  return said.length === 1 ? said[0] : `${said.slice(0, -1).join(', ')} and ${said[said.length - 1]}`;
}

/**
 * When a body's 408 comes, in words that never say it later than it comes: whole seconds rounded down (Retry-After,
 * freeInS, is rounded up and a heartbeat later, so that a client that waits as told finds the slot free).
 */
function timeoutIn(endsInMs: number): string {
  const s = Math.floor(endsInMs / 1000);
  return s >= 1 ? `in ${s} s` : 'within a second';
}

function heldBy({ kind, count, freeInS, endsInMs }: SlotHolder, leaseS: number): string {
  const one = count === 1;
  switch (kind) {
    case 'answering':
      // A client that cancels and retries at once meets its own request here before its lease lapses (review h163).
      return `${count} ${one ? 'request' : 'requests'} in progress (a request whose client left holds its slot up to ${leaseS} s)`;
    case 'body':
      return `${count} request ${one ? 'body' : 'bodies'} still uploading (${one ? 'a' : 'the first'} 408 ${timeoutIn(endsInMs ?? freeInS * 1000)} if ${one ? 'it stalls' : 'they stall'})`;
    case 'background':
      return `${count} background ${one ? 'response' : 'responses'} running (${one ? '' : 'the first '}ends within ${freeInS} s)`;
    case 'left':
      return `${count} ${one ? 'request whose client' : 'requests whose clients'} left (${one ? 'its' : 'the first'} slot back within ${freeInS} s)`;
  }
}
