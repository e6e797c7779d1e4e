/**
 * Which tenants get their own label value in /metrics' per-tenant series
 * (tenant-metrics.ts), a bounded number: the first `cap` tenants seen get a
 * slot each and keep it while they come back; one seen when every slot is
 * taken gets the slot of a tenant idle for `idleMs` (no generation queued or
 * running, none refused, for that long), the longest idle first, or else is
 * folded into `other`. Callers that name no tenant are `none`.
 *
 * First come rather than the busiest: a slot's counters start at 0 with its
 * tenant and only grow while it holds the slot (Prometheus's counters); a
 * ranking would move a tenant's past tokens between label values each time
 * it changed. A tenant that gives its slot up loses its series (its final
 * values were scraped while it sat idle); back later, it starts again at 0
 * under its label, which rate() and increase() read as a counter reset, as
 * after a restart. Per new tenant one map lookup, and one pass over the
 * slots where all are taken; never per step.
 */

/** --metrics-tenants' default: tenants with their own label value (each ~11 series). */
export const DEFAULT_METRICS_TENANTS = 32;
/**
 * The most --metrics-tenants takes: what a scrape writes stays bounded, as
 * it holds the step loop meanwhile (~1 KB and up to ~10 µs a label: ~1 MB
 * and ~10 ms here; the 4096 of FairShares' bound was 4 MB, review h227).
 */
export const MAX_METRICS_TENANTS = 1024;
/** How long a tenant is idle before a new tenant may take its slot (many scrape intervals: its last values were read). */
export const TENANT_SLOT_IDLE_MS = 15 * 60_000;
/** A label value is a tenant's first 12 characters: the hash prefix the pool's and the edge's request logs print. */
export const TENANT_LABEL_CHARS = 12;

/** Slot of callers that name no tenant (the request's `tenant` absent). */
export const NONE_SLOT = 0;
/** Slot of the tenants past the cap (and of one whose label another tenant holds). */
export const OTHER_SLOT = 1;
export const NONE_LABEL = 'none';
export const OTHER_LABEL = 'other';
/** Slots before the tenants' own. */
const SHARED_SLOTS = 2;

export class TenantSlots {
  /** Slots in all: `none`, `other`, then one per tenant label. */
  readonly size: number;
  /** Each slot's label value; null: not given out yet. */
  private readonly labels: (string | null)[];
  /** Each tenant slot's tenant (the whole string), '' where none. */
  private readonly tenants: string[];
  private readonly slotByTenant = new Map<string, number>();
  private readonly slotByLabel = new Map<string, number>();
  /** Generations of each slot's tenant queued or running: a slot with any is never given to another tenant. */
  private readonly present: Int32Array;
  /** When each slot's tenant was last seen (given its slot, joined, left, refused). */
  private readonly lastSeen: Float64Array;
  /** Tenant slots given out so far (the rest are free). */
  private given = 0;

  /**
   * `cap`: tenants with their own label (0: none; then every slot is off and
   * `slotOf` answers `none` or `other` without a lookup). `onReassigned`:
   * a slot went from one tenant to another (its figures start again at 0).
   */
  constructor(
    readonly cap: number,
    private readonly idleMs = TENANT_SLOT_IDLE_MS,
    private readonly onReassigned: (slot: number) => void = () => undefined,
  ) {
    if (!Number.isInteger(cap) || cap < 0 || cap > MAX_METRICS_TENANTS) throw new RangeError(`the tenant cap must be an integer from 0 to ${MAX_METRICS_TENANTS}, not ${cap}`);
    this.size = SHARED_SLOTS + cap;
    this.labels = Array.from({ length: this.size }, () => null);
    this.labels[NONE_SLOT] = NONE_LABEL;
    this.labels[OTHER_SLOT] = OTHER_LABEL;
    this.tenants = Array.from({ length: this.size }, () => '');
    this.present = new Int32Array(this.size);
    this.lastSeen = new Float64Array(this.size);
  }

  /** The label value of `slot`, null where it is not given out. */
  label(slot: number): string | null {
    return this.labels[slot] ?? null;
  }

  /** `tenant`'s slot at `now` (ms), given it here where one is free or idle: '' is `none`, a tenant past the cap `other`. */
  slotOf(tenant: string, now: number): number {
    if (tenant === '') return NONE_SLOT;
    if (this.cap === 0) return OTHER_SLOT;
    const known = this.slotByTenant.get(tenant);
    if (known !== undefined) {
      this.lastSeen[known] = Math.max(this.lastSeen[known], now);
      return known;
    }
    const label = tenant.slice(0, TENANT_LABEL_CHARS);
    // A label is one tenant's: a second tenant with the same first characters (the edge's hashes never share 12) is `other`.
    if (label === NONE_LABEL || label === OTHER_LABEL || this.slotByLabel.has(label)) return OTHER_SLOT;
    const slot = this.given < this.cap ? SHARED_SLOTS + this.given++ : this.idleSlot(now);
    if (slot === -1) return OTHER_SLOT;
    const previous = this.labels[slot];
    if (previous !== null) {
      this.slotByTenant.delete(this.tenants[slot]);
      this.slotByLabel.delete(previous);
      this.onReassigned(slot);
    }
    this.labels[slot] = label;
    this.tenants[slot] = tenant;
    this.slotByTenant.set(tenant, slot);
    this.slotByLabel.set(label, slot);
    this.lastSeen[slot] = now;
    return slot;
  }

  /** A generation of `slot`'s tenant was queued (it keeps its slot until every such one left). */
  joined(slot: number, now: number): void {
    this.present[slot]++;
    this.lastSeen[slot] = Math.max(this.lastSeen[slot], now);
  }

  /** A generation of `slot`'s tenant left the pool (ended, running or queued). */
  left(slot: number, now: number): void {
    if (this.present[slot] > 0) this.present[slot]--;
    this.lastSeen[slot] = Math.max(this.lastSeen[slot], now);
  }

  /** The tenant slot idle longest, for idleMs at least, with nothing queued or running; -1: none. */
  private idleSlot(now: number): number {
    let best = -1;
    let oldest = now - this.idleMs;
    for (let slot = SHARED_SLOTS; slot < this.size; slot++) {
      if (this.present[slot] === 0 && this.lastSeen[slot] <= oldest) {
        best = slot;
        oldest = this.lastSeen[slot];
      }
    }
    return best;
  }
}
