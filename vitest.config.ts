import { defineConfig } from 'vitest/config';

// Two cores in CI: run files in forks, three at a time, and give the
// integration suites (real pool process, wrangler dev) room to start. Three,
// not two: the slowest files mostly wait (on a stall window, a heartbeat, a
// process's start; 20-60% of a core over their run, review h193), and a
// third fork runs another file in that time.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // bin/sssd.mjs compiled once for the tests that start it many times (test/support/compiled-cli.ts).
    globalSetup: ['test/support/compiled-cli.setup.ts'],
    pool: 'forks',
    poolOptions: { forks: { maxForks: 3, minForks: 1 } },
    // A developer's exported SSSD_METRICS_TOKEN would reach every pool the tests start and lock their scrapes out:
    // empty is unset to the pool; a test that wants one passes it (metrics-token.test.ts).
    env: { SSSD_METRICS_TOKEN: '' },
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
    // A test that runs no assertion fails: a check under a condition that never holds is no check.
    expect: { requireAssertions: true },
  },
});
