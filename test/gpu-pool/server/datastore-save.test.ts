/**
 * `sssd pool --save-datastore FILE`: outputs that requests contributed to the
 * global datastore survive a restart (the real pool process, stopped by
 * SIGTERM, and a second one started on the saved file).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { PoolInfo } from '../../../shared/protocol';
import { generate, getJson, metricValue, startPool, type PoolProcess } from './pool-process';

const pools: PoolProcess[] = [];
const made: string[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.stop()));
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});
const scratch = (prefix: string): string => {
  const d = mkdtempSync(path.join(tmpdir(), prefix));
  made.push(d);
  return d;
};

describe('--save-datastore', () => {
  it('keeps contributed outputs across a restart, and the next pool drafts from them', async () => {
    const file = path.join(scratch('pool-save-'), 'live.sssd-ds');
    const first = await startPool(['--save-datastore', file, '--save-datastore-seconds', '0']);
    pools.push(first);
    const prompt = [1, 403, 407, 261, 378, 432, 383];
    const told = await generate(first, { id: 'told', promptIds: prompt, maxTokens: 48, speculation: 'off', contributeToDatastore: true });
    expect(told.done?.finishReason).toMatch(/stop|length/);
    // The pool's info follows the datastore as contributed outputs are indexed.
    const infoTokens = async (): Promise<number> => (await getJson<PoolInfo>(first, '/v1/info')).body.datastore.tokens;
    const until = Date.now() + 30_000;
    while ((await infoTokens()) === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(await infoTokens()).toBeGreaterThanOrEqual(prompt.length + told.ids.length);
    // What indexing the contribution cost, for an operator to see.
    expect(await metricValue(first, 'sssd_pool_datastore_rebuilds_total')).toBeGreaterThanOrEqual(1);
    expect(await metricValue(first, 'sssd_pool_datastore_rebuild_seconds_total')).toBeGreaterThan(0);
    expect(await metricValue(first, 'sssd_pool_datastore_pending_tokens')).toBe(0);
    // The same request again (a retry, a greedy prompt asked twice): its copy is counted, not indexed again.
    const indexed = await infoTokens();
    const again = await generate(first, { id: 'told-again', promptIds: prompt, maxTokens: 48, speculation: 'off', contributeToDatastore: true });
    expect(again.ids).toEqual(told.ids);
    expect(await metricValue(first, 'sssd_pool_datastore_contributions_total', 'result="repeat"')).toBe(1);
    expect(await metricValue(first, 'sssd_pool_datastore_contributions_total', 'result="indexed"')).toBe(1);
    expect(await metricValue(first, 'sssd_pool_datastore_pending_tokens')).toBe(0);
    expect(await infoTokens()).toBe(indexed);
    // Not opted in: not kept.
    await generate(first, { id: 'private', promptIds: [1, 300, 301, 302], maxTokens: 16, speculation: 'off' });
    expect(existsSync(file)).toBe(false);
    first.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    const saved = /datastore saved to .*live\.sssd-ds: (\d+) tokens, .* 1 new outputs/.exec(first.stderr());
    expect(saved, first.stderr()).not.toBeNull();
    expect(Number(saved![1])).toBeGreaterThanOrEqual(prompt.length + told.ids.length);

    const second = await startPool(['--datastore', file]);
    pools.push(second);
    const info = (await getJson<PoolInfo>(second, '/v1/info')).body;
    expect(info.datastore).toEqual({ enabled: true, tokens: Number(saved![1]) });
    expect(await metricValue(second, 'sssd_pool_datastore_tokens')).toBe(Number(saved![1]));
    expect(await metricValue(second, 'sssd_pool_datastore_rebuilds_total')).toBe(0);
    // The same story again: the remembered output is drafted and accepted, and the text is the same.
    const retold = await generate(second, { id: 'retold', promptIds: prompt, maxTokens: 48, speculation: 'sssd' });
    expect(retold.ids).toEqual(told.ids);
    expect(retold.done!.usage.speculation.acceptedTokens).toBeGreaterThan(told.ids.length / 2);
  });

  it("refuses a file that exists and is not the datastore it loads, and one another running pool saves to; takes over a killed pool's lock", async () => {
    const dir = scratch('pool-save-guard-');
    const file = path.join(dir, 'live.sssd-ds');
    // Not the datastore loaded (here a corpus named by mistake): each save would have replaced it.
    writeFileSync(file, '{"text": "a corpus line"}\n');
    await expect(startPool(['--save-datastore', file])).rejects.toThrow(/pool exited with 2:[^]*--save-datastore: .*live\.sssd-ds exists and is not the datastore this pool loads \(--datastore, none given\)[^]*load it too \(--datastore /);
    expect(readFileSync(file, 'utf8')).toContain('a corpus line');
    rmSync(file);

    const first = await startPool(['--save-datastore', file, '--save-datastore-seconds', '0']);
    pools.push(first);
    // Two pools saving to one file kept only the last one's outputs.
    await expect(startPool(['--save-datastore', path.join(dir, '.', 'live.sssd-ds')])).rejects.toThrow(/--save-datastore: another pool \(pid \d+\) saves to /);
    await generate(first, { id: 'told', promptIds: [1, 403, 407, 261], maxTokens: 24, speculation: 'off', contributeToDatastore: true });
    first.kill('SIGKILL');
    await first.exited;
    expect(existsSync(`${file}.lock`)).toBe(true);
    // Killed outright, its lock names a process that no longer runs: the next pool takes it over, and lets it go at its stop.
    const second = await startPool(['--save-datastore', file, '--save-datastore-seconds', '0']);
    pools.push(second);
    await generate(second, { id: 'told-again', promptIds: [1, 403, 407, 261], maxTokens: 24, speculation: 'off', contributeToDatastore: true });
    second.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    expect(existsSync(file)).toBe(true);
    expect(existsSync(`${file}.lock`)).toBe(false);
    // Saved once: the next run loads it and saves to it again.
    const third = await startPool(['--datastore', file, '--save-datastore', file]);
    pools.push(third);
  });

  it('exits 1 when the last save fails, so the lost outputs are not taken for a clean stop, and leaves no half-written copy', async () => {
    const dir = scratch('pool-save-fail-');
    const file = path.join(dir, 'live.sssd-ds');
    const pool = await startPool(['--save-datastore', file, '--save-datastore-seconds', '0']);
    pools.push(pool);
    await generate(pool, { id: 'told', promptIds: [1, 403, 407, 261], maxTokens: 24, speculation: 'off', contributeToDatastore: true });
    // A folder where the file goes, made after the start's check: the rename at the stop fails.
    mkdirSync(file);
    pool.kill('SIGTERM');
    expect(await pool.exited).toBe(1);
    expect(pool.stderr()).toMatch(/cannot save the datastore to .*live\.sssd-ds/);
    expect(pool.stderr()).toMatch(/1 contributed outputs could not be saved/);
    expect(readdirSync(dir)).toEqual(['live.sssd-ds']);
  });
});
