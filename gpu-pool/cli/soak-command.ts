/**
 * `sssd soak`: a soak of a running pool's HTTP API (gpu-pool/bench/pool-soak.ts):
 * random real and broken traffic at once, checking the promises users rely on.
 * Exits 1 when one was broken. Token from --token or SSSD_POOL_TOKEN.
 */
import type { Command } from 'commander';
import type { PoolInfo } from '../../shared/protocol';
import { formatSoakReport, runSoak } from '../bench/pool-soak';
import { CliError } from './cli-error';
import { parsePoolUrl } from './pool-url-flag';
import { parseNumberFlag } from './number-flags';

interface SoakFlags {
  pool: string;
  seconds: string;
  concurrency: string;
  seed: string;
  maxTokens: string;
  token?: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('soak')
    .description("soak a running pool's API with random real and broken traffic at once; exits 1 if a promise broke (a 5xx, a 200 for a broken request, a stream that ended in error, speculation changing the output, a generation left running)")
    .requiredOption('--pool <url>', 'pool base URL, e.g. http://127.0.0.1:8788')
    .option('--seconds <n>', 'how long to send', '30')
    .option('--concurrency <n>', 'clients at once', '16')
    .option('--seed <n>', 'picks the requests (the same seed, the same requests)', '1')
    .option('--max-tokens <n>', 'longest generation asked for', '120')
    .option('--token <token>', 'bearer token (default $SSSD_POOL_TOKEN)')
    .option('--json', 'print the report as JSON')
    .action(async (flags: SoakFlags) => {
      const seconds = parseNumberFlag('--seconds', flags.seconds, { min: 0, minExclusive: true })!;
      const concurrency = parseNumberFlag('--concurrency', flags.concurrency, { integer: true, min: 1, max: 4096 })!;
      const seed = parseNumberFlag('--seed', flags.seed, { integer: true, min: 0 })!;
      const maxTokens = parseNumberFlag('--max-tokens', flags.maxTokens, { integer: true, min: 1 })!;
      const poolUrl = parsePoolUrl(flags.pool);
      const token = flags.token ?? process.env.SSSD_POOL_TOKEN ?? null;
      const info = await fetch(`${poolUrl}/v1/info`, { headers: token ? { authorization: `Bearer ${token}` } : {} }).then(
        async (res) => {
          if (!res.ok) throw new CliError(`soak: ${poolUrl}/v1/info answered ${res.status}${res.status === 401 ? ' (set SSSD_POOL_TOKEN or --token)' : ''}`);
          return (await res.json()) as PoolInfo;
        },
        (err: Error) => {
          throw new CliError(`soak: cannot reach ${poolUrl}: ${err.message}`);
        },
      );
      const report = await runSoak({ poolUrl, token, seconds, concurrency, seed, maxTokens, vocabSize: info.model.vocabSize, contextLength: info.model.contextLength });
      process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatSoakReport(report)}\n`);
      if (report.violationCount > 0) process.exitCode = 1;
    });
}
