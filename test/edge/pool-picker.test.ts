/**
 * The order the edge tries pools in: by load, down ones last, and a request's
 * own pool first (its prefix cache) while that pool is not much busier.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { PROTOCOL_VERSION, type PoolHealth } from '../../shared/protocol';
import { AFFINITY_SLACK, AFFINITY_TOKENS, affinityKey, orderPools, PoolPicker } from '../../edge/pool-picker';
import { metricValue } from '../gpu-pool/server/pool-process';
import { realPoolForTests } from '../support/real-pool';

const health = (load: number, ok = true): PoolHealth => ({ ok, active: 0, queued: 0, load, tokensPerSecond: 0, draining: !ok });
const urls = ['http://pool-a', 'http://pool-b', 'http://pool-c', 'http://pool-d'];
const idle = urls.map((url) => ({ url, health: health(0) }));
/** What a stand-in pool answers at /v1/info, to the token `t`: enough for the picker to count it as serving the edge. */
const standInInfo = { protocol: PROTOCOL_VERSION, model: { name: 'stand-in', contextLength: 512, vocabSize: 512, bosId: 1, eosIds: [1], chatTemplate: 'concat' }, tokenizer: { format: 'llama2c', path: '/v1/tokenizer', sha256: '' } };
const keys = Array.from({ length: 400 }, (_, i) => affinityKey(`tenant-${i % 7}`, [1, 100 + i, 200 + (i % 13)]));

describe('pool order', () => {
  it('without affinity: least loaded first, unknown or draining pools last', () => {
    const pools = [
      { url: 'http://down', health: null },
      { url: 'http://busy', health: health(0.9) },
      { url: 'http://draining', health: health(0, false) },
      { url: 'http://idle', health: health(0.1) },
    ];
    expect(orderPools(pools).slice(0, 2)).toEqual(['http://idle', 'http://busy']);
    expect(orderPools(pools).slice(2).sort()).toEqual(['http://down', 'http://draining']);
  });

  it("sends a key to the same pool whatever the list's order, and spreads keys over the pools", () => {
    const counts = new Map<string, number>();
    for (const key of keys) {
      const home = orderPools(idle, key)[0];
      expect(orderPools([...idle].reverse(), key)[0]).toBe(home);
      counts.set(home, (counts.get(home) ?? 0) + 1);
    }
    expect(counts.size).toBe(4);
    for (const n of counts.values()) expect(n).toBeGreaterThan(50);
  });

  it('moves only the keys of a pool that leaves', () => {
    const homes = keys.map((key) => orderPools(idle, key)[0]);
    const without = idle.filter((p) => p.url !== 'http://pool-c');
    keys.forEach((key, i) => {
      if (homes[i] !== 'http://pool-c') expect(orderPools(without, key)[0]).toBe(homes[i]);
    });
    // Down counts as gone.
    const down = idle.map((p) => (p.url === 'http://pool-c' ? { url: p.url, health: null } : p));
    keys.forEach((key, i) => expect(orderPools(down, key)[0]).toBe(homes[i] === 'http://pool-c' ? orderPools(without, key)[0] : homes[i]));
  });

  it("lets load win when the key's pool is more than the slack busier than the least loaded", () => {
    const key = keys[0];
    const home = orderPools(idle, key)[0];
    const loaded = (extra: number) => idle.map((p) => ({ url: p.url, health: health(p.url === home ? 0.1 + extra : 0.1) }));
    expect(orderPools(loaded(AFFINITY_SLACK - 0.01), key)[0]).toBe(home);
    expect(orderPools(loaded(AFFINITY_SLACK + 0.01), key)[0]).not.toBe(home);
    expect(orderPools(loaded(AFFINITY_SLACK + 0.01), key).at(-1)).toBe(home);
  });

  it("keys a prompt by its scope and opening tokens: a chat's later turns go where its first went", () => {
    const opening = Array.from({ length: AFFINITY_TOKENS }, (_, i) => i + 1);
    expect(affinityKey('t', [...opening, 5, 6])).toBe(affinityKey('t', [...opening, 7, 8, 9]));
    expect(affinityKey('t', opening)).not.toBe(affinityKey('u', opening));
  });
});

describe('PoolPicker.inListOrder (where the model info comes from)', () => {
  it('keeps the order the operator listed, whatever the health checks said first, with pools known down last', () => {
    const picker = new PoolPicker(['http://a:1', 'http://b:1', 'http://c:1'], 't');
    expect(picker.inListOrder().map((c) => c.baseUrl)).toEqual(['http://a:1', 'http://b:1', 'http://c:1']);
    picker.markFailed('http://a:1');
    expect(picker.inListOrder().map((c) => c.baseUrl)).toEqual(['http://b:1', 'http://c:1', 'http://a:1']);
  });
});

describe('PoolPicker.ordered', () => {
  it('tries a pool that cannot serve this edge (401, 421) last for a while, and not once the served model changes', async () => {
    // Nothing listens on either: both unknown to the health checks, in the same standing.
    const picker = new PoolPicker(['http://127.0.0.1:1', 'http://127.0.0.1:2'], 't');
    const order = async () => (await picker.ordered()).map((c) => c.baseUrl);
    const before = await order();
    const said = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      picker.markMisdirected(before[0], 'model_mismatch');
      expect(await order()).toEqual([before[1], before[0]]);
      expect(said).toHaveBeenCalledTimes(1);
    } finally {
      said.mockRestore();
    }
    picker.forgetMisdirected();
    expect(await order()).toEqual(before);
  });
});

describe('a cold picker', () => {
  it('waits for its first health checks before it orders the pools: the one that answers comes before the one that does not', async () => {
    const up = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(health(0.5)));
    });
    await new Promise<void>((resolve) => up.listen(0, '127.0.0.1', resolve));
    try {
      const upUrl = `http://127.0.0.1:${(up.address() as AddressInfo).port}`;
      // Listed first: nothing listens there.
      const picker = new PoolPicker(['http://127.0.0.1:1', upUrl], 't');
      expect((await picker.ordered()).map((c) => c.baseUrl)).toEqual([upUrl, 'http://127.0.0.1:1']);
    } finally {
      await new Promise((resolve) => up.close(resolve));
    }
  });
});

describe('pools passed over', () => {
  it('are said in the log once a minute per pool and reason, not once per request', () => {
    const picker = new PoolPicker(['http://pool-a', 'http://pool-b'], 't');
    const said: string[] = [];
    const warn = console.warn;
    console.warn = (line: string) => void said.push(line);
    try {
      // A busy pool's words carry live counts: the same reason all the same.
      for (let i = 0; i < 50; i++) picker.notePassedOver('http://pool-a', `busy: the pool is at capacity (${400 + i} of its 600 tokens are reserved)`);
      picker.notePassedOver('http://pool-a', 'internal: the pool sent nothing for 2 s');
      // The request it was said for, where the caller knows it: the request log's line of that id has the rest.
      picker.notePassedOver('http://pool-b', 'busy: the pool is at capacity', 'cmpl-0123abcd');
    } finally {
      console.warn = warn;
    }
    expect(said).toHaveLength(3);
    expect(said[0]).toBe('edge: pool http://pool-a passed over before a generation\'s first token: busy: the pool is at capacity (400 of its 600 tokens are reserved) (said once a minute)');
    expect(said[2]).toBe("edge: pool http://pool-b passed over before a generation's first token: busy: the pool is at capacity (said once a minute; this time for cmpl-0123abcd)");
  });
});

describe('PoolPicker.readiness', () => {
  it('counts the pools that can take work, checking each at most once per health interval however often it is asked', async () => {
    let checks = 0;
    let ok = true;
    const pool = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      if (req.url === '/v1/info' && req.headers.authorization === 'Bearer t') return void res.end(JSON.stringify(standInInfo));
      checks++;
      res.end(JSON.stringify(health(0.2, ok)));
    });
    await new Promise<void>((resolve) => pool.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(pool.address() as AddressInfo).port}`;
      // Nothing listens on the first.
      const picker = new PoolPicker(['http://127.0.0.1:1', url], 't');
      expect(await picker.readiness()).toEqual({ healthy: 1, total: 2 });
      for (let i = 0; i < 5; i++) expect(await picker.readiness()).toEqual({ healthy: 1, total: 2 });
      expect(checks).toBe(1);
      // A pool that failed a generation, or cannot serve this edge, takes no work until heard from again.
      picker.markFailed(url);
      expect(await picker.readiness()).toEqual({ healthy: 0, total: 2 });
      const said = vi.spyOn(console, 'error').mockImplementation(() => undefined);
      try {
        picker.markMisdirected(url, 'model_mismatch');
      } finally {
        said.mockRestore();
      }
      expect((await new PoolPicker([url], 't').readiness()).healthy).toBe(1);
      // Its refusal stands until it is verified again (due VERIFY_RETRY_MS after the last ask): the mark's lapse alone no longer brings it back.
      expect(await picker.readiness()).toEqual({ healthy: 0, total: 2 });
      // Draining: its /healthz says not ok.
      ok = false;
      expect(await new PoolPicker([url], 't').readiness()).toEqual({ healthy: 0, total: 1 });
    } finally {
      await new Promise((resolve) => pool.close(resolve));
    }
  });

  it("counts a pool healthy for concurrent first probes of a cold isolate: one whose first check another probe runs is asked apart", async () => {
    let checks = 0;
    const pool = createServer((req, res) => {
      if (req.url !== '/v1/info') checks++;
      // Slow enough that the three probes overlap.
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(req.url === '/v1/info' ? standInInfo : health(0.2, true)));
      }, 50);
    });
    await new Promise<void>((resolve) => pool.listen(0, '127.0.0.1', resolve));
    try {
      const picker = new PoolPicker([`http://127.0.0.1:${(pool.address() as AddressInfo).port}`], 't');
      expect(await Promise.all([picker.readiness(), picker.readiness(), picker.readiness()])).toEqual(Array.from({ length: 3 }, () => ({ healthy: 1, total: 1 })));
      // Once heard from, the interval holds again: no check more.
      const before = checks;
      expect(await picker.readiness()).toEqual({ healthy: 1, total: 1 });
      expect(checks).toBe(before);
    } finally {
      await new Promise((resolve) => pool.close(resolve));
    }
  });

  it("does not count a pool whose verification was on its way when a generation met its refusal (review h139)", async () => {
    const pool = createServer((req, res) => {
      // Slow enough for a refusal to come while the probe asks.
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(req.url === '/v1/info' ? standInInfo : health(0.2, true)));
      }, 200);
    });
    await new Promise<void>((resolve) => pool.listen(0, '127.0.0.1', resolve));
    const said = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const url = `http://127.0.0.1:${(pool.address() as AddressInfo).port}`;
      const picker = new PoolPicker([url], 't');
      const probe = picker.readiness();
      await new Promise((r) => setTimeout(r, 50));
      picker.markMisdirected(url, 'answered 401 (it refuses SSSD_POOL_TOKEN)');
      // Its answer was asked before the refusal: it says nothing of now.
      expect(await probe).toEqual({ healthy: 0, total: 1 });
    } finally {
      said.mockRestore();
      await new Promise((resolve) => pool.close(resolve));
    }
  });

  it("counts the pools up that refuse the edge's token apart (an operator's page says \"token\", not \"down\"), and no other refusal, nor one down (review h191)", async () => {
    // A pool's own 401 (its JSON error), and a 401 that is no pool's (a proxy's login page): only the first is a token to fix.
    let up = true;
    const refusing = (body: string) =>
      createServer((req, res) => {
        if (req.url === '/v1/info') {
          res.writeHead(401, { 'content-type': 'application/json' });
          return void res.end(body);
        }
        res.writeHead(up ? 200 : 503, { 'content-type': 'application/json' });
        res.end(JSON.stringify(health(0, up)));
      });
    const pools = [refusing(JSON.stringify({ type: 'error', code: 'unauthorized', message: 'missing or wrong bearer token' })), refusing('<html>login</html>')];
    await Promise.all(pools.map((p) => new Promise<void>((resolve) => p.listen(0, '127.0.0.1', resolve))));
    const said = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const [poolUrl, proxyUrl] = pools.map((p) => `http://127.0.0.1:${(p.address() as AddressInfo).port}`);
      expect(await new PoolPicker([poolUrl, proxyUrl, 'http://127.0.0.1:1'], 't').readiness()).toEqual({ healthy: 0, total: 3, refusedToken: 1 });
      // Another model (a 421's mark) is no refused token.
      const picker = new PoolPicker([poolUrl], 't');
      expect(await picker.readiness()).toEqual({ healthy: 0, total: 1, refusedToken: 1 });
      picker.markMisdirected(poolUrl, 'model_mismatch');
      expect(await picker.readiness()).toEqual({ healthy: 0, total: 1 });
      // Down (draining, here): counted as down, whatever it refused.
      up = false;
      expect(await new PoolPicker([poolUrl], 't').readiness()).toEqual({ healthy: 0, total: 1 });
    } finally {
      said.mockRestore();
      await Promise.all(pools.map((p) => new Promise((resolve) => p.close(resolve))));
    }
  });

  it('says none of none where no pool is configured', async () => {
    expect(await new PoolPicker([], 't').readiness()).toEqual({ healthy: 0, total: 0 });
  });
});

describe('PoolPicker.readiness against a real pool: a pool counts once it said, to this edge\'s token, that it serves this edge', () => {
  const pool = realPoolForTests();
  const refusals = (): Promise<number> => metricValue(pool, 'sssd_pool_rejected_requests_total', 'reason="unauthorized"');
  /** Runs `body` with the clock `shiftMs` ahead: what a probe that long after sees. */
  async function later<T>(shiftMs: number, body: () => Promise<T>): Promise<T> {
    const now = Date.now.bind(Date);
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => now() + shiftMs);
    try {
      return await body();
    } finally {
      clock.mockRestore();
    }
  }

  it('never counts a healthy pool that refuses the token, however long it is asked, and asks it at most once per retry interval', async () => {
    const said = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const picker = new PoolPicker([pool.url], 'not-the-pool-token');
      const before = await refusals();
      // No request has failed here: the probe itself asks, with the token.
      expect(await picker.readiness()).toEqual({ healthy: 0, total: 1, refusedToken: 1 });
      for (let i = 0; i < 4; i++) expect(await picker.readiness()).toEqual({ healthy: 0, total: 1, refusedToken: 1 });
      expect(await refusals()).toBe(before + 1);
      // Past the minute a refusal once lasted: still refused, asked again.
      expect(await later(61_000, () => picker.readiness())).toEqual({ healthy: 0, total: 1, refusedToken: 1 });
      expect(await refusals()).toBe(before + 2);
      // Said in the log, as a request's refusal is.
      expect(said.mock.calls.some(([line]) => String(line).includes('it refuses SSSD_POOL_TOKEN'))).toBe(true);
    } finally {
      said.mockRestore();
    }
  });

  it('counts the pool with the right token, keeps a refusal a generation met until it is verified again, and leaves out one without the pinned weights', async () => {
    const said = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const picker = new PoolPicker([pool.url], pool.token);
      expect(await picker.readiness()).toEqual({ healthy: 1, total: 1 });
      // A 401 a generation met (its token rotated at the pool, say): out at once, and not back by the clock alone...
      picker.markMisdirected(pool.url, 'answered 401 (it refuses SSSD_POOL_TOKEN)');
      expect(await picker.readiness()).toEqual({ healthy: 0, total: 1 });
      // ...but once asked again, and it answers the token, it is back.
      expect(await later(6_000, () => picker.readiness())).toEqual({ healthy: 1, total: 1 });
      const pinned = new PoolPicker([pool.url], pool.token, 'ab'.repeat(32));
      expect(await pinned.readiness()).toEqual({ healthy: 0, total: 1 });
      expect(said.mock.calls.some(([line]) => String(line).includes('not SSSD_MODEL_SHA256'))).toBe(true);
    } finally {
      said.mockRestore();
    }
  });
});
