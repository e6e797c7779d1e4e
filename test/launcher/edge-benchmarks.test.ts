// The launcher benchmarks as a user runs them (`npm run bench:edge-cpu`,
// `bench:edge-delay`, `bench:sampling`, `bench:structured`, `bench:metrics`): real processes (pool, wrangler dev),
// small sizes, the JSON output checked; bad flags fail fast with a clear error.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../../launcher/stack';
import { compiledNodeArgs } from '../support/compiled-cli';

const run = promisify(execFile);
const tsx = path.join(repoRoot, 'node_modules/.bin/tsx');

/**
 * `npm run bench:…`'s file with ARGS. Fifteen runs: the file as compiled once (compiled-cli.ts), each a node start
 * rather than tsx's two with its loader; through tsx itself, as the script runs it, where `viaTsx`.
 */
async function bench(script: string, args: string[], { viaTsx = false } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const [file, argv] = viaTsx ? [tsx, [path.join(repoRoot, 'launcher', script)]] : [process.execPath, compiledNodeArgs(`launcher/${script}`)];
  try {
    const { stdout, stderr } = await run(file, [...argv, ...args], { cwd: repoRoot, maxBuffer: 1 << 24 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('bench-edge-cpu', () => {
  it("times each part of the edge's per-request work inside workerd", async () => {
    const r = await bench('bench-edge-cpu.ts', ['--requests', '2', '--history', '3', '--repeat', '200', '--step-tokens', '3', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { users: number; history: number; repeat: number; stepTokens: number; rows: Array<Record<string, number>>; mean: Record<string, number> };
    expect(out).toMatchObject({ users: 2, history: 3, repeat: 200, stepTokens: 3 });
    for (const row of out.rows) {
      // Three stories of history make a cache far past its 32-byte header, and a trie for the prompt.
      expect(row.cacheBytes).toBeGreaterThan(1024);
      expect(row.promptTokens).toBeGreaterThan(0);
      for (const part of ['tokenize', 'cacheDecode', 'cacheCheck', 'trieDraft', 'cacheMerge', 'poolEvents', 'poolEventsNdjson']) expect(row[part]).toBeGreaterThanOrEqual(0);
      expect(row.total).toBeCloseTo(row.tokenize + row.cacheDecode + row.trieDraft + row.cacheMerge + row.poolEvents, 6);
      // The story's output read back a step of three tokens at a time, and `done`.
      expect(row.poolEventCount).toBeGreaterThan(10);
    }
    // A merge of a ~60 KB cache takes well over the clock's step over 200 repeats: the clock moved.
    expect(out.mean.cacheMerge).toBeGreaterThan(0);
  });

  it('refuses bad flags before starting anything', async () => {
    // Three runs of their own, at once: each is a tsx start that mostly waits on itself.
    const [r, unknown, help] = await Promise.all([
      bench('bench-edge-cpu.ts', ['--repeat', '0']),
      bench('bench-edge-cpu.ts', ['--repeats', '5']),
      bench('bench-edge-cpu.ts', ['--help'], { viaTsx: true }),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('error: --repeat must be an integer >= 1 and <= 100000, not "0"');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/error: Unknown option '--repeats'/);
    // --help, as every sssd command takes it: the flags with their defaults, exit 0.
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^npm run bench:edge-cpu -- \[options\]/);
    expect(help.stdout).toContain('--repeat <value>  (default');
  });
});

describe('bench-edge-delay', () => {
  it('serves the same requests through an undelayed and a delayed link', async () => {
    const delayMs = 40;
    const r = await bench('bench-edge-delay.ts', ['--requests', '2', '--max-tokens', '16', '--delay', String(delayMs), '--json']);
    expect(r.code).toBe(0);
    type Arm = { requests: number; medianTokens: number; medianFirstTokenMs: number; medianTokensPerSAfterFirst: number };
    const out = JSON.parse(r.stdout) as { delayMs: number; noDelay: Arm; delayed: Arm; poolStreamOnly: Record<string, number> };
    expect(out.delayMs).toBe(delayMs);
    for (const arm of [out.noDelay, out.delayed]) {
      expect(arm.requests).toBe(2);
      expect(arm.medianTokens).toBeGreaterThan(0);
      expect(arm.medianTokens).toBeLessThanOrEqual(16);
    }
    // The request and the first tokens each cross the delayed link once.
    expect(out.delayed.medianFirstTokenMs).toBeGreaterThanOrEqual(2 * delayMs - 2);
    expect(out.poolStreamOnly.noDelayTokensPerSAfterFirst).toBeGreaterThan(0);
    expect(out.poolStreamOnly.delayedTokensPerSAfterFirst).toBeGreaterThan(0);
  });

  it('refuses bad flags before starting anything', async () => {
    const cases = [
      [['--delay=-5'], /error: --delay must be a number >= 0 and <= 10000, not "-5"/],
      [['--requests', '100000'], /error: --requests must be at most \d+ \(the workload's prompts\), not 100000/],
      [['--speculation', 'sssd'], /error: --speculation must be one of auto, off, not "sssd"/],
    ] as const;
    // Each a run of its own, all at once.
    const runs = await Promise.all(cases.map(([args]) => bench('bench-edge-delay.ts', [...args])));
    for (const [i, [, message]] of cases.entries()) {
      expect(runs[i].code).toBe(2);
      expect(runs[i].stderr).toMatch(message);
    }
  });
});

describe('bench-sampling', () => {
  it("times the pool's seeded sampler at each temperature and top-p", async () => {
    const r = await bench('bench-sampling.ts', ['--prompts', '1', '--tokens', '12', '--rounds', '1']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.map((l) => l.split(':')[0])).toEqual(['T=1 top_p=1', 'T=1 top_p=0.95', 'T=0.7 top_p=1', 'T=0.7 top_p=0.95']);
    for (const l of lines) expect(Number(/: ([\d.]+) µs per sample/.exec(l)?.[1])).toBeGreaterThan(0);
  });

  it('refuses bad flags with a clear error', async () => {
    const r = await bench('bench-sampling.ts', ['--tokens', 'many']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('error: --tokens must be an integer >= 1 and <= 4096, not "many"');
  });
});

describe('bench-metrics', () => {
  it("times a step's metric updates on PoolMetrics and on prom-client straight, and a scrape, with --metrics-tenants' most too", async () => {
    const r = await bench('bench-metrics.ts', ['--steps', '2000', '--passes', '2', '--rows', '3', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { rows: number; steps: number; passes: number; variants: { name: string; fastestUs: number; minorGcs: number[] }[]; scrapeMs: number; fullScrapeMs: number; maxTenants: number };
    expect(out).toMatchObject({ rows: 3, steps: 2000, passes: 2 });
    expect(out.variants.map((v) => v.name)).toEqual(['PoolMetrics', 'prom-client calls']);
    for (const v of out.variants) {
      expect(v.fastestUs).toBeGreaterThan(0);
      expect(v.minorGcs).toHaveLength(2);
    }
    expect(out.scrapeMs).toBeGreaterThan(0);
    expect(out.fullScrapeMs).toBeGreaterThan(0);
    expect(out.maxTenants).toBe(1024);
  });

  it('refuses bad flags with a clear error', async () => {
    const r = await bench('bench-metrics.ts', ['--rows', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('error: --rows must be an integer >= 1 and <= 256, not "0"');
  });
});

describe('bench-structured', () => {
  it("times a structured output's costs at each vocabulary size, on a wider vocabulary made from the corpus", async () => {
    const r = await bench('bench-structured.ts', ['--vocab', '512,2000', '--states', '5', '--rounds', '1']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.filter((l) => /^\d+ ids: the tokens' texts built in [\d.]+ ms/.test(l)).map((l) => l.split(' ')[0])).toEqual(['512', '2000']);
    // Every language walked at each size, each walk only through ids its masks allowed (a walk that left the language throws).
    const walks = lines.filter((l) => /^ {2}(regex|JSON schema|grammar)/.test(l));
    expect(walks).toHaveLength(6);
    for (const l of walks) expect(Number(/\((\d+) states over 1 walks/.exec(l)?.[1])).toBeGreaterThan(0);
  });

  it("walks babyllama105's tokenizer, and a vocabulary without byte fallback, as the pool compiles for them: what needs '{' refused", async () => {
    const r = await bench('bench-structured.ts', ['--vocab', '105,2000', '--no-fallback', '--states', '5', '--rounds', '1']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.filter((l) => / ids: /.test(l)).map((l) => /\((.*)\)$/.exec(l)?.[1])).toEqual([
      'median of 1; automata cut to the printable characters',
      'median of 1; automata cut to the printable characters, some printed only inside longer pieces',
    ]);
    // The sentence regex is walked on both; the schema and json.gbnf need '{', which neither prints.
    expect(lines.filter((l) => /^ {2}regex: .*\((\d+) states over 1 walks/.test(l))).toHaveLength(2);
    expect(lines.filter((l) => /^ {2}(JSON schema|grammar).*: refused \(.*\("\{"\)\)$/.test(l))).toHaveLength(4);
  });

  it('refuses a vocabulary wider than the corpus gives, with a clear error', async () => {
    const r = await bench('bench-structured.ts', ['--vocab', '200000']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/error: --vocab 200000: the corpus gives pieces for \d+ ids only/);
  });
});
