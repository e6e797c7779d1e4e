import { defineConfig } from 'vitest/config';

// Two cores in CI: run files in forks, at most two at a time, and give the
// integration suites (real pool process, wrangler dev) room to start.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
    // A test that runs no assertion fails: a check under a condition that never holds is no check.
    expect: { requireAssertions: true },
  },
});
