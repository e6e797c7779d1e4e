/**
 * The per-tenant series of /metrics (tenant-metrics.ts) in the real pool
 * process (stories260K on the CPU): two tenants' generations each under
 * their own label, with their tokens, outcomes and rows; past
 * --metrics-tenants, folded into tenant="other"; at 0, no such series.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { generate, metricValue, pipelinedGenerates, seriesValue as seriesValueOf, startPool, streamEvents, type PoolProcess } from './pool-process';

let pool: PoolProcess | null = null;
afterEach(async () => {
  await pool?.stop();
  pool = null;
});

/** Tenants as an edge names them: hex hashes (the label is the first 12 characters). */
const TENANT_A = 'a1'.repeat(32);
const TENANT_B = 'b2'.repeat(32);
const TENANT_C = 'c3'.repeat(32);
const label = (tenant: string): string => `tenant="${tenant.slice(0, 12)}"`;

/** The series this change adds (not the pool-wide sssd_pool_tenant_reserve ones). */
const TENANT_SERIES = /^sssd_pool_tenant_(running_rows|queued|output_tokens_total|admissions_total|queue_seconds_total|preemptions_total|generations_total|rejected_requests_total)[{ ]/m;

async function metricsText(p: PoolProcess): Promise<string> {
  return (await fetch(`${p.url}/metrics`)).text();
}

describe('per-tenant metrics in the pool (--metrics-tenants)', () => {
  it("counts two tenants' generations under their own labels, and callers naming none under tenant=\"none\"", async () => {
    pool = await startPool(['--max-active', '4']);
    const p = pool;
    const body = (id: string, maxTokens: number) => ({ id, promptIds: [1, 403, 407], maxTokens, ignoreEos: true, speculation: 'off' as const });
    const [a, b, none] = await Promise.all([
      generate(p, { ...body('a0', 9), tenant: TENANT_A }),
      generate(p, { ...body('b0', 5), tenant: TENANT_B }),
      generate(p, body('n0', 3)),
    ]);
    expect([a.ids.length, b.ids.length, none.ids.length]).toEqual([9, 5, 3]);
    const a2 = await generate(p, { ...body('a1', 4), tenant: TENANT_A });
    expect(a2.ids).toHaveLength(4);
    const text = await metricsText(p);
    const value = (name: string, labels: string): number => seriesValueOf(text, name, labels);
    expect(value('sssd_pool_tenant_output_tokens_total', label(TENANT_A))).toBe(13);
    expect(value('sssd_pool_tenant_output_tokens_total', label(TENANT_B))).toBe(5);
    expect(value('sssd_pool_tenant_output_tokens_total', 'tenant="none"')).toBe(3);
    // Every token is some tenant's: the series add up to the pool's.
    expect(value('vllm:generation_tokens_total', '')).toBe(21);
    expect(value('sssd_pool_tenant_generations_total', `${label(TENANT_A)},outcome="completed"`)).toBe(2);
    expect(value('sssd_pool_tenant_generations_total', `${label(TENANT_B)},outcome="completed"`)).toBe(1);
    expect(value('sssd_pool_tenant_generations_total', `${label(TENANT_B)},outcome="cancelled"`)).toBe(0);
    expect(value('sssd_pool_tenant_admissions_total', label(TENANT_A))).toBe(2);
    expect(value('sssd_pool_tenant_running_rows', label(TENANT_A))).toBe(0);
    expect(value('sssd_pool_tenant_queued', label(TENANT_B))).toBe(0);
    // No tenant went past the cap.
    expect(text).not.toMatch(/tenant="other"/);
    // The full hash is not a label value: its first 12 characters are, as the request logs print it.
    expect(text).not.toContain(TENANT_A.slice(0, 13));
  }, 120_000);

  it('folds tenants past a cap of 1 into tenant="other": rows, refusals, tokens and cancels each where their tenant is counted', async () => {
    pool = await startPool(['--max-active', '1', '--max-queued', '0', '--metrics-tenants', '1']);
    const p = pool;
    // A runs a long generation in the pool's one row.
    const controller = new AbortController();
    const res = await fetch(`${p.url}/v1/generate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${p.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'a0', promptIds: [1, 403, 407], maxTokens: 480, ignoreEos: true, speculation: 'off', tenant: TENANT_A }),
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    const events = streamEvents(res);
    for await (const event of events) if (event.type === 'tokens') break;
    expect(await metricValue(p, 'sssd_pool_tenant_running_rows', label(TENANT_A))).toBe(1);
    // B, past the cap, is refused: no row, no queued place.
    const refused = await generate(p, { id: 'b0', promptIds: [1, 403, 407], maxTokens: 4, tenant: TENANT_B });
    expect(refused.status).toBe(503);
    expect(await metricValue(p, 'sssd_pool_tenant_rejected_requests_total', 'tenant="other",reason="busy"')).toBe(1);
    expect(await metricValue(p, 'sssd_pool_tenant_rejected_requests_total', `${label(TENANT_A)},reason="busy"`)).toBe(0);
    controller.abort();
    for (let waited = 0; waited < 100 && (await metricValue(p, 'sssd_pool_tenant_generations_total', `${label(TENANT_A)},outcome="cancelled"`)) < 1; waited++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await metricValue(p, 'sssd_pool_tenant_generations_total', `${label(TENANT_A)},outcome="cancelled"`)).toBe(1);
    const aTokens = await metricValue(p, 'sssd_pool_tenant_output_tokens_total', label(TENANT_A));
    expect(aTokens).toBeGreaterThan(0);
    // B and C, now admitted, are both "other"; A keeps its label and its tokens.
    const b = await generate(p, { id: 'b1', promptIds: [1, 403, 407], maxTokens: 4, ignoreEos: true, speculation: 'off', tenant: TENANT_B });
    const c = await generate(p, { id: 'c0', promptIds: [1, 403, 407], maxTokens: 6, ignoreEos: true, speculation: 'off', tenant: TENANT_C });
    expect([b.ids.length, c.ids.length]).toEqual([4, 6]);
    const text = await metricsText(p);
    expect(seriesValueOf(text, 'sssd_pool_tenant_output_tokens_total', 'tenant="other"')).toBe(10);
    expect(seriesValueOf(text, 'sssd_pool_tenant_output_tokens_total', label(TENANT_A))).toBe(aTokens);
    expect(seriesValueOf(text, 'sssd_pool_tenant_generations_total', 'tenant="other",outcome="completed"')).toBe(2);
    expect(seriesValueOf(text, 'sssd_pool_tenant_admissions_total', 'tenant="other"')).toBe(2);
    expect(text).not.toMatch(new RegExp(`${TENANT_B.slice(0, 12)}|${TENANT_C.slice(0, 12)}`));
  }, 120_000);

  it("counts a generation cancelled while it waits its turn on a pipelined connection for its tenant, as pool-wide: the tenants' cancels add up to vLLM's aborts", async () => {
    pool = await startPool(['--metrics-tenants', '4']);
    const p = pool;
    const before = await metricValue(p, 'vllm:request_success_total', 'finished_reason="abort"');
    // A's long stream, and B's generate pipelined behind it on the same connection: B waits its turn, not yet a generation.
    const connection = await pipelinedGenerates(p, [
      { id: 'pa0', promptIds: [1, 403, 407], maxTokens: 480, ignoreEos: true, speculation: 'off', tenant: TENANT_A },
      { id: 'pb0', promptIds: [1, 403, 407], maxTokens: 4, speculation: 'off', tenant: TENANT_B },
    ]);
    try {
      const until = async (check: () => boolean): Promise<void> => {
        for (let waited = 0; waited < 400 && !check(); waited++) await new Promise((r) => setTimeout(r, 25));
      };
      await until(() => connection.received().includes('"type":"start","id":"pa0"'));
      const cancel = async (id: string): Promise<unknown> =>
        (await fetch(`${p.url}/v1/generations/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${p.token}` } })).json();
      expect(await cancel('pb0')).toEqual({ id: 'pb0', cancelled: true });
      expect(await cancel('pa0')).toEqual({ id: 'pa0', cancelled: true });
      await until(() => (connection.received().match(/"finishReason":"cancelled"/g) ?? []).length === 2);
      expect(connection.received()).not.toContain('"type":"start","id":"pb0"');
    } finally {
      connection.close();
    }
    const text = await metricsText(p);
    expect(seriesValueOf(text, 'vllm:request_success_total', 'finished_reason="abort"') - before).toBe(2);
    expect(seriesValueOf(text, 'sssd_pool_tenant_generations_total', `${label(TENANT_A)},outcome="cancelled"`)).toBe(1);
    expect(seriesValueOf(text, 'sssd_pool_tenant_generations_total', `${label(TENANT_B)},outcome="cancelled"`)).toBe(1);
  }, 120_000);

  it('with --metrics-tenants 0 shows no per-tenant series', async () => {
    pool = await startPool(['--metrics-tenants', '0']);
    const p = pool;
    const a = await generate(p, { id: 'a0', promptIds: [1, 403, 407], maxTokens: 3, ignoreEos: true, tenant: TENANT_A });
    const none = await generate(p, { id: 'n0', promptIds: [1, 403, 407], maxTokens: 3, ignoreEos: true });
    expect([a.ids.length, none.ids.length]).toEqual([3, 3]);
    const text = await metricsText(p);
    expect(seriesValueOf(text, 'vllm:generation_tokens_total', '')).toBe(6);
    expect(text).not.toMatch(TENANT_SERIES);
    expect(text).not.toMatch(/tenant="/);
  }, 120_000);
});
