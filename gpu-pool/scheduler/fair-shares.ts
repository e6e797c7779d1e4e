/**
 * Admission's fair share between tenants (the generate request's `tenant`):
 * which queued generation takes the next free batch row. The first queued
 * generation of the tenant with the fewest rows running; among those, the
 * tenant given a row longest ago, a tenant new to the pool counting from
 * when it first queued (it joins the rotation at its back: a tenant served
 * once and back later is not held behind every newcomer since). Within a
 * tenant, and for callers that name none (one shared tenant), the queue's
 * order. A tenant that queued hundreds thus waits for its own, not others'
 * for it.
 */

/** Tenants whose share is kept; past it, those with nothing running are forgotten (one still waiting then goes first among its equals). */
export const MAX_TRACKED_TENANTS = 4096;

interface Share {
  running: number;
  /** The admission count when it was last given a row, or when it first queued (then a half past the count: behind the tenants given one so far). */
  lastAdmitted: number;
}

export class FairShares {
  private readonly tenants = new Map<string, Share>();
  private admissions = 0;

  constructor(private readonly maxTracked = MAX_TRACKED_TENANTS) {}

  /** Tenants whose share is kept now (bounded by maxTracked, past the ones running). */
  get tracked(): number {
    return this.tenants.size;
  }

  /** A generation of `tenant` joined the queue. */
  queued(tenant: string): void {
    if (this.tenants.has(tenant)) return;
    if (this.tenants.size >= this.maxTracked) {
      for (const [name, share] of this.tenants) if (share.running === 0) this.tenants.delete(name);
    }
    // After every tenant given a row so far, before the next: behind them in the rotation.
    this.tenants.set(tenant, { running: 0, lastAdmitted: this.admissions + 0.5 });
  }

  /**
   * Index in `queue` (oldest first) of the generation to admit next. One
   * pass over the queue, a run of one tenant's generations weighed once, at
   * its first: per admission, never per token.
   */
  next(queue: ReadonlyArray<{ readonly tenant: string }>): number {
    let best = 0;
    let fewest = Infinity;
    let longestAgo = Infinity;
    let previous: string | null = null;
    for (let i = 0; i < queue.length; i++) {
      const tenant = queue[i].tenant;
      if (tenant === previous) continue;
      previous = tenant;
      const share = this.tenants.get(tenant);
      // Forgotten while it waited (past maxTracked): first among its equals. As if queued now, it would
      // stay behind every tenant served since, on every call, for ever; there are at most maxQueued such.
      const running = share?.running ?? 0;
      const last = share?.lastAdmitted ?? -1;
      if (running < fewest || (running === fewest && last < longestAgo)) {
        best = i;
        fewest = running;
        longestAgo = last;
      }
    }
    return best;
  }

  /** Rows `tenant` has running. */
  runningOf(tenant: string): number {
    return this.tenants.get(tenant)?.running ?? 0;
  }

  /** A generation of `tenant` was given a row. */
  started(tenant: string): void {
    const share = this.tenants.get(tenant) ?? { running: 0, lastAdmitted: 0 };
    share.running++;
    share.lastAdmitted = ++this.admissions;
    this.tenants.set(tenant, share);
  }

  /** A running generation of `tenant` left its row. */
  ended(tenant: string): void {
    const share = this.tenants.get(tenant);
    if (share && share.running > 0) share.running--;
  }
}

/**
 * The queue's fair share, when the pool is full: the queued generations that
 * give their places (and reservations) to a request of `tenant`, or null
 * when it is refused. A place goes from the tenant with the most queued,
 * its newest first, and only while that tenant keeps at least as many
 * queued as `tenant` will hold: so one tenant's flood fills the queue only
 * until another tenant asks, and a full queue refuses a tenant no sooner
 * than the others. Callers that name no tenant are one tenant here too.
 * Per refused request, one pass over the queue; never per step.
 */
export function queuePlacesFor<G extends { readonly tenant: string; readonly reservedTokens: number }>(
  tenant: string,
  reserved: number,
  queue: readonly G[],
  free: { freePlaces: number; freeTokens: number },
): G[] | null {
  let places = free.freePlaces;
  let tokens = free.freeTokens;
  if (places >= 1 && tokens >= reserved) return [];
  const byTenant = new Map<string, G[]>();
  for (const gen of queue) {
    const own = byTenant.get(gen.tenant);
    if (own) own.push(gen);
    else byTenant.set(gen.tenant, [gen]);
  }
  const mine = byTenant.get(tenant)?.length ?? 0;
  byTenant.delete(tenant);
  const given: G[] = [];
  while (places < 1 || tokens < reserved) {
    let most: G[] | null = null;
    for (const own of byTenant.values()) if (most === null || own.length > most.length) most = own;
    // Past this, the newcomer's tenant would hold more queued than the one giving way.
    if (most === null || most.length < mine + 2) return null;
    const gen = most.pop() as G;
    given.push(gen);
    places++;
    tokens += gen.reservedTokens;
  }
  return given;
}
