import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { TenantMetrics, type TenantRows } from '../../../gpu-pool/metrics/tenant-metrics';
import { seriesValue } from '../server/pool-process';

const hash = (c: string): string => c.repeat(64);

function tenantMetrics(cap: number, idleMs?: number): { metrics: TenantMetrics; text: () => Promise<string> } {
  const registry = new Registry();
  const metrics = new TenantMetrics({ registers: [registry], cap, idleMs });
  return { metrics, text: () => registry.metrics() };
}

describe('per-tenant metrics', () => {
  it("folds what each generation's slot adds into its tenant's series; past the cap, into tenant=\"other\"", async () => {
    const { metrics, text } = tenantMetrics(1);
    const a = metrics.joined(hash('a'), 0);
    const b = metrics.joined(hash('b'), 0);
    const none = metrics.joined('', 0);
    metrics.addOutput(a, 3);
    metrics.addOutput(a, 2);
    metrics.addOutput(b, 7);
    metrics.addOutput(none, 1);
    metrics.admitted(a, 0.25);
    metrics.admitted(b, 1.5);
    metrics.preempted(b);
    metrics.finished(a, 'length');
    metrics.finished(a, 'stop');
    metrics.finished(b, 'cancelled');
    metrics.refused(metrics.slotOf(hash('c'), 0), 'busy');
    metrics.refused(a, 'displaced');
    const rows: TenantRows = { active: [{ tenantSlot: a }, { tenantSlot: a }, { tenantSlot: b }], queue: [{ tenantSlot: none }] };
    metrics.watchRows(() => rows);
    const t = await text();
    const A = 'tenant="aaaaaaaaaaaa"';
    expect(seriesValue(t, 'sssd_pool_tenant_output_tokens_total', A)).toBe(5);
    expect(seriesValue(t, 'sssd_pool_tenant_output_tokens_total', 'tenant="other"')).toBe(7);
    expect(seriesValue(t, 'sssd_pool_tenant_output_tokens_total', 'tenant="none"')).toBe(1);
    expect(seriesValue(t, 'sssd_pool_tenant_queue_seconds_total', 'tenant="other"')).toBe(1.5);
    expect(seriesValue(t, 'sssd_pool_tenant_admissions_total', A)).toBe(1);
    expect(seriesValue(t, 'sssd_pool_tenant_preemptions_total', 'tenant="other"')).toBe(1);
    expect(seriesValue(t, 'sssd_pool_tenant_preemptions_total', A)).toBe(0);
    expect(seriesValue(t, 'sssd_pool_tenant_generations_total', `${A},outcome="completed"`)).toBe(2);
    expect(seriesValue(t, 'sssd_pool_tenant_generations_total', 'tenant="other",outcome="cancelled"')).toBe(1);
    expect(seriesValue(t, 'sssd_pool_tenant_rejected_requests_total', 'tenant="other",reason="busy"')).toBe(1);
    expect(seriesValue(t, 'sssd_pool_tenant_rejected_requests_total', `${A},reason="displaced"`)).toBe(1);
    expect(seriesValue(t, 'sssd_pool_tenant_running_rows', A)).toBe(2);
    expect(seriesValue(t, 'sssd_pool_tenant_running_rows', 'tenant="other"')).toBe(1);
    expect(seriesValue(t, 'sssd_pool_tenant_queued', 'tenant="none"')).toBe(1);
    // Every series of a tenant is there at 0 from its first sight (increase() misses a series' first sample).
    expect(t).toContain(`sssd_pool_tenant_generations_total{${A},outcome="error"} 0`);
    // One label value per slot: b and c never got one.
    expect(t).not.toMatch(/bbbbbbbbbbbb|cccccccccccc/);
  });

  it('ends the series of a tenant whose slot goes to another, whose figures start at 0: no past tokens move between label values', async () => {
    const { metrics, text } = tenantMetrics(1, 1000);
    const a = metrics.joined(hash('a'), 0);
    metrics.addOutput(a, 40);
    metrics.left(a, 10);
    expect(seriesValue(await text(), 'sssd_pool_tenant_output_tokens_total', 'tenant="aaaaaaaaaaaa"')).toBe(40);
    const b = metrics.joined(hash('b'), 2000);
    expect(b).toBe(a);
    metrics.addOutput(b, 3);
    const t = await text();
    expect(t).not.toContain('aaaaaaaaaaaa');
    expect(seriesValue(t, 'sssd_pool_tenant_output_tokens_total', 'tenant="bbbbbbbbbbbb"')).toBe(3);
    expect(seriesValue(t, 'sssd_pool_tenant_output_tokens_total', 'tenant="other"')).toBe(0);
  });

  it('with a cap of 0 registers no per-tenant series and takes every generation as slot 0', async () => {
    const { metrics, text } = tenantMetrics(0);
    const a = metrics.joined(hash('a'), 0);
    expect(a).toBe(0);
    metrics.addOutput(a, 5);
    metrics.finished(a, 'stop');
    expect(await text()).not.toContain('sssd_pool_tenant_');
  });
});
