/**
 * Preemption by recompute (--preempt): a tenant whose generations held every
 * row made another tenant's first request wait for one of them to end, the
 * case --tenant-reserve leaves open (a tenant alone for over its window fills
 * every row; review h203: 13-17 s on stories260K, a whole long generation on
 * a real model). So when the queued generation next in turn is a named
 * tenant's with no row running and no row is free for it, one generation of
 * the tenant holding the most rows (two at least) gives its row up at the
 * step boundary: its cache is freed (offered to the prefix cache, as a
 * finished one's), and it waits at the front of its tenant's turn to resume
 * by recompute, its prompt and output fed again as a prompt
 * (Generation.requeueByRecompute). Its stream only pauses.
 *
 * Two rows at least, not a share of maxActive over the tenants present: the
 * waiting tenant has none, so a tenant with two or more holds more than it
 * will after the swap, and FairShares gives the next free row by the same
 * order (fewest running first); a swap never leaves the tenant it took
 * from with fewer rows than the one it gave to. A share of the rows instead
 * would let a tenant hold 64 of 128 rows over a second tenant with none.
 *
 * Thrash: a generation is preempted once at most (MAX_PREEMPTIONS). Each
 * preemption starts a tenant's first row, so there are at most as many as
 * first rows of tenants that come while rows are full, and the work lost to
 * each is one recompute of the cheapest row (fewest positions computed, the
 * latest admitted among equals), which the prefix cache most often gives
 * back. A minimum run time between preemptions was the other choice; once
 * is simpler to reason about and bounds every stream's pauses to one.
 *
 * Never while the waiting tenant does not share the pool in the reserve's
 * sense (tenant-reserve.ts), never for or from callers that name no tenant
 * (one shared tenant, which FairShares already serves in order), never while
 * the pool drains or closes (everything admitted runs to its end anyway).
 */

/** Times one generation may be preempted. */
export const MAX_PREEMPTIONS = 1;

/** Least a tenant holds to be preempted from. */
export const PREEMPT_FROM_ROWS = 2;

/** What the choice reads of a running generation. */
export interface PreemptionCandidate {
  readonly tenant: string;
  readonly preemptions: number;
  /** Positions computed (prompt + output): what a recompute feeds again, less what the prefix cache gives back. */
  readonly sequenceLength: number;
}

/**
 * The running generation (index in `active`, oldest admitted first) to take
 * a row from for a generation of `waiting`, or -1: of the tenant holding the
 * most rows (PREEMPT_FROM_ROWS at least) that has one not yet preempted
 * MAX_PREEMPTIONS times, the one with the fewest positions computed, the
 * latest admitted among equals. One pass over the rows, allocation-free:
 * only when a preemption is due, never per step.
 */
export function preemptionVictim(
  waiting: string,
  active: readonly PreemptionCandidate[],
  runningOf: (tenant: string) => number,
): number {
  let best = -1;
  let bestRows = 0;
  let bestLength = Infinity;
  // Latest admitted first, so a tie on both keeps the latest.
  for (let i = active.length - 1; i >= 0; i--) {
    const gen = active[i];
    if (gen.tenant === '' || gen.tenant === waiting || gen.preemptions >= MAX_PREEMPTIONS) continue;
    const rows = runningOf(gen.tenant);
    if (rows < PREEMPT_FROM_ROWS) continue;
    if (rows > bestRows || (rows === bestRows && gen.sequenceLength < bestLength)) {
      best = i;
      bestRows = rows;
      bestLength = gen.sequenceLength;
    }
  }
  return best;
}
