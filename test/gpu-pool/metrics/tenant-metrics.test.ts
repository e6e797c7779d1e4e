import { describe, expect, it } from 'vitest';
import { Counter, Gauge, Registry } from 'prom-client';
import { TENANT_OUTCOMES, TENANT_REFUSALS, TenantMetrics, type TenantRows } from '../../../gpu-pool/metrics/tenant-metrics';
import { parsePrometheusText } from '../../support/prometheus-text';
import { seriesValue } from '../server/pool-process';

const hash = (c: string): string => c.repeat(64);

function tenantMetrics(cap: number, idleMs?: number): { metrics: TenantMetrics; text: () => Promise<string> } {
  const metrics = new TenantMetrics({ cap, idleMs });
  return { metrics, text: async () => metrics.exposition() };
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

  it("writes the text prom-client's own metrics wrote for the same figures, byte for byte: names, HELP and TYPE once, label order and escapes, values", async () => {
    const metrics = new TenantMetrics({ cap: 4 });
    // Tenants whose 12 characters need escaping in a label value, one plain, callers naming none, one past the cap.
    const tenants = ['quo"te\\back\nline-and-more', hash('a'), '', 'short', hash('b'), hash('c')];
    const slots = tenants.map((t) => metrics.joined(t, 0));
    slots.forEach((slot, i) => {
      metrics.addOutput(slot, 3 * i + 1);
      metrics.admitted(slot, 0.1 * (i + 1));
      if (i % 2 === 0) metrics.preempted(slot);
      metrics.finished(slot, (['stop', 'cancelled', 'error', 'length'] as const)[i % 4]);
      metrics.refused(slot, i % 3 === 0 ? 'busy' : 'displaced');
    });
    const rows: TenantRows = { active: [{ tenantSlot: slots[0] }, { tenantSlot: slots[0] }, { tenantSlot: slots[5] }], queue: [{ tenantSlot: slots[2] }] };
    metrics.watchRows(() => rows);
    const text = metrics.exposition({ model_name: 'stor"ies' });

    // The same figures set on prom-client's metrics, in a registry with the same default label.
    const registry = new Registry();
    registry.setDefaultLabels({ model_name: 'stor"ies' });
    const parsed = parsePrometheusText(text);
    const registers = [registry];
    for (const [name, family] of parsed) {
      const help = family.help!.replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
      const labelNames = Object.keys(family.samples[0].labels).filter((l) => l !== 'model_name');
      const metric = family.type === 'gauge' ? new Gauge({ name, help, labelNames, registers }) : new Counter({ name, help, labelNames, registers });
      for (const { labels, value } of family.samples) {
        const { model_name: _, ...own } = labels;
        if (metric instanceof Gauge) metric.set(own, value);
        else metric.inc(own, value);
      }
    }
    expect(text).toBe(await registry.metrics());

    // And the figures are those given, under the escaped label values.
    const quoted = parsed.get('sssd_pool_tenant_output_tokens_total')!.samples.find((x) => x.labels.tenant === 'quo"te\\back\n')!;
    expect(quoted).toEqual({ name: 'sssd_pool_tenant_output_tokens_total', labels: { tenant: 'quo"te\\back\n', model_name: 'stor"ies' }, value: 1 });
    expect(seriesValue(text, 'sssd_pool_tenant_output_tokens_total', 'tenant="other"')).toBe(16);
    expect(seriesValue(text, 'sssd_pool_tenant_running_rows', 'tenant="other"')).toBe(1);
    expect(seriesValue(text, 'sssd_pool_tenant_queued', 'tenant="none"')).toBe(1);
    expect([...parsed.keys()]).toEqual([
      'sssd_pool_tenant_running_rows',
      'sssd_pool_tenant_queued',
      'sssd_pool_tenant_output_tokens_total',
      'sssd_pool_tenant_admissions_total',
      'sssd_pool_tenant_queue_seconds_total',
      'sssd_pool_tenant_preemptions_total',
      'sssd_pool_tenant_generations_total',
      'sssd_pool_tenant_rejected_requests_total',
    ]);
    // Label values shown: the 4 tenants with one, none and other; each with every outcome and reason.
    expect(parsed.get('sssd_pool_tenant_generations_total')!.samples).toHaveLength(6 * TENANT_OUTCOMES.length);
    expect(parsed.get('sssd_pool_tenant_rejected_requests_total')!.samples).toHaveLength(6 * TENANT_REFUSALS.length);
  });
});
