/**
 * Per-tenant series in /metrics (`sssd_pool_tenant_*{tenant}`): which tenant
 * holds the rows, waits in the queue, gets the tokens, was preempted or
 * refused, for an operator looking into fairness. Tenants get label values
 * by tenant-slots.ts (a bounded number, the rest `other`; callers naming
 * none `none`). As step-metrics.ts's: figures kept in typed arrays by slot,
 * written on the hot path (one add per row a step: the output tokens); at a
 * scrape their text is written from those arrays and follows the registry's
 * (exposition(), not prom-client's metrics: see there), the row and queue
 * gauges counted then from what admission holds.
 */
import type { FinishReason } from '../../shared/protocol';
import { NONE_SLOT, TenantSlots, TENANT_SLOT_IDLE_MS } from './tenant-slots';

/** How a tenant's generation ended: `completed` (stop, length, context length), `cancelled`, `error`. */
export const TENANT_OUTCOMES = ['completed', 'cancelled', 'error'] as const;
export type TenantOutcome = (typeof TENANT_OUTCOMES)[number];
/** Why a tenant's request was turned away: `busy` (refused at the door), `displaced` (its queued place went to another tenant's). */
export const TENANT_REFUSALS = ['busy', 'displaced'] as const;
export type TenantRefusal = (typeof TENANT_REFUSALS)[number];

const OUTCOME_OF: Readonly<Record<FinishReason, number>> = { stop: 0, length: 0, context_length: 0, cancelled: 1, error: 2 };

/** What admission holds, read at a scrape: each generation's slot. */
export interface TenantRows {
  readonly active: readonly { readonly tenantSlot: number }[];
  readonly queue: readonly { readonly tenantSlot: number }[];
}

export class TenantMetrics {
  /** Tenants with their own label value (0: the series are off). */
  readonly cap: number;
  private readonly slots: TenantSlots;
  private readonly outputTokens: Float64Array;
  private readonly admissions: Float64Array;
  private readonly queueSeconds: Float64Array;
  private readonly preemptions: Float64Array;
  /** By slot × TENANT_OUTCOMES. */
  private readonly outcomes: Float64Array;
  /** By slot × TENANT_REFUSALS. */
  private readonly refusals: Float64Array;
  /** Slots shown in /metrics: given out, or `none`/`other` once used. */
  private readonly shown: Uint8Array;
  private rows: (() => TenantRows) | null = null;

  constructor(config: { cap: number; idleMs?: number }) {
    this.cap = config.cap;
    this.slots = new TenantSlots(config.cap, config.idleMs ?? TENANT_SLOT_IDLE_MS, (slot) => this.zero(slot));
    const n = this.slots.size;
    this.outputTokens = new Float64Array(n);
    this.admissions = new Float64Array(n);
    this.queueSeconds = new Float64Array(n);
    this.preemptions = new Float64Array(n);
    this.outcomes = new Float64Array(n * TENANT_OUTCOMES.length);
    this.refusals = new Float64Array(n * TENANT_REFUSALS.length);
    this.shown = new Uint8Array(n);
  }

  /** Where the row and queue gauges count from at each scrape (the latest admission's). */
  watchRows(rows: () => TenantRows): void {
    this.rows = rows;
  }

  /** `tenant`'s slot ('' = none), given one where it has none and one is free; off, always `none`. */
  slotOf(tenant: string, now: number): number {
    if (this.cap === 0) return NONE_SLOT;
    const slot = this.slots.slotOf(tenant, now);
    this.shown[slot] = 1;
    return slot;
  }

  /** A generation of `tenant` was queued: its slot, which it keeps while the generation is here. */
  joined(tenant: string, now: number): number {
    const slot = this.slotOf(tenant, now);
    if (this.cap > 0) this.slots.joined(slot, now);
    return slot;
  }

  /** A generation of `slot` left the pool. */
  left(slot: number, now: number): void {
    if (this.cap > 0) this.slots.left(slot, now);
  }

  /** Output tokens a row emitted in a step (the hot path's one write). */
  addOutput(slot: number, tokens: number): void {
    this.outputTokens[slot] += tokens;
  }

  /** A generation of `slot` was given its first row after `queueSeconds` queued. */
  admitted(slot: number, queueSeconds: number): void {
    this.admissions[slot]++;
    this.queueSeconds[slot] += queueSeconds;
  }

  preempted(slot: number): void {
    this.preemptions[slot]++;
  }

  finished(slot: number, reason: FinishReason): void {
    this.outcomes[slot * TENANT_OUTCOMES.length + OUTCOME_OF[reason]]++;
  }

  refused(slot: number, why: TenantRefusal): void {
    this.refusals[slot * TENANT_REFUSALS.length + (why === 'busy' ? 0 : 1)]++;
  }

  /** A slot given to another tenant: its figures start again at 0 (its old label's series are gone). */
  private zero(slot: number): void {
    this.outputTokens[slot] = 0;
    this.admissions[slot] = 0;
    this.queueSeconds[slot] = 0;
    this.preemptions[slot] = 0;
    this.outcomes.fill(0, slot * TENANT_OUTCOMES.length, (slot + 1) * TENANT_OUTCOMES.length);
    this.refusals.fill(0, slot * TENANT_REFUSALS.length, (slot + 1) * TENANT_REFUSALS.length);
  }

  /**
   * The per-tenant series' text (Prometheus exposition, HELP and TYPE once a
   * family), to follow the registry's own; '' with the series off. Written
   * straight from the typed arrays, 5-10 µs of CPU a label: through
   * prom-client's labelled metrics (reset, then a hashed set per series) a
   * scrape cost 50-65 µs a label, about a second at the old cap of 4096
   * with the step loop stopped meanwhile (review h227). The text is what
   * prom-client wrote, byte for byte. `constantLabels`: every series' others
   * after its own (the registry's default labels, `model_name`), as
   * prom-client orders them.
   */
  exposition(constantLabels: Readonly<Record<string, string>> = {}): string {
    if (this.cap === 0) return '';
    const { slots, shown } = this;
    let constant = '';
    for (const [name, value] of Object.entries(constantLabels)) constant += `,${name}="${escapeLabelValue(value)}"`;
    /** Each shown slot's `{tenant="…"`, unclosed: the series add their own labels and the constant ones. */
    const heads: (string | null)[] = [];
    for (let slot = 0; slot < slots.size; slot++) {
      const label = shown[slot] === 1 ? slots.label(slot) : null;
      heads.push(label === null ? null : `{tenant="${escapeLabelValue(label)}"`);
    }
    const parts: string[] = [];
    const family = (name: string, help: string, type: 'counter' | 'gauge', value: (slot: number, head: string) => string): void => {
      let text = `# HELP ${name} ${help}\n# TYPE ${name} ${type}`;
      for (let slot = 0; slot < heads.length; slot++) {
        const head = heads[slot];
        if (head !== null) text += value(slot, head);
      }
      parts.push(text);
    };
    const one = (name: string, values: ArrayLike<number>) => (slot: number, head: string): string => `\n${name}${head}${constant}} ${values[slot]}`;
    const split = (name: string, label: string, kinds: readonly string[], values: Float64Array) => (slot: number, head: string): string => {
      let text = '';
      for (let k = 0; k < kinds.length; k++) text += `\n${name}${head},${label}="${kinds[k]}"${constant}} ${values[slot * kinds.length + k]}`;
      return text;
    };
    const running = new Float64Array(slots.size);
    const queued = new Float64Array(slots.size);
    const rows = this.rows?.();
    for (const gen of rows?.active ?? []) running[gen.tenantSlot]++;
    for (const gen of rows?.queue ?? []) queued[gen.tenantSlot]++;
    const gauge = (name: string, help: string, values: Float64Array): void => family(name, help, 'gauge', one(name, values));
    const total = (name: string, help: string, values: Float64Array): void => family(name, help, 'counter', one(name, values));
    gauge('sssd_pool_tenant_running_rows', "Batch rows the tenant's generations hold now (vllm:num_requests_running by tenant).", running);
    gauge('sssd_pool_tenant_queued', "The tenant's generations waiting for a row now, preempted ones included (vllm:num_requests_waiting by tenant).", queued);
    total('sssd_pool_tenant_output_tokens_total', "Output tokens the tenant's generations were given (vllm:generation_tokens_total by tenant).", this.outputTokens);
    total('sssd_pool_tenant_admissions_total', "The tenant's generations given their first row (not a preempted one's return).", this.admissions);
    total('sssd_pool_tenant_queue_seconds_total', "Seconds the tenant's admitted generations waited for their first row: over sssd_pool_tenant_admissions_total, its mean wait.", this.queueSeconds);
    total('sssd_pool_tenant_preemptions_total', "The tenant's generations that gave their row up to another tenant's (sssd_pool_preemptions_total by tenant).", this.preemptions);
    family(
      'sssd_pool_tenant_generations_total',
      "The tenant's generations that ended, by outcome: completed (stop, length, context length), cancelled, error.",
      'counter',
      split('sssd_pool_tenant_generations_total', 'outcome', TENANT_OUTCOMES, this.outcomes),
    );
    family(
      'sssd_pool_tenant_rejected_requests_total',
      "The tenant's requests turned away, by reason: busy (refused at the door), displaced (its queued place went to another tenant's) (sssd_pool_rejected_requests_total by tenant).",
      'counter',
      split('sssd_pool_tenant_rejected_requests_total', 'reason', TENANT_REFUSALS, this.refusals),
    );
    return `${parts.join('\n\n')}\n`;
  }
}

/** A label value as the exposition format takes it (prom-client's escaping): backslash, newline and quote escaped. */
function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

