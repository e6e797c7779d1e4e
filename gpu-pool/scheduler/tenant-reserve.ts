/**
 * Batch rows held back for tenants with nothing running (--tenant-reserve).
 * FairShares only orders the queue: a tenant that held every row made another
 * tenant's one request wait for one of its generations to end (review h203:
 * 13-17 s on stories260K, a whole long generation on a real model). So while
 * the pool is shared, the last `rows` free rows go only to a generation whose
 * tenant has no row running; that tenant's next step is its first.
 *
 * Shared, for a tenant: another tenant has a generation queued or running,
 * or had one within `windowMs`. The window spans a client's pause between
 * requests (a chat's turns), so a second tenant that comes and goes still
 * finds a row free when it comes back; a pool that serves one tenant (or
 * callers that name none: one tenant) fills every row, and does again a
 * window after the last other tenant left. O(1) per admission: a count per
 * tenant present, and the two tenants that left last. A tenant that comes
 * while one tenant alone holds every row finds no row kept: preemption.ts
 * (--preempt) frees one for it.
 */

/** How long after another tenant's last generation ended the reserve is still held. */
export const TENANT_RESERVE_WINDOW_MS = 60_000;

/**
 * --tenant-reserve's default: a sixteenth of the rows, at least one, and
 * never every row (a pool of one row has none to hold back).
 */
export function defaultTenantReserve(maxActive: number): number {
  return Math.max(0, Math.min(maxActive - 1, Math.max(1, Math.floor(maxActive / 16))));
}

/** A tenant whose last generation left, and when (ms, the caller's clock). */
interface Departure {
  tenant: string;
  at: number;
}

export class TenantReserve {
  /** Generations queued or running, by tenant; a tenant with none has no entry (bounded by the pool's places). */
  private readonly present = new Map<string, number>();
  /** The tenant that left last, and before it the last other one (never the same tenant). */
  private lastLeft: Departure | null = null;
  private otherLeft: Departure | null = null;
  private closed = false;

  /** `rows`: rows held back (0: off). */
  constructor(
    readonly rows: number,
    private readonly windowMs = TENANT_RESERVE_WINDOW_MS,
  ) {}

  /** A generation of `tenant` joined the queue. */
  joined(tenant: string): void {
    this.present.set(tenant, (this.present.get(tenant) ?? 0) + 1);
  }

  /** A generation of `tenant` left the pool (ended, queued or running) at `now`. */
  left(tenant: string, now: number): void {
    const count = this.present.get(tenant) ?? 0;
    if (count > 1) {
      this.present.set(tenant, count - 1);
      return;
    }
    this.present.delete(tenant);
    if (this.lastLeft !== null && this.lastLeft.tenant !== tenant) this.otherLeft = this.lastLeft;
    this.lastLeft = { tenant, at: now };
  }

  /** Whether another tenant than `tenant` has a generation here, or had one within the window. */
  sharedWith(tenant: string, now: number): boolean {
    const present = this.present.size;
    if (present > 1 || (present === 1 && !this.present.has(tenant))) return true;
    const other = this.lastLeft?.tenant !== tenant ? this.lastLeft : this.otherLeft;
    return other !== null && now - other.at < this.windowMs;
  }

  /**
   * Stops holding rows back for good: a draining or closed pool takes no new
   * generation, so no tenant can come for them, and rows kept empty only
   * slowed the drain (review h208).
   */
  close(): void {
    this.closed = true;
  }

  /** Whether the reserve's rows are kept from `tenant`, which has `running` rows: while it has one and another tenant shares the pool. */
  holdsBackFrom(tenant: string, running: number, now: number): boolean {
    return this.rows > 0 && !this.closed && running > 0 && this.sharedWith(tenant, now);
  }

  /**
   * Whether a generation of `tenant`, which has `running` rows, may take a
   * row when `free` rows are free: yes, but for the reserve's last rows
   * while another tenant shares the pool.
   */
  mayTake(tenant: string, running: number, free: number, now: number): boolean {
    return free > this.rows || !this.holdsBackFrom(tenant, running, now);
  }
}
