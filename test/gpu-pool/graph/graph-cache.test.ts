import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { defaultGraphCacheDir, poolCacheDir } from '../../../gpu-pool/graph/graph-cache';
import { repoRoot } from '../../support/shared-data';

afterEach(() => vi.unstubAllEnvs());

describe("the pool's cache folder", () => {
  it('is the repository\'s .cache wherever the pool runs from, or SSSD_CACHE_DIR, graphs and calibration alike', () => {
    vi.stubEnv('SSSD_CACHE_DIR', undefined as unknown as string);
    delete process.env.SSSD_CACHE_DIR;
    expect(poolCacheDir()).toBe(path.join(repoRoot, '.cache'));
    expect(defaultGraphCacheDir()).toBe(path.join(repoRoot, '.cache', 'graphs'));
    vi.stubEnv('SSSD_CACHE_DIR', '/var/cache/sssd');
    expect(poolCacheDir()).toBe('/var/cache/sssd');
    expect(defaultGraphCacheDir()).toBe('/var/cache/sssd/graphs');
  });
});
