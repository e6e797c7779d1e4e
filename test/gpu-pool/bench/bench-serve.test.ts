/**
 * `sssd bench-serve` against the real pool process: every method and
 * concurrency gets a row, figures are consistent, user mistakes are clear.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { benchServe, describeInterruption, describeLevelRequests, distinctErrors, formatFailures, formatTable, MIN_P99_SAMPLES, warmupRound, type MethodResult } from '../../../gpu-pool/bench/bench-serve';
import type { MeasuredPool } from '../../../gpu-pool/bench/measured-pool';
import { runGeneration, type TimedGeneration } from '../../../gpu-pool/bench/pool-stream-client';
import { loadWorkload, parseWorkload, poolFieldsOf, servedWorkloadRequestSchema } from '../../../gpu-pool/bench/workload';
import type { BenchServeReport } from '../../../gpu-pool/cli/bench-serve-command';
import { repoRoot, workloads } from '../../support/shared-data';
import { sssdNodeArgs } from '../../support/compiled-cli';
import { metricValue, startPool, type PoolProcess } from '../server/pool-process';

const run = promisify(execFile);
let pool: PoolProcess;
beforeAll(async () => {
  pool = await startPool();
});
afterAll(async () => {
  await pool?.stop();
});

describe('bench-serve', () => {
  it('replays a workload per method and concurrency and reports consistent figures', async () => {
    const workload = (await loadWorkload(workloads.devSessions)).slice(0, 6).map((r) => ({ ...r, max_tokens: Math.min(r.max_tokens, 48) }));
    const measured: MeasuredPool[] = [];
    const results = await benchServe({
      poolUrl: pool.url,
      token: pool.token,
      workload,
      concurrencies: [1, 4],
      methods: ['off', 'sssd'],
      limit: 6,
      useDatastore: true,
      progress: false,
      phases: true,
      onPool: (p) => measured.push(p),
    });
    // Told once which pool it measured, as its /v1/info says: this test's, with no datastore.
    const info = (await (await fetch(`${pool.url}/v1/info`, { headers: { authorization: `Bearer ${pool.token}` } })).json()) as { model: { name: string; sha256?: string }; tokenizer: { sha256: string }; limits: object };
    expect(measured).toHaveLength(1);
    expect(measured[0]).toMatchObject({ url: pool.url, model: { name: info.model.name, contextLength: 512 }, tokenizer: { sha256: info.tokenizer.sha256 }, datastore: { enabled: false, tokens: 0, used: false }, limits: info.limits });
    expect(measured[0].model.sha256).toBe(info.model.sha256);
    expect(results.map((r) => `${r.concurrency}/${r.method}`)).toEqual(['1/off', '1/sssd', '4/off', '4/sssd']);
    for (const r of results) {
      expect(r.failed).toBe(0);
      // At least 4 × concurrency requests per level, cycling through the workload.
      expect(r.requests).toBe(Math.max(6, 4 * r.concurrency));
      expect(r.outputTokens).toBeGreaterThan(0);
      expect(r.outputTokensPerSecond).toBeGreaterThan(0);
      expect(r.ttftMedianMs).toBeGreaterThan(0);
      expect(r.ttftP99Ms).toBeGreaterThanOrEqual(r.ttftMedianMs);
      // Every request's whole time is at least its time to first token, so their medians are ordered the same way.
      expect(r.e2eMedianMs).toBeGreaterThanOrEqual(r.ttftMedianMs);
      expect(r.ttftSamples).toBe(r.requests);
      expect(r.tpotSamples).toBeLessThanOrEqual(r.ttftSamples);
      expect(r.tpotSamples).toBeGreaterThan(0);
      expect(r.itlSamples).toBeGreaterThan(0);
      // Streams' gaps between token events: a decode step or more each, the longest at least the p99.
      expect(r.itlP99Ms).toBeGreaterThan(0);
      expect(r.itlMaxMs).toBeGreaterThanOrEqual(r.itlP99Ms);
      // Its level's throughput over 'off''s at the same level (one replay: no per-replay ratios).
      const offAtLevel = results.find((o) => o.method === 'off' && o.concurrency === r.concurrency)!;
      expect(r.speedupVsOff).toBeGreaterThan(0);
      expect(r.speedupVsOff).toBeCloseTo(r.outputTokensPerSecond / offAtLevel.outputTokensPerSecond, 9);
      expect(r.speedupVsOffRuns).toBeUndefined();
      // Where the pool's time went in this method's rounds: the pass ran, and
      // the phases account for about the rounds' wall time (the reads of
      // /metrics around each round are in the phases, not in the wall).
      const p = r.poolSeconds!;
      expect(p.forward).toBeGreaterThan(0);
      expect(p.between).toBeGreaterThan(0);
      const total = p.draft + p.forward + p.accept + p.between + p.idle;
      expect(total).toBeGreaterThan(r.wallSeconds * 0.8);
      expect(total).toBeLessThan(r.wallSeconds * 1.5 + 0.05);
    }
    expect(results.find((r) => r.method === 'sssd')!.poolSeconds!.draft).toBeGreaterThan(0);
    const off = results.filter((r) => r.method === 'off');
    for (const r of off) {
      expect(r.meanAcceptanceLength).toBe(1);
      expect(r.speedupVsOff).toBe(1);
    }
    // Seeded requests give the same tokens whatever the method, so every method emits the same count.
    expect(results[1].outputTokens).toBe(results[0].outputTokens);
    expect(results[3].outputTokens).toBe(results[2].outputTokens);
  });

  it('replays a level several times with --repeat and gives the ratio of each replay', async () => {
    const cli = sssdNodeArgs();
    const { stdout } = await run(
      process.execPath,
      [...cli, 'bench-serve', '--pool', pool.url, '--workload', workloads.devSessions, '--concurrency', '2', '--methods', 'off,pld', '--limit', '2', '--repeat', '3', '--phases'],
      { env: { ...process.env, SSSD_POOL_TOKEN: pool.token } },
    );
    // 3 replays of 8 requests (4 × the concurrency); the table gains a column with the range of the per-replay ratios.
    expect(stdout).toMatch(/x off runs/);
    const lines = stdout.split('\n');
    expect(lines.find((l) => /^2\s+off\s/.test(l))).toMatch(/\s24\s+0\s+\d+\s+1\.00x\s+1\.00-1\.00x\s/);
    expect(lines.find((l) => /^2\s+pld\s/.test(l))).toMatch(/\s24\s+0\s+\d+\s+\d\.\d\dx\s+\d\.\d\d-\d\.\d\dx\s/);
    // --phases: a second table, µs per output token by phase, then the total and the pool's busy share.
    const phaseHead = lines.findIndex((l) => l.startsWith('pool µs per output token'));
    expect(phaseHead).toBeGreaterThan(0);
    expect(lines[phaseHead + 1]).toMatch(/^conc\s+method\s+draft\s+forward\s+accept\s+between\s+idle\s+total\s+busy$/);
    // The footer names the pool measured: its model and hashes, datastore and limits (a run against the wrong pool read like any other).
    expect(lines.find((l) => l.startsWith(`pool ${pool.url}`))).toMatch(new RegExp(`^pool ${pool.url}: \\S+ \\(context 512, tokenizer [0-9a-f]{12}(, weights [0-9a-f]{12})?\\)( on cpu)?; no datastore; --max-active \\d+ --max-queued \\d+ --max-total-tokens \\d+`));
    // 24 requests a method: too few for a p99, which says so under the table.
    expect(lines.find((l) => /^2\s+pld\s/.test(l))!.split(/ +/).slice(7, 13)).toEqual([expect.stringMatching(/ms$/), '-', expect.stringMatching(/ms$/), '-', expect.stringMatching(/ms$/), expect.stringMatching(/ms$/)]);
    expect(stdout).toMatch(/^p99: '-' below 100 samples/m);
    expect(lines.slice(phaseHead).find((l) => /^2\s+off\s/.test(l))).toMatch(/^2\s+off(\s+\d+\.\d){6}\s+\d+%$/);

    const workload = (await loadWorkload(workloads.devSessions)).slice(0, 4).map((r) => ({ ...r, max_tokens: Math.min(r.max_tokens, 24) }));
    // Each replay starts with the pool's draft cache empty, as the first did: a replay of the same requests found
    // every datastore lookup of theirs recorded, and `sssd` drafted about half as dear as in the first.
    const clears = (): Promise<number> => metricValue(pool, 'sssd_pool_draft_cache_clears_total');
    const clearsBefore = await clears();
    let warm = 0;
    const results = await benchServe({
      onWarmDraftCache: () => warm++,
      poolUrl: pool.url,
      token: pool.token,
      workload,
      concurrencies: [1],
      methods: ['off', 'sssd'],
      limit: 4,
      repeats: 2,
      useDatastore: true,
      progress: false,
    });
    const [off, sssd] = results;
    expect(await clears()).toBe(clearsBefore + 2);
    expect(warm).toBe(0);
    // Every replay runs the level's requests again: twice the requests, twice the tokens of one replay.
    expect(off.requests).toBe(8);
    // Not asked for: no reads of the pool's counters between rounds.
    expect(off.poolSeconds).toBeUndefined();
    expect(sssd.outputTokens).toBe(off.outputTokens);
    expect(off.speedupVsOffRuns).toEqual([1, 1]);
    expect(sssd.speedupVsOffRuns).toHaveLength(2);
    // The pooled ratio lies within the per-replay ones.
    const runs = sssd.speedupVsOffRuns!;
    expect(sssd.speedupVsOff!).toBeGreaterThanOrEqual(Math.min(...runs) - 1e-9);
    expect(sssd.speedupVsOff!).toBeLessThanOrEqual(Math.max(...runs) + 1e-9);
  });

  const level = (fields: Partial<MethodResult>): MethodResult => ({
    concurrency: 1, method: 'off', requests: 4, failed: 0, errors: [], outputTokens: 4, wallSeconds: 0.01, outputTokensPerSecond: 400,
    tpotMedianMs: NaN, tpotP99Ms: NaN, ttftMedianMs: 1.5, ttftP99Ms: 2, e2eMedianMs: 1.5, tpotSamples: 0, ttftSamples: 4, itlSamples: 0, itlP99Ms: NaN, itlMaxMs: NaN, meanAcceptanceLength: 1, acceptanceRate: 0,
    ...fields,
  });
  /** The table's row of one level, cut into its cells. */
  const cells = (r: MethodResult): string[] => formatTable([r]).split('\n')[2].split(/ +/);

  it("shows '-' for a latency the level had no sample of (one-token requests: no TPOT, no ITL), not NaNms", () => {
    const row = cells(level({}));
    expect(row.join(' ')).not.toMatch(/NaN/);
    expect(formatTable([level({})]).split('\n')[0]).toMatch(/\sTTFT p99\s+E2E med\s+ITL p99\s/);
    expect(row.slice(6, 13)).toEqual(['-', '-', '1.5ms', '-', '1.5ms', '-', '-']);
  });

  it(`shows a p99 only of ${MIN_P99_SAMPLES} samples or more (from 4 it was their maximum), and says under the table what TPOT and the dashes mean`, () => {
    const figures = { tpotMedianMs: 0, tpotP99Ms: 0.24, ttftMedianMs: 8.1, ttftP99Ms: 20, e2eMedianMs: 9.3, itlP99Ms: 3, itlMaxMs: 4 };
    const few = level({ ...figures, requests: 99, tpotSamples: 99, ttftSamples: 99, itlSamples: 99 });
    expect(cells(few).slice(6, 13)).toEqual(['0.00ms', '-', '8.1ms', '-', '9.3ms', '-', '4.0ms']);
    const enough = level({ ...figures, requests: 100, tpotSamples: 100, ttftSamples: 100, itlSamples: MIN_P99_SAMPLES });
    expect(cells(enough).slice(6, 13)).toEqual(['0.00ms', '0.24ms', '8.1ms', '20.0ms', '9.3ms', '3.00ms', '4.0ms']);
    // Each p99 by its own samples: requests for TTFT, gaps for ITL.
    expect(cells(level({ ...figures, tpotSamples: 5, ttftSamples: 200, itlSamples: 5 })).slice(6, 13)).toEqual(['0.00ms', '-', '8.1ms', '20.0ms', '9.3ms', '-', '4.0ms']);
    // A TPOT of 0 (every token of a request in one event) beside a longer E2E: the legend says why.
    const table = formatTable([few]).split('\n');
    expect(table[3]).toMatch(/^TPOT: per request, \(last token event - first\) \/ \(tokens - 1\), vLLM's: 0 where a request's tokens came in one event, however long it took; E2E: /);
    expect(table[4]).toMatch(/^p99: '-' below 100 samples \(requests for TPOT and TTFT, gaps between token events for ITL\)/);
  });

  it('says which requests each level measured, not the whole workload alone', () => {
    expect(describeLevelRequests(192, 96, [1, 8, 32, 128])).toBe('192 workload requests; measured: the first 96 at 1, the first 96 at 8, the first 128 at 32, all 192 and 320 repeats at 128');
  });

  it("groups one refusal with different retry hints as one failure, the hints' range after it (a line per retryAfterMs before)", () => {
    const busy = (ms: number): string => `HTTP 503: {"type":"error","code":"busy","message":"the pool is at capacity","retryAfterMs":${ms}}`;
    const failed = (error: string): TimedGeneration => ({ ok: false, error, outputIds: [], sentAt: 0, firstTokenAt: 0, lastTokenAt: 0, gaps: [] });
    const runs = [...[139, 104, 115, 500, 139].map((ms) => failed(busy(ms))), failed('HTTP 413: too large'), { ...failed(''), ok: true }];
    const errors = distinctErrors(runs);
    expect(errors).toEqual([
      { error: 'HTTP 503: {"type":"error","code":"busy","message":"the pool is at capacity"} (retryAfterMs 104 to 500)', count: 5 },
      { error: 'HTTP 413: too large', count: 1 },
    ]);
    expect(distinctErrors([failed(busy(100)), failed(busy(100))])[0].error).toMatch(/"the pool is at capacity"\} \(retryAfterMs 100\)$/);
    const level = { concurrency: 8, method: 'off', failed: 6, errors } as MethodResult;
    expect(formatFailures([level]).split('\n')).toHaveLength(2);
  });

  it('says when Ctrl-C came before any level finished, rather than end on a colon with nothing after it', () => {
    expect(describeInterruption([])).toBe('bench-serve: interrupted; no level was finished, so there are no figures');
    expect(describeInterruption([1, 4])).toBe('bench-serve: interrupted; the finished levels (concurrency 1, 4):');
  });

  it('warms every method with an unmeasured round above concurrency 4, on requests the level does not measure where there are any', async () => {
    const items = Array.from({ length: 10 }, (_, i) => i);
    // A level of 4 requests with 3 spare: the round takes the spare ones.
    expect(warmupRound(items, 4, 3)).toEqual([4, 5, 6]);
    // No room after the level: its own first round, cycling through the workload.
    expect(warmupRound(items, 8, 3)).toEqual([0, 1, 2]);
    expect(warmupRound(items.slice(0, 3), 20, 5)).toEqual([0, 1, 2, 0, 1]);

    const finished = async (): Promise<number> => {
      const text = await (await fetch(`${pool.url}/metrics`, { headers: { authorization: `Bearer ${pool.token}` } })).text();
      return text
        .split('\n')
        .filter((l) => l.startsWith('vllm:request_success_total{'))
        .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    };
    const workload = (await loadWorkload(workloads.devSessions)).slice(0, 6).map((r) => ({ ...r, max_tokens: Math.min(r.max_tokens, 8) }));
    const before = await finished();
    const results = await benchServe({ poolUrl: pool.url, token: pool.token, workload, concurrencies: [5], methods: ['off', 'sssd'], limit: 6, useDatastore: true, progress: false });
    expect(results.map((r) => [r.method, r.requests, r.failed])).toEqual([
      ['off', 20, 0],
      ['sssd', 20, 0],
    ]);
    // Per method: the bench's start-up warm-up (the workload's first 8, here 6),
    // the level's unmeasured round (16 = max(2 × 5, 16) requests), the 20 measured ones.
    expect((await finished()) - before).toBe(2 * (6 + 16 + 20));
  });

  it("puts --prompt-prefix before every prompt, and the pool's prefix cache serves it after the first", async () => {
    const hits = async (): Promise<number> => {
      const text = await (await fetch(`${pool.url}/metrics`)).text();
      return Number(/^vllm:prefix_cache_hits_total(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1] ?? NaN);
    };
    const before = await hits();
    const cli = sssdNodeArgs();
    const prefix = 'Tell a happy story for a small child, with short sentences and easy words, about a kind dog and a little girl. ';
    const { stdout } = await run(process.execPath, [...cli, 'bench-serve', '--pool', pool.url, '--workload', workloads.devSessions, '--concurrency', '1', '--methods', 'off', '--limit', '4', '--prompt-prefix', prefix, '--json'], {
      env: { ...process.env, SSSD_POOL_TOKEN: pool.token },
    });
    expect((JSON.parse(stdout) as BenchServeReport).results[0]).toMatchObject({ requests: 4, failed: 0 });
    // The bench's warm-up and the level: every request after the first finds at least the prefix's whole blocks.
    expect((await hits()) - before).toBeGreaterThanOrEqual(10 * 16);
    // A prefix that fills the context leaves no room to generate: said, not measured as nothing.
    const tooLong = await run(process.execPath, [...cli, 'bench-serve', '--pool', pool.url, '--workload', workloads.devSessions, '--concurrency', '1', '--methods', 'off', '--limit', '4', '--prompt-prefix', prefix.repeat(30)], {
      env: { ...process.env, SSSD_POOL_TOKEN: pool.token },
    }).catch((e: { code: number; stderr: string }) => e);
    expect((tooLong as { code: number }).code).toBe(2);
    expect((tooLong as { stderr: string }).stderr).toMatch(/workload request 1: its prompt \(with any --prompt-prefix\) is \d+ tokens, and the model's context 512: no room to generate/);
  });

  it('runs from the command line and prints JSON; bad flags are clear errors', async () => {
    const cli = sssdNodeArgs();
    // bin/sssd.mjs itself here; the file's other starts run it compiled once (compiled-cli.ts).
    const { stdout } = await run(process.execPath, [path.join(repoRoot, 'bin/sssd.mjs'), 'bench-serve', '--pool', pool.url, '--workload', workloads.devSessions, '--concurrency', '2', '--methods', 'off', '--limit', '2', '--json'], {
      env: { ...process.env, SSSD_POOL_TOKEN: pool.token },
    });
    // The report: the pool measured, the workload, then a result per level and method.
    const parsed = JSON.parse(stdout) as BenchServeReport;
    expect(Object.keys(parsed)).toEqual(['pool', 'workload', 'results']);
    expect(parsed.pool).toMatchObject({ url: pool.url, model: { contextLength: 512 }, datastore: { enabled: false } });
    expect(parsed.pool!.tokenizer.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(parsed.pool!.limits.maxActive).toBeGreaterThan(0);
    expect(parsed.workload).toEqual({ file: workloads.devSessions, requests: 192 });
    expect(parsed.results).toHaveLength(1);
    expect(parsed.results[0]).toMatchObject({ concurrency: 2, method: 'off', failed: 0, ttftSamples: 8 });
    const bad = await run(process.execPath, [...cli, 'bench-serve', '--pool', pool.url, '--workload', workloads.devSessions, '--methods', 'magic'], {
      env: { ...process.env, SSSD_POOL_TOKEN: pool.token },
    }).catch((e: { code: number; stderr: string }) => e);
    expect((bad as { code: number }).code).toBe(2);
    expect((bad as { stderr: string }).stderr).toMatch(/unknown method "magic"/);
    expect((bad as { stderr: string }).stderr).not.toMatch(/at .*\.ts:\d+/);
    const badRepeat = await run(process.execPath, [...cli, 'bench-serve', '--pool', pool.url, '--workload', workloads.devSessions, '--repeat', '0'], {
      env: { ...process.env, SSSD_POOL_TOKEN: pool.token },
    }).catch((e: { code: number; stderr: string }) => e);
    expect((badRepeat as { code: number }).code).toBe(2);
    expect((badRepeat as { stderr: string }).stderr).toMatch(/--repeat/);
    // A workload line without temperature, or with a field not replayed, is refused by its line before the run.
    const dir = mkdtempSync(path.join(tmpdir(), 'bench-workload-'));
    const untold = path.join(dir, 'w.jsonl');
    writeFileSync(untold, `${JSON.stringify({ user: 'u', prompt: 'Once', max_tokens: 4, temperature: 0 })}\n${JSON.stringify({ user: 'u', prompt: 'Once', max_tokens: 4, n: 2 })}\n`);
    const refused = await run(process.execPath, [...cli, 'bench-serve', '--pool', pool.url, '--workload', untold, '--concurrency', '1', '--methods', 'off'], {
      env: { ...process.env, SSSD_POOL_TOKEN: pool.token },
    })
      .catch((e: { code: number; stderr: string }) => e)
      .finally(() => rmSync(dir, { recursive: true, force: true }));
    expect((refused as { code: number }).code).toBe(2);
    expect((refused as { stderr: string }).stderr).toContain(`${untold}:2: temperature: required: 0 for greedy decoding`);
    expect((refused as { stderr: string }).stderr).toContain('unknown field "n": not replayed here');
  });

  it('prints the levels already measured when interrupted (Ctrl-C), and exits 130', async () => {
    const cli = sssdNodeArgs();
    const child = spawn(process.execPath, [...cli, 'bench-serve', '--pool', pool.url, '--workload', workloads.devSessions, '--concurrency', '1,4', '--methods', 'off', '--limit', '4'], {
      env: { ...process.env, SSSD_POOL_TOKEN: pool.token },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await new Promise<void>((resolve) =>
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/concurrency 1 measured/.test(stderr)) resolve();
      }),
    );
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toMatch(/interrupted; the finished levels \(concurrency 1\)/);
    const rows = stdout.split('\n').filter((l) => /^\d+ +off /.test(l));
    expect(rows.map((l) => l.split(/ +/)[0])).toEqual(['1']);
  });

  it('says what failed and exits 1, with no ratio for a level that had failures (it printed figures and exited 0)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bench-fail-'));
    const workload = path.join(dir, 'w.jsonl');
    // A pool that holds fewer tokens than the request needs refuses each (the workload's own check now refuses what
    // every pool would, such as a temperature of 5, before the run).
    writeFileSync(workload, '{"user":"u","prompt":"Once upon a time, there was a little dog.","max_tokens":8,"temperature":0}\n');
    const small = await startPool(['--max-total-tokens', '8']);
    const cli = sssdNodeArgs();
    const failed = await run(process.execPath, [...cli, 'bench-serve', '--pool', small.url, '--workload', workload, '--concurrency', '1,1', '--methods', 'off,sssd,off', '--limit', '1'], {
      env: { ...process.env, SSSD_POOL_TOKEN: small.token },
    })
      .catch((e: { code: number; stdout: string; stderr: string }) => e)
      .finally(() => small.stop());
    rmSync(dir, { recursive: true, force: true });
    const { code, stdout, stderr } = failed as { code: number; stdout: string; stderr: string };
    expect(code).toBe(1);
    expect(stderr).toMatch(/requests failed .*\nconcurrency 1, off: 4 failed: .*this pool holds at most 8/s);
    // One row per method and level, even when named twice; no ratio where requests failed.
    const rows = stdout.split('\n').filter((l) => /^1 +(off|sssd) /.test(l));
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row.split(/ +/)[5]).toBe('-');
    // Their tokens/s counts only what did not fail, and says so rather than pass for the method's throughput.
    for (const row of rows) expect(row.split(/ +/)[4]).toMatch(/^\d+\*$/);
    expect(stdout).toMatch(/^\* counts only the requests that did not fail/m);
    // Which pool refused them, with the limit that did.
    expect(stdout).toMatch(new RegExp(`^pool ${small.url}: .*; --max-active \\d+ --max-queued \\d+ --max-total-tokens 8\\b`, 'm'));
  });

  it("replays a workload line's stop and top_k as the pool's (they were dropped unread, and the run measured another workload)", async () => {
    const prompt = 'Once upon a time, there was a little dog.';
    const served = (fields: object) => parseWorkload(JSON.stringify({ user: 'u', prompt, max_tokens: 40, temperature: 0, seed: 11, ...fields }), 'w.jsonl', servedWorkloadRequestSchema);
    const tokens = async (fields: object): Promise<number> => {
      const [r] = await benchServe({ poolUrl: pool.url, token: pool.token, workload: served(fields), concurrencies: [1], methods: ['off'], limit: 1, useDatastore: false, progress: false });
      expect(r.failed).toBe(0);
      return r.outputTokens / r.requests;
    };
    // The greedy story runs past its first full stop: a stop there ends it sooner.
    const whole = await tokens({});
    expect(await tokens({ stop: '.' })).toBeLessThan(whole);
    expect(await tokens({ stop: ['zzzz'] })).toBe(whole);
    // top_k 1 at temperature 1 is greedy; without it the same seed samples another story.
    const generate = async (id: string, fields: object): Promise<number[]> => {
      const r = await runGeneration(pool.url, pool.token, { id, promptIds: [1, 403, 407], maxTokens: 24, speculation: 'off', ...poolFieldsOf(served(fields)[0]) });
      expect(r.ok).toBe(true);
      return r.outputIds;
    };
    const greedy = await generate('topk-greedy', {});
    expect(await generate('topk-1', { temperature: 1, top_k: 1 })).toEqual(greedy);
    expect(await generate('topk-none', { temperature: 1 })).not.toEqual(greedy);
  });

  it("reads a generation's stream to done over one kept-alive client, and reports the pool's refusals", async () => {
    const body = (id: string) => ({ id, promptIds: [1, 403, 407], maxTokens: 12, speculation: 'sssd' as const });
    // Back to back, as the bench's workers send them: each reads its own stream to the end.
    const a = await runGeneration(pool.url, pool.token, body('client-a'));
    const b = await runGeneration(pool.url, pool.token, body('client-b'));
    for (const r of [a, b]) {
      expect(r.ok).toBe(true);
      expect(r.outputIds).toHaveLength(12);
      expect(r.usage?.steps).toBeGreaterThan(0);
      expect(r.lastTokenAt).toBeGreaterThanOrEqual(r.firstTokenAt);
    }
    expect(b.outputIds).toEqual(a.outputIds);
    const unauthorized = await runGeneration(pool.url, 'not-the-token', body('client-c'));
    expect(unauthorized.ok).toBe(false);
    expect(unauthorized.error).toMatch(/^HTTP 401: .*unauthorized/);
    const bad = await runGeneration(pool.url, pool.token, { ...body('client-d'), maxTokens: -1 });
    expect(bad.error).toMatch(/^HTTP 400: .*maxTokens/);
    const nowhere = await runGeneration('http://127.0.0.1:1', pool.token, body('client-e'));
    expect(nowhere.ok).toBe(false);
    expect(nowhere.error).toMatch(/ECONNREFUSED/);
  });
});
