import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { edgeConfig, INT_VARS, invalidEdgeVars } from '../../edge/edge-config';
import type { EdgeEnv } from '../../edge/env';
import { repoRoot } from '../support/shared-data';

const env = (vars: Record<string, string>): EdgeEnv => ({ SSSD_KV: {} as KVNamespace, SSSD_POOL_TOKEN: 't', SSSD_POOL_URLS: 'http://127.0.0.1:8788', ...vars });

afterEach(() => vi.restoreAllMocks());

describe('edge config', () => {
  it('reads the vars, and a bad one takes its default with a warning, once per isolate', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const e = env({ SSSD_DEFAULT_CONCURRENCY: '3', SSSD_DEFAULT_RPM: '1e9', SSSD_EDGE_TRIE_NODES: '12.5' });
    const config = edgeConfig(e);
    expect(config.defaultConcurrency).toBe(3);
    expect(config.defaultRpm).toBe(600);
    expect(config.edgeTrieNodes).toBe(128);
    expect(edgeConfig(e)).toBe(config);
    expect(warn.mock.calls.map((c) => c[0])).toEqual([
      'edge: SSSD_EDGE_TRIE_NODES="12.5" is not an integer in [0, 4096]; using 128',
      'edge: SSSD_DEFAULT_RPM="1e9" is not an integer in [1, 1000000]; using 600',
    ]);
  });

  it('takes the pools\' URLs without trailing slashes, and leaves out one that is no http(s) URL, saying so', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const config = edgeConfig(env({ SSSD_POOL_URLS: ' http://127.0.0.1:8788/ ,notaurl,http://[::1:9101, https://pool.example/base,ftp://x' }));
    expect(config.poolUrls).toEqual(['http://127.0.0.1:8788', 'https://pool.example/base']);
    expect(warn).toHaveBeenCalledTimes(3);
    expect(warn.mock.calls[0][0]).toMatch(/"notaurl" is not an http\(s\) URL/);
  });

  it('says once per isolate of each plain-http pool off the machine that the token and prompts would cross in clear, and not of loopback ones', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const loopback = ['http://127.0.0.1:8788', 'http://127.3.2.1:9000', 'http://localhost:8788', 'http://[::1]:8788', 'https://pool.example'];
    const e = env({ SSSD_POOL_URLS: [...loopback, 'http://10.0.0.1:8788', 'http://pool-2.example/v'].join(',') });
    expect(edgeConfig(e).poolUrls).toHaveLength(7);
    edgeConfig(e);
    expect(warn.mock.calls.map((c) => c[0])).toEqual([
      expect.stringMatching(/^edge: pool http:\/\/10\.0\.0\.1:8788 is plain http:\/\/ off this machine: the pool token and the prompts cross the network in clear; .*docs\/deploy\.md/),
      expect.stringMatching(/^edge: pool http:\/\/pool-2\.example\/v is plain http:\/\//),
    ]);
  });

  it("says once that a background deadline leaves a run's end too little of Workers' 30 s waitUntil, and not at the default (review h151)", () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    for (const seconds of ['25', '1']) edgeConfig(env({ SSSD_BACKGROUND_DEADLINE_SECONDS: seconds }));
    expect(warn).not.toHaveBeenCalled();
    const e = env({ SSSD_BACKGROUND_DEADLINE_SECONDS: '600' });
    expect(edgeConfig(e).backgroundDeadlineMs).toBe(600_000);
    edgeConfig(e);
    expect(warn.mock.calls.map((c) => c[0])).toEqual([expect.stringMatching(/^edge: SSSD_BACKGROUND_DEADLINE_SECONDS=600 leaves a background run's end less than 5 s of Workers' 30 s waitUntil/)]);
  });

  it("reads a background run's heartbeat interval, 5 s by default, and takes none under KV's second a key", () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    expect(edgeConfig(env({})).backgroundHeartbeatMs).toBe(5_000);
    expect(edgeConfig(env({ SSSD_BACKGROUND_HEARTBEAT_MS: '2000' })).backgroundHeartbeatMs).toBe(2_000);
    expect(warn).not.toHaveBeenCalled();
    expect(edgeConfig(env({ SSSD_BACKGROUND_HEARTBEAT_MS: '500' })).backgroundHeartbeatMs).toBe(5_000);
    expect(warn.mock.calls.map((c) => c[0])).toEqual(['edge: SSSD_BACKGROUND_HEARTBEAT_MS="500" is not an integer in [1000, 60000]; using 5000']);
  });

  it('says once that the pool token is missing (every request would be a 503, and nothing said why)', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const e: EdgeEnv = { SSSD_KV: {} as KVNamespace, SSSD_POOL_URLS: 'http://127.0.0.1:8788' };
    edgeConfig(e);
    edgeConfig(e);
    expect(warn.mock.calls.map((c) => c[0])).toEqual([expect.stringMatching(/SSSD_POOL_TOKEN is not set .*pools will refuse this edge/)]);
  });

  it('says of a pool token with spaces or non-ASCII characters that no pool will take it, without printing it', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    edgeConfig(env({ SSSD_POOL_TOKEN: 'tök-secret' }));
    expect(warn.mock.calls.map((c) => c[0])).toEqual([expect.stringMatching(/SSSD_POOL_TOKEN holds .*printable ASCII.*pools will refuse this edge/)]);
    expect(String(warn.mock.calls[0][0])).not.toContain('tök');
  });

  it('reads vars that wrangler.toml gives as numbers, booleans or a list as the text they stand for, and says so of a pool list with no pool', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    // `SSSD_DEFAULT_RPM = 60` in [vars] is a TOML number: the Worker sees 60, not "60".
    const typed = { SSSD_KV: {} as KVNamespace, SSSD_POOL_TOKEN: 't', SSSD_DEFAULT_RPM: 60, SSSD_DEFAULT_CONCURRENCY: 4, SSSD_BENCH_ROUTES: true, SSSD_POOL_URLS: ['https://pool-1.example', 'https://pool-2.example/'] };
    const config = edgeConfig(typed as unknown as EdgeEnv);
    expect(config).toMatchObject({ defaultRpm: 60, defaultConcurrency: 4, benchRoutes: true, poolUrls: ['https://pool-1.example', 'https://pool-2.example'] });
    expect(warn).not.toHaveBeenCalled();
    // A table where a number goes: its default, said; nothing thrown.
    const odd = edgeConfig({ SSSD_KV: {} as KVNamespace, SSSD_POOL_TOKEN: 't', SSSD_DEFAULT_RPM: { per: 60 }, SSSD_POOL_URLS: '' } as unknown as EdgeEnv);
    expect(odd.defaultRpm).toBe(600);
    expect(warn.mock.calls.map((c) => c[0])).toEqual([
      'edge: SSSD_DEFAULT_RPM={"per":60} is not an integer in [1, 1000000]; using 600',
      expect.stringMatching(/SSSD_POOL_URLS names no pool .*every generation will be a 503/),
    ]);
  });

  it("waits 20 ms for a user's cache unless told otherwise, and 0 means not at all", () => {
    expect(edgeConfig(env({})).userCacheWaitMs).toBe(20);
    expect(edgeConfig(env({ SSSD_USER_CACHE_WAIT_MS: '0' })).userCacheWaitMs).toBe(0);
    expect(invalidEdgeVars({ SSSD_USER_CACHE_WAIT_MS: '-1' }).map((p) => p.message)).toEqual(['SSSD_USER_CACHE_WAIT_MS="-1" is not an integer in [0, 10000]']);
  });

  it('reads integers written in decimal digits only, as the command line does', () => {
    expect(edgeConfig(env({ SSSD_MAX_BODY_BYTES: ' 1000000 ' })).maxBodyBytes).toBe(1_000_000);
    for (const written of ['1e6', '0x100000', '0b1', '1_000_000']) {
      expect(invalidEdgeVars({ SSSD_MAX_BODY_BYTES: written }).map((p) => p.message)).toEqual([expect.stringContaining(`SSSD_MAX_BODY_BYTES="${written}" is not an integer`)]);
    }
  });

  it('keeps a lease at least three of its renewals long', () => {
    expect(invalidEdgeVars({ SSSD_CONCURRENCY_LEASE_SECONDS: '1' }).map((p) => p.message)).toEqual(['SSSD_CONCURRENCY_LEASE_SECONDS="1" is not an integer in [3, 3600]']);
  });

  it('takes bench routes on with 1 or true, and says so of anything else rather than leave them off quietly', () => {
    expect(edgeConfig(env({ SSSD_BENCH_ROUTES: 'true' })).benchRoutes).toBe(true);
    expect(invalidEdgeVars({ SSSD_BENCH_ROUTES: '0' })).toEqual([]);
    expect(invalidEdgeVars({ SSSD_BENCH_ROUTES: 'yes' }).map((p) => p.message)).toEqual(['SSSD_BENCH_ROUTES="yes" is not one of 0, 1, true, false']);
    // JSON as a grammar is the operator's switch, off unless set.
    expect(edgeConfig(env({})).jsonGrammar).toBe(false);
    expect(edgeConfig(env({ SSSD_JSON_GRAMMAR: '1' })).jsonGrammar).toBe(true);
    expect(invalidEdgeVars({ SSSD_JSON_GRAMMAR: 'on' }).map((p) => p.message)).toEqual(['SSSD_JSON_GRAMMAR="on" is not one of 0, 1, true, false']);
  });

  it('writes the request log unless told 0 or false, and says so of anything else (leaving it on)', () => {
    expect(edgeConfig(env({})).requestLog).toBe(true);
    expect(edgeConfig(env({ SSSD_REQUEST_LOG: '0' })).requestLog).toBe(false);
    expect(edgeConfig(env({ SSSD_REQUEST_LOG: 'false' })).requestLog).toBe(false);
    expect(invalidEdgeVars({ SSSD_REQUEST_LOG: 'off' })).toEqual([{ message: 'SSSD_REQUEST_LOG="off" is not one of 0, 1, true, false', fallback: 1 }]);
  });

  it('pins the served weights by a SHA-256, and says so of anything else', () => {
    expect(edgeConfig(env({ SSSD_MODEL_SHA256: 'AB'.repeat(32) })).modelSha256).toBe('ab'.repeat(32));
    expect(edgeConfig(env({})).modelSha256).toBeNull();
    expect(invalidEdgeVars({ SSSD_MODEL_SHA256: 'b0a507e7' }).map((p) => p.message)).toEqual(['SSSD_MODEL_SHA256="b0a507e7" is not a SHA-256 in hex (64 digits)']);
  });

  it('has nothing to say of vars that are unset, empty or in range', () => {
    expect(invalidEdgeVars({ SSSD_DEFAULT_RPM: '', SSSD_CONCURRENCY_LEASE_SECONDS: '30', SSSD_POOL_URLS: 'not a number' })).toEqual([]);
  });
});

describe("docs/edge.md's table of the Worker's integer vars", () => {
  it('gives each var its default and range as the edge takes them', () => {
    const doc = readFileSync(path.join(repoRoot, 'docs/edge.md'), 'utf8');
    const rows = new Map<string, { fallback: number; min: number; max: number }>();
    const figure = (text: string): number => Number(text.replaceAll(',', ''));
    for (const [, name, fallback, min, max] of doc.matchAll(/^\| `(SSSD_\w+)` \| ([\d,]+) \| ([\d,]+) to ([\d,]+) \|/gm)) {
      rows.set(name, { fallback: figure(fallback), min: figure(min), max: figure(max) });
    }
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(Object.entries(INT_VARS).map(([name, { fallback, min, max }]) => [name, { fallback, min, max }])));
  });
});
