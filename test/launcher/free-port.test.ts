// Services started by tests and by `sssd up` pick their ports while other
// processes open connections: a port taken in between must not fail the start.
import { readFileSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { freePort, isPortFree } from '../../launcher/service-process';
import { onFreePort } from '../../launcher/stack';

describe('freePort', () => {
  it('picks free ports below the range outgoing connections take theirs from', async () => {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    for (const port of ports) {
      expect(port).toBeLessThan(first);
      expect(await isPortFree(port)).toBe(true);
    }
    expect(new Set(ports).size).toBeGreaterThan(1);
  });

  it("never picks a port fetch refuses (the Fetch standard's bad port 10080: DevTools and the edge's fetch could not reach it)", async () => {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    // Every draw lands on 10080.
    const random = vi.spyOn(Math, 'random').mockReturnValue((10080 - 10_000 + 0.5) / (first - 10_000));
    try {
      const port = await freePort();
      expect(port).not.toBe(10080);
      const res = await fetch(`http://127.0.0.1:${port}/`).catch((err: unknown) => err as Error);
      expect(String((res as Error).cause ?? '')).not.toMatch(/bad port/);
    } finally {
      random.mockRestore();
    }
  });
});

describe('onFreePort', () => {
  const taken = (port: number): Error => new Error(`Address already in use (127.0.0.1:${port}). Please check that you are not already running a server on this address`);

  it('starts again when a port the service picked itself was taken, even on a named port', async () => {
    const tried: number[] = [];
    const got = await onFreePort(4321, async (port) => {
      tried.push(port);
      if (tried.length === 1) throw taken(45_678); // the inspector port, not the named one
      return `up on ${port}`;
    });
    expect(got).toBe('up on 4321');
    expect(tried).toEqual([4321, 4321]);
  });

  it('tries a named port that is taken once, and gives up on others after three tries', async () => {
    let tries = 0;
    await expect(onFreePort(4321, async () => { tries++; throw taken(4321); })).rejects.toThrow(/4321/);
    expect(tries).toBe(1);
    const picked: number[] = [];
    await expect(onFreePort(undefined, async (port) => { picked.push(port); throw taken(port); })).rejects.toThrow(/already in use/);
    expect(picked).toHaveLength(3);
    tries = 0;
    await expect(onFreePort(undefined, async () => { tries++; throw new Error('model not found'); })).rejects.toThrow('model not found');
    expect(tries).toBe(1);
  });
});
