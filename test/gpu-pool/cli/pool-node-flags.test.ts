/**
 * The pool's V8 heap flag: which command lines get relaunched with it, and
 * the relaunched pool as a user starts it (`node bin/sssd.mjs pool`, no
 * flags): it runs with the flag, a terminal's ^C (the signal reaching both
 * processes) drains it once, a later signal stops it, and exit codes come
 * through; a parent killed outright leaves no orphan: the pool drains and exits.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { POOL_NODE_FLAGS, poolRelaunchArgs, oldSpaceFlag } from '../../../gpu-pool/cli/pool-node-flags';
import type { PoolEvent } from '../../../shared/protocol';
import { models, repoRoot } from '../../support/shared-data';
import { waitForListening } from '../server/pool-process';

/** The processes `pid` started (Linux /proc; empty where it cannot be read). */
function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

describe('poolRelaunchArgs', () => {
  const script = '/repo/bin/sssd.mjs';

  it('relaunches `pool` with the flag first, keeping node flags and arguments', () => {
    expect(poolRelaunchArgs(['node', script, 'pool', '--model', 'm.bin', '--port', '0'], ['--enable-source-maps'], undefined)).toEqual([
      ...POOL_NODE_FLAGS,
      '--enable-source-maps',
      script,
      'pool',
      '--model',
      'm.bin',
      '--port',
      '0',
    ]);
  });

  it('leaves other commands, help, and an old generation the user sized alone', () => {
    expect(poolRelaunchArgs(['node', script, 'bench-serve', '--pool', 'x'], [], undefined)).toBeNull();
    expect(poolRelaunchArgs(['node', script], [], undefined)).toBeNull();
    expect(poolRelaunchArgs(['node', script, 'pool', '--help'], [], undefined)).toBeNull();
    expect(poolRelaunchArgs(['node', script, 'pool'], ['--initial-old-space-size=512'], undefined)).toBeNull();
    expect(poolRelaunchArgs(['node', script, 'pool'], [], '--max-old-space-size=4096 --initial_heap_size=300')).toBeNull();
    // Other heap flags are not this one: still relaunched, theirs kept.
    expect(poolRelaunchArgs(['node', script, 'pool'], ['--max-old-space-size=4096'], '--max-semi-space-size=8')).toEqual([...POOL_NODE_FLAGS, '--max-old-space-size=4096', script, 'pool']);
  });

  it('reads the flag from the command line or NODE_OPTIONS, in either spelling', () => {
    expect(oldSpaceFlag(['--initial-old-space-size=256'], undefined)).toBe('--initial-old-space-size=256');
    expect(oldSpaceFlag([], ' --initial_old_space_size=64 ')).toBe('--initial_old_space_size=64');
    expect(oldSpaceFlag([], '--initial-heap-size=300')).toBe('--initial-heap-size=300');
    expect(oldSpaceFlag(['--max-old-space-size=512', '--initial-old-space-size-x'], '--max-semi-space-size=2')).toBeNull();
  });
});

describe('a pool started without the flag', () => {
  it('runs relaunched with it; ^C drains once, a later signal cancels, and the exit code comes back', async () => {
    const token = 'relaunch-' + Math.random().toString(36).slice(2);
    const args = [path.join(repoRoot, 'bin/sssd.mjs'), 'pool', '--model', models.stories260K.checkpoint, '--tokenizer', models.stories260K.tokenizer, '--port', '0', '--max-active', '1', '--drain-seconds', '60'];
    // Its own process group, as a terminal's foreground job: ^C goes to every process in it.
    const child = spawn(process.execPath, args, { cwd: repoRoot, env: { ...process.env, SSSD_POOL_TOKEN: token }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const url = await waitForListening(child, () => stderr);
      expect(stderr).toContain(`pool: V8 heap ${POOL_NODE_FLAGS[0]}`);

      // One generation running and eleven queued behind it (--max-active 1): seconds of work.
      const streams = await Promise.all(
        Array.from({ length: 12 }, async (_, i) => {
          const res = await fetch(`${url}/v1/generate`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ id: `relaunch-${i}`, promptIds: [1, 403, 407], maxTokens: 480, speculation: 'off', sampling: { temperature: 1, seed: 7 + i } }),
          });
          expect(res.status).toBe(200);
          const events = res.text().then((text) => text.trim().split('\n').map((line) => JSON.parse(line) as PoolEvent));
          // Read below; if the test fails first, the pool is killed and the streams break: not an unhandled rejection.
          events.catch(() => undefined);
          // Wrapped: an async function returning the promise itself would wait for the stream's end.
          return { events };
        }),
      );

      process.kill(-child.pid!, 'SIGINT');
      for (let i = 0; i < 200 && !/pool: draining/.test(stderr); i++) await new Promise((r) => setTimeout(r, 10));
      expect(stderr).toMatch(/pool: draining: \d+ running and \d+ queued/);
      // The same ^C, forwarded by the parent, was not taken for a second one
      // (a signal a second or more after the first is).
      await new Promise((r) => setTimeout(r, 1100));
      expect(stderr).not.toMatch(/pool: second signal:/);
      expect((await fetch(`${url}/healthz`)).status).toBe(503);

      // A signal sent later, to the parent alone, reaches the pool: it stops at once.
      child.kill('SIGTERM');
      const dones = await Promise.all(streams.map(async (s) => (await s.events).at(-1) as Extract<PoolEvent, { type: 'done' }>));
      expect(dones.every((d) => d.type === 'done')).toBe(true);
      expect(dones.some((d) => d.finishReason === 'cancelled')).toBe(true);
      expect(await exited).toBe(0);
      expect(stderr).toMatch(/pool: second signal: cancelling the generations left/);
    } finally {
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGKILL');
    }
  }, 120_000);

  it('drains and exits when its launcher is killed with SIGKILL, instead of serving on orphaned', async () => {
    const token = 'orphan-' + Math.random().toString(36).slice(2);
    const args = [path.join(repoRoot, 'bin/sssd.mjs'), 'pool', '--model', models.stories260K.checkpoint, '--tokenizer', models.stories260K.tokenizer, '--port', '0', '--max-active', '1', '--drain-seconds', '60'];
    const child = spawn(process.execPath, args, { cwd: repoRoot, env: { ...process.env, SSSD_POOL_TOKEN: token }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    // The pool shares the parent's pipes: they close when the pool, not the parent, has exited.
    const poolExited = new Promise<void>((resolve) => child.stderr!.on('close', () => resolve()));
    let url = '';
    let poolPids: number[] = [];
    try {
      url = await waitForListening(child, () => stderr);
      const streams = Array.from({ length: 3 }, async (_, i) => {
        const res = await fetch(`${url}/v1/generate`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ id: `orphan-${i}`, promptIds: [1, 403, 407], maxTokens: 300, speculation: 'off', sampling: { temperature: 1, seed: 3 + i } }),
        });
        expect(res.status).toBe(200);
        const text = await res.text();
        return text.trim().split('\n').map((line) => JSON.parse(line) as PoolEvent);
      });
      // Every generation admitted or queued before the parent goes.
      for (let i = 0; i < 200; i++) {
        const health = (await (await fetch(`${url}/healthz`)).json()) as { active: number; queued: number };
        if (health.active + health.queued === 3) break;
        await new Promise((r) => setTimeout(r, 5));
      }
      poolPids = childPids(child.pid!);
      expect(poolPids).toHaveLength(1);
      child.kill('SIGKILL');
      const dones = await Promise.all(streams.map(async (s) => (await s).at(-1) as Extract<PoolEvent, { type: 'done' }>));
      // Drained, as on SIGTERM: what was running or queued finished; nothing was cut off.
      expect(dones.map((d) => d.type)).toEqual(['done', 'done', 'done']);
      expect(dones.every((d) => d.finishReason !== 'cancelled')).toBe(true);
      const exited = await Promise.race([poolExited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 20_000))]);
      expect(exited, 'the pool still runs 20 s after its drain began').toBe(true);
      expect(stderr).toMatch(/pool: the process that started it is gone .*stopping as on SIGTERM/);
      await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      // Not left behind when the test fails.
      for (const pid of poolPids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  }, 120_000);
});
