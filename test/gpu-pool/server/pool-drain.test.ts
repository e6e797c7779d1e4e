/**
 * Stopping the real pool process: the first SIGTERM drains (running and
 * queued generations finish, new ones are refused, /healthz says so), and
 * `--drain-seconds` bounds the wait, after which what is left is cancelled.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { PoolEvent, PoolHealth } from '../../../shared/protocol';
import { models, repoRoot } from '../../support/shared-data';
import { startPool, type PoolProcess } from './pool-process';

let pool: PoolProcess | null = null;
afterEach(async () => {
  await pool?.stop();
  pool = null;
});

/** Opens a generation and reads its NDJSON stream as it arrives. */
async function open(p: PoolProcess, id: string, maxTokens: number): Promise<{ firstTokens: Promise<void>; events: Promise<PoolEvent[]> }> {
  const res = await fetch(`${p.url}/v1/generate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${p.token}`, 'content-type': 'application/json' },
    // Sampled and seeded: a story that goes on (a greedy one may end early), the same each run.
    body: JSON.stringify({ id, promptIds: [1, 403, 407], maxTokens, speculation: 'off', sampling: { temperature: 1, seed: 7 } }),
  });
  expect(res.status).toBe(200);
  let markFirst: () => void = () => undefined;
  const firstTokens = new Promise<void>((resolve) => (markFirst = resolve));
  const events = (async () => {
    const out: PoolEvent[] = [];
    const decoder = new TextDecoder();
    let buffered = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (!line) continue;
        const event = JSON.parse(line) as PoolEvent;
        out.push(event);
        if (event.type === 'tokens') markFirst();
      }
    }
    markFirst();
    return out;
  })();
  return { firstTokens, events };
}

async function health(p: PoolProcess): Promise<{ status: number; body: PoolHealth }> {
  const res = await fetch(`${p.url}/healthz`);
  return { status: res.status, body: (await res.json()) as PoolHealth };
}

describe('pool shutdown', () => {
  it('drains on SIGTERM: admitted generations finish, new ones are refused (503), health says draining, then it exits', async () => {
    pool = await startPool(['--max-active', '2', '--drain-seconds', '60']);
    expect(await health(pool)).toMatchObject({ status: 200, body: { ok: true, draining: false } });
    // Two running, four queued behind them: enough work that the drain is seen before it ends.
    const streams = await Promise.all(['a', 'b', 'c', 'd', 'e', 'f'].map((id) => open(pool!, `drain-${id}`, 400)));
    await streams[0].firstTokens;
    pool.kill('SIGTERM');
    let h = await health(pool);
    for (let i = 0; i < 200 && h.status === 200; i++) h = await health(pool);
    expect(h).toMatchObject({ status: 503, body: { ok: false, draining: true } });
    const refused = await fetch(`${pool.url}/v1/generate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${pool.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'too-late', promptIds: [1], maxTokens: 4 }),
    });
    expect(refused.status).toBe(503);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(((await refused.json()) as { code: string }).code).toBe('busy');
    // Every admitted generation, queued ones included, ran to its own end.
    for (const s of streams) {
      const done = (await s.events).at(-1);
      expect(done).toMatchObject({ type: 'done' });
      expect((done as Extract<PoolEvent, { type: 'done' }>).finishReason).toMatch(/^(length|stop)$/);
    }
    expect(await pool.exited).toBe(0);
    expect(pool.stderr()).toMatch(/pool: draining: \d+ running and \d+ queued/);
    // Its last line says it stopped: an operator tells a drain that ran its course from a process that vanished.
    expect(pool.stderr().trimEnd().split('\n').at(-1)).toMatch(/pool: stopped$/);
  });

  it('cancels what is left when the drain time is over (--drain-seconds 0); a hang-up (closed terminal) stops it so too', async () => {
    pool = await startPool(['--max-active', '1', '--drain-seconds', '0']);
    // One running, two queued behind it: ~1 s of work at full speed.
    const streams = await Promise.all(['x', 'y', 'z'].map((id) => open(pool!, `cut-${id}`, 480)));
    await streams[0].firstTokens;
    // SIGHUP as SIGTERM: node's default for it ended the process at once, streams cut without `done`, nothing saved.
    pool.kill('SIGHUP');
    const dones = await Promise.all(streams.map(async (s) => (await s.events).at(-1) as Extract<PoolEvent, { type: 'done' }>));
    for (const done of dones) expect(done.type).toBe('done');
    // The last one was still waiting for a row when the pool stopped.
    expect(dones[2].finishReason).toBe('cancelled');
    expect(await pool.exited).toBe(0);
    expect(pool.stderr()).toMatch(/drain time over: cancelling \d+ generations/);
  });

  it('drains on a hang-up whose terminal is gone: writes to its stderr fail, and the drain goes on', async () => {
    const args = [path.join(repoRoot, 'bin/sssd.mjs'), 'pool', '--model', models.stories260K.checkpoint, '--tokenizer', models.stories260K.tokenizer, '--port', '0', '--max-active', '1', '--drain-seconds', '60'];
    const child = spawn(process.execPath, args, { cwd: repoRoot, env: { ...process.env, SSSD_POOL_TOKEN: 'hangup-test' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (c, sig) => resolve([c, sig])));
    const url = await new Promise<string>((resolve) => {
      let stdout = '';
      child.stdout!.on('data', (d: Buffer) => {
        stdout += d.toString();
        const m = /pool listening on (\S+)/.exec(stdout);
        if (m) resolve(m[1]);
      });
    });
    const p = { url, token: 'hangup-test' } as PoolProcess;
    const streams = await Promise.all(['h1', 'h2', 'h3'].map((id) => open(p, `hup-${id}`, 400)));
    await streams[0].firstTokens;
    // As a closed terminal: nothing reads the pool's stderr any more (its next write fails with EPIPE; with a tty, EIO).
    child.stderr!.destroy();
    child.kill('SIGHUP');
    for (const s of streams) expect((await s.events).at(-1)).toMatchObject({ type: 'done' });
    expect((await exited)[1]).toBeNull();
  }, 90_000);

  it('drains on a signal sent the moment it says it is listening (its handlers are in place by then)', async () => {
    const args = [path.join(repoRoot, 'bin/sssd.mjs'), 'pool', '--model', models.stories260K.checkpoint, '--tokenizer', models.stories260K.tokenizer, '--port', '0'];
    const child = spawn(process.execPath, args, { cwd: repoRoot, env: { ...process.env, SSSD_POOL_TOKEN: 'signal-test' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    let stdout = '';
    // Signalled from the very callback that reads the line, as a supervisor would.
    child.stdout!.on('data', (d: Buffer) => {
      const seen = /pool listening on/.test(stdout);
      stdout += d.toString();
      if (!seen && /pool listening on/.test(stdout)) child.kill('SIGINT');
    });
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (c, s) => resolve([c, s])));
    expect(stdout).toMatch(/pool listening on/);
    expect(signal).toBeNull();
    expect(code).toBe(0);
    expect(stderr).toMatch(/pool: draining: 0 running and 0 queued/);
  }, 90_000);
});
