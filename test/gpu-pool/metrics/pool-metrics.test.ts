import { describe, expect, it } from 'vitest';
import { PoolMetrics } from '../../../gpu-pool/metrics/pool-metrics';
import { NONE_SLOT } from '../../../gpu-pool/metrics/tenant-slots';
import { parsePrometheusText } from '../../support/prometheus-text';

/** One sample's value from the rendered exposition. */
async function sample(metrics: PoolMetrics, line: string): Promise<number> {
  const found = (await metrics.render()).body.split('\n').find((l) => l.startsWith(`${line} `));
  return Number(found?.split(' ').pop());
}

describe('pool metrics', () => {
  it('shows both forms of event stream from the start, at 0: a rollout watching NDJSON streams sees 0, not no data', async () => {
    const metrics = new PoolMetrics();
    expect(await sample(metrics, 'sssd_pool_event_streams_total{encoding="frames"}')).toBe(0);
    expect(await sample(metrics, 'sssd_pool_event_streams_total{encoding="ndjson"}')).toBe(0);
    metrics.eventStreams.ndjson.inc();
    expect(await sample(metrics, 'sssd_pool_event_streams_total{encoding="ndjson"}')).toBe(1);
  });

  it('reads the output rate at the scrape: a pool gone idle reads 0, not its last busy figure', async () => {
    let clock = 100_000;
    const metrics = new PoolMetrics(() => clock);
    // 5 s of steps at 1,000 tokens a second.
    for (let ms = 0; ms <= 5_000; ms += 10) metrics.endStep(100_000 + ms, 10);
    clock = 105_000;
    expect(await sample(metrics, 'sssd_pool_generation_tokens_per_second')).toBeCloseTo(1000, -1);
    // Then nothing for 20 s.
    clock = 125_000;
    expect(await sample(metrics, 'sssd_pool_generation_tokens_per_second')).toBe(0);
  });

  it('reads a pool busy for a moment over a second at least, not as a tenfold rate', async () => {
    let clock = 100_000;
    const metrics = new PoolMetrics(() => clock);
    // 110 tokens in 0.1 s.
    for (let ms = 0; ms <= 100; ms += 10) metrics.endStep(100_000 + ms, 10);
    clock = 100_100;
    expect(await sample(metrics, 'sssd_pool_generation_tokens_per_second')).toBeCloseTo(110, 0);
  });

  it('counts accepted tokens by position once each, however many steps follow', async () => {
    const metrics = new PoolMetrics(undefined, 64);
    metrics.recordAccepted(0);
    metrics.recordAccepted(1);
    metrics.endStep(1, 3);
    metrics.endStep(2, 1);
    metrics.recordAccepted(0);
    metrics.endStep(3, 2);
    expect(await sample(metrics, 'vllm:spec_decode_num_accepted_tokens_per_pos_total{position="0"}')).toBe(2);
    expect(await sample(metrics, 'vllm:spec_decode_num_accepted_tokens_per_pos_total{position="1"}')).toBe(1);
  });

  it('counts error responses by status, any status it does not name as "other" (a bounded set of series)', async () => {
    const metrics = new PoolMetrics();
    metrics.recordErrorResponse(413);
    metrics.recordErrorResponse(418);
    metrics.recordErrorResponse(502);
    expect(await sample(metrics, 'sssd_pool_error_responses_total{status="413"}')).toBe(1);
    expect(await sample(metrics, 'sssd_pool_error_responses_total{status="other"}')).toBe(2);
    expect((await metrics.render()).body).not.toMatch(/status="418"/);
  });

  it('observes end-to-end latency in seconds, as vLLM dashboards read it', async () => {
    const metrics = new PoolMetrics();
    metrics.recordCompleted({ promptTokens: 1, completionTokens: 2, queueMs: 1, timeToFirstTokenMs: 5, durationMs: 1500 });
    expect(await sample(metrics, 'vllm:e2e_request_latency_seconds_sum')).toBeCloseTo(1.5, 6);
    expect(await sample(metrics, 'vllm:e2e_request_latency_seconds_count')).toBe(1);
  });

  it("counts finished generations in vLLM's reasons: a cancelled one is an abort, the context's end a length", async () => {
    const metrics = new PoolMetrics();
    for (const reason of ['stop', 'length', 'context_length', 'cancelled', 'error'] as const) metrics.recordFinished(reason, NONE_SLOT);
    expect(await sample(metrics, 'vllm:request_success_total{finished_reason="stop"}')).toBe(1);
    expect(await sample(metrics, 'vllm:request_success_total{finished_reason="length"}')).toBe(2);
    expect(await sample(metrics, 'vllm:request_success_total{finished_reason="abort"}')).toBe(1);
    expect(await sample(metrics, 'vllm:request_success_total{finished_reason="error"}')).toBe(1);
  });

  it('has every failure and refusal series at 0 from the start (increase() misses a series\' first sample, and with it a first failure)', async () => {
    const metrics = new PoolMetrics();
    for (const series of [
      'vllm:request_success_total{finished_reason="error"}',
      'vllm:request_success_total{finished_reason="abort"}',
      'sssd_pool_rejected_requests_total{reason="busy"}',
      'sssd_pool_pass_failures_total{result="batch"}',
      'sssd_pool_draft_failures_total{kind="drafter"}',
      'sssd_pool_datastore_saves_total{result="error"}',
      'sssd_pool_trie_pushes_total{result="invalid"}',
      'sssd_pool_trie_pushes_total{result="ended"}',
      'sssd_pool_shipped_tries_total{result="malformed"}',
      'sssd_pool_speculating_steps_total{drafter="tree"}',
      'sssd_pool_draft_skips_total{reason="unpaid"}',
      'sssd_pool_draft_skips_total{reason="resting"}',
      'sssd_pool_draft_probes_total',
      'sssd_pool_generation_errors_total{code="bad_request"}',
      'sssd_pool_generation_errors_total{code="internal"}',
    ]) {
      expect(await sample(metrics, series), series).toBe(0);
    }
  });

  it("shows the speculation governor's rates in tokens per second, Prometheus's base unit (the governor counts per ms)", async () => {
    const metrics = new PoolMetrics();
    metrics.watchGovernor(() => [{ method: 'sssd', batch: 8, state: { specRate: 12.5, plainRate: 7 } }]);
    expect(await sample(metrics, 'sssd_pool_governor_tokens_per_second{method="sssd",batch="8",arm="spec"}')).toBe(12_500);
    expect(await sample(metrics, 'sssd_pool_governor_tokens_per_second{method="sssd",batch="8",arm="plain"}')).toBe(7_000);
  });

  it('counts every accepted position a step can reach, past 32 where the trees may hold more', async () => {
    const metrics = new PoolMetrics(undefined, 64);
    for (let p = 0; p < 48; p++) metrics.recordAccepted(p);
    metrics.endStep(1, 48);
    expect(await sample(metrics, 'vllm:spec_decode_num_accepted_tokens_per_pos_total{position="40"}')).toBe(1);
    expect(await sample(metrics, 'vllm:spec_decode_num_accepted_tokens_per_pos_total{position="47"}')).toBe(1);
  });

  it('names the served model on every series, as vLLM does, when given one', async () => {
    const metrics = new PoolMetrics(undefined, undefined, 'stories260K');
    metrics.recordFinished('stop', NONE_SLOT);
    const lines = (await metrics.render()).body.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(lines).toContain('vllm:request_success_total{finished_reason="stop",model_name="stories260K"} 1');
    expect(lines).toContain('vllm:num_requests_running{model_name="stories260K"} 0');
    expect(lines.filter((l) => !l.includes('model_name="stories260K"'))).toEqual([]);
  });

  it("counts a finished generation for its tenant where it counts it pool-wide, so the tenants' outcomes add up to vLLM's reasons", async () => {
    const metrics = new PoolMetrics();
    const slot = metrics.tenants.slotOf('a'.repeat(64), 0);
    metrics.recordFinished('cancelled', slot);
    metrics.recordFinished('stop', slot);
    metrics.recordFinished('cancelled', metrics.tenants.slotOf('', 0));
    expect(await sample(metrics, 'vllm:request_success_total{finished_reason="abort"}')).toBe(2);
    expect(await sample(metrics, 'sssd_pool_tenant_generations_total{tenant="aaaaaaaaaaaa",outcome="cancelled"}')).toBe(1);
    expect(await sample(metrics, 'sssd_pool_tenant_generations_total{tenant="aaaaaaaaaaaa",outcome="completed"}')).toBe(1);
    expect(await sample(metrics, 'sssd_pool_tenant_generations_total{tenant="none",outcome="cancelled"}')).toBe(1);
  });

  it("writes one exposition a Prometheus server parses: the per-tenant series' text after the registry's, every family's HELP and TYPE once", async () => {
    const metrics = new PoolMetrics(undefined, undefined, 'stories260K', 3);
    for (const tenant of ['a'.repeat(64), 'b"\\\n'.repeat(8), '', 'c'.repeat(64), 'd'.repeat(64)]) metrics.recordFinished('stop', metrics.tenants.slotOf(tenant, 0));
    const { body } = await metrics.render();
    const families = parsePrometheusText(body);
    const tenantFamilies = [...families.keys()].filter((name) => name.startsWith('sssd_pool_tenant_') && !name.startsWith('sssd_pool_tenant_reserve'));
    expect(tenantFamilies).toHaveLength(8);
    // After the pool's own, together.
    expect([...families.keys()].slice(-8)).toEqual(tenantFamilies);
    for (const [name, family] of families) {
      expect([name, family.help !== null && family.type !== null]).toEqual([name, true]);
      for (const s of family.samples) expect(s.labels.model_name).toBe('stories260K');
    }
    const outcomes = families.get('sssd_pool_tenant_generations_total')!.samples.filter((s) => s.labels.outcome === 'completed');
    expect(outcomes.map((s) => [s.labels.tenant, s.value])).toEqual([['none', 1], ['other', 1], ['aaaaaaaaaaaa', 1], ['b"\\\n'.repeat(3), 1], ['cccccccccccc', 1]]);
    // The reader refuses what a server would: a family written twice.
    expect(() => parsePrometheusText(body + body)).toThrow(/again after another family/);
  });

  it("resolves a CPU's sub-millisecond steps, and queueing past 10 s, in buckets of their own", async () => {
    const metrics = new PoolMetrics();
    metrics.stepSeconds.observe(0.0003);
    metrics.interTokenLatency.observe(0.0002);
    metrics.timeToFirstToken.observe(15);
    metrics.e2eLatency.observe(300);
    expect(await sample(metrics, 'sssd_pool_step_seconds_bucket{le="0.0005"}')).toBe(1);
    expect(await sample(metrics, 'sssd_pool_step_seconds_bucket{le="0.00025"}')).toBe(0);
    expect(await sample(metrics, 'vllm:inter_token_latency_seconds_bucket{le="0.00025"}')).toBe(1);
    expect(await sample(metrics, 'vllm:time_to_first_token_seconds_bucket{le="10"}')).toBe(0);
    expect(await sample(metrics, 'vllm:time_to_first_token_seconds_bucket{le="20"}')).toBe(1);
    expect(await sample(metrics, 'vllm:e2e_request_latency_seconds_bucket{le="480"}')).toBe(1);
  });

  it('tells stalls of 10-30 s apart in the step and inter-token histograms, not all in +Inf', async () => {
    const metrics = new PoolMetrics();
    metrics.stepSeconds.observe(12);
    metrics.interTokenLatency.observe(45);
    expect(await sample(metrics, 'sssd_pool_step_seconds_bucket{le="10"}')).toBe(0);
    expect(await sample(metrics, 'sssd_pool_step_seconds_bucket{le="30"}')).toBe(1);
    expect(await sample(metrics, 'vllm:inter_token_latency_seconds_bucket{le="30"}')).toBe(0);
    expect(await sample(metrics, 'vllm:inter_token_latency_seconds_bucket{le="60"}')).toBe(1);
    for (const le of ['5', '10', '30', '60']) expect(await sample(metrics, `sssd_pool_step_seconds_bucket{le="${le}"}`), le).toBeGreaterThanOrEqual(0);
  });

  it("shows /healthz's flags, the limits, the token reservations' share of theirs and what is running, read at the scrape", async () => {
    const metrics = new PoolMetrics();
    const health = { draining: false, stuck: false, failing: false, reservedTokens: 0 };
    metrics.watchHealth(() => health, { maxActive: 8, maxQueued: 16, maxTotalTokens: 4000 });
    metrics.setBuildInfo({ version: '0.1.0', protocol: 1, executionProvider: 'cpu' });
    expect(await sample(metrics, 'sssd_pool_max_active')).toBe(8);
    expect(await sample(metrics, 'sssd_pool_max_queued')).toBe(16);
    expect(await sample(metrics, 'sssd_pool_max_total_tokens')).toBe(4000);
    expect(await sample(metrics, 'sssd_pool_build_info{version="0.1.0",protocol="1",execution_provider="cpu"}')).toBe(1);
    for (const flag of ['draining', 'stuck', 'failing']) expect(await sample(metrics, `sssd_pool_${flag}`), flag).toBe(0);
    expect(await sample(metrics, 'sssd_pool_reserved_tokens_ratio')).toBe(0);
    Object.assign(health, { draining: true, failing: true, reservedTokens: 1000 });
    expect(await sample(metrics, 'sssd_pool_draining')).toBe(1);
    expect(await sample(metrics, 'sssd_pool_failing')).toBe(1);
    expect(await sample(metrics, 'sssd_pool_stuck')).toBe(0);
    expect(await sample(metrics, 'sssd_pool_reserved_tokens_ratio')).toBe(0.25);
  });

  it("keeps vLLM's per-request histograms of completed requests: time per output token after the first, prompt and output lengths", async () => {
    const metrics = new PoolMetrics();
    metrics.recordCompleted({ promptTokens: 10, completionTokens: 11, queueMs: 2, timeToFirstTokenMs: 5, durationMs: 15 });
    // One token: no time per output token to give.
    metrics.recordCompleted({ promptTokens: 3, completionTokens: 1, queueMs: 1, timeToFirstTokenMs: 4, durationMs: 4 });
    expect(await sample(metrics, 'vllm:request_time_per_output_token_seconds_count')).toBe(1);
    expect(await sample(metrics, 'vllm:request_time_per_output_token_seconds_sum')).toBeCloseTo(0.001, 9);
    expect(await sample(metrics, 'vllm:request_prompt_tokens_sum')).toBe(13);
    expect(await sample(metrics, 'vllm:request_generation_tokens_bucket{le="5"}')).toBe(1);
    expect(await sample(metrics, 'vllm:e2e_request_latency_seconds_count')).toBe(2);
    // vLLM's phases once admitted (review h118: a vLLM dashboard's panels were empty): inference = prefill + decode.
    expect(await sample(metrics, 'vllm:request_inference_time_seconds_sum')).toBeCloseTo((13 + 3) / 1000, 9);
    expect(await sample(metrics, 'vllm:request_prefill_time_seconds_sum')).toBeCloseTo((3 + 3) / 1000, 9);
    expect(await sample(metrics, 'vllm:request_decode_time_seconds_sum')).toBeCloseTo((10 + 0) / 1000, 9);
    expect(await sample(metrics, 'vllm:request_decode_time_seconds_count')).toBe(2);
  });
});

