/**
 * `sssd soak`: random real and broken traffic at once against a running pool
 * (gpu-pool/bench/pool-soak.ts) or edge (gpu-pool/bench/edge-soak.ts),
 * checking the promises users rely on. Exits 1 when one was broken.
 * The pool's token from --token or SSSD_POOL_TOKEN; the edge's API key from
 * --key or SSSD_API_KEY.
 */
import type { Command } from 'commander';
import type { PoolInfo } from '../../shared/protocol';
import { runEdgeSoak } from '../bench/edge-soak';
import { runSoak } from '../bench/pool-soak';
import { formatSoakReport, type SoakReport } from '../bench/soak-tally';
import { CliError } from './cli-error';
import { parseNumberFlag } from './number-flags';
import { parsePoolUrl, parseUrlFlag } from './pool-url-flag';

interface SoakFlags {
  pool?: string;
  edge?: string;
  seconds: string;
  concurrency: string;
  seed: string;
  maxTokens: string;
  leaseSeconds: string;
  token?: string;
  key?: string;
  json?: boolean;
}

/** GETs JSON from a service the soak is pointed at; a clear CliError when it is not there or refuses. */
async function getJson<T>(url: string, auth: string | null, hint: string): Promise<T> {
  const res = await fetch(url, { headers: auth ? { authorization: `Bearer ${auth}` } : {} }).catch((err: Error) => {
    throw new CliError(`soak: cannot reach ${url}: ${err.message}`);
  });
  if (!res.ok) throw new CliError(`soak: ${url} answered ${res.status}${res.status === 401 ? ` (${hint})` : ''}`);
  return (await res.json()) as T;
}

export function register(program: Command): void {
  program
    .command('soak')
    .description(
      "soak a running pool's or edge's API with random real and broken traffic at once; exits 1 if a promise broke (a 5xx but busy, a 200 for a broken request, a stream ending in error, speculation changing the output, work or a key's slots left held)",
    )
    .option('--pool <url>', 'a pool base URL, e.g. http://127.0.0.1:8788')
    .option('--edge <url>', "an edge base URL, e.g. http://127.0.0.1:8787 (its OpenAI-compatible API)")
    .option('--seconds <n>', 'how long to send', '30')
    .option('--concurrency <n>', 'clients at once', '16')
    .option('--seed <n>', 'picks the requests (the same seed, the same requests)', '1')
    .option('--max-tokens <n>', 'longest generation asked for', '120')
    .option('--lease-seconds <n>', "with --edge: the edge's in-flight lease (SSSD_CONCURRENCY_LEASE_SECONDS), how long the key may stay refused after the soak", '5')
    .option('--token <token>', "with --pool: the pool's bearer token (default $SSSD_POOL_TOKEN)")
    .option('--key <key>', 'with --edge: an API key (default $SSSD_API_KEY)')
    .option('--json', 'print the report as JSON')
    .action(async (flags: SoakFlags) => {
      if ((flags.pool === undefined) === (flags.edge === undefined)) throw new CliError('soak: give one of --pool URL or --edge URL');
      // The other mode's credential was dropped without a word, and the soak ran with whatever the environment held (review h166).
      if (flags.pool !== undefined && flags.key !== undefined) throw new CliError("soak: --key is the edge's API key (with --edge); a pool takes its token from --token or SSSD_POOL_TOKEN");
      if (flags.edge !== undefined && flags.token !== undefined) throw new CliError("soak: --token is the pool's bearer token (with --pool); an edge takes an API key from --key or SSSD_API_KEY");
      const seconds = parseNumberFlag('--seconds', flags.seconds, { min: 0, minExclusive: true })!;
      const concurrency = parseNumberFlag('--concurrency', flags.concurrency, { integer: true, min: 1, max: 4096 })!;
      const seed = parseNumberFlag('--seed', flags.seed, { integer: true, min: 0 })!;
      const maxTokens = parseNumberFlag('--max-tokens', flags.maxTokens, { integer: true, min: 1 })!;
      const leaseSeconds = parseNumberFlag('--lease-seconds', flags.leaseSeconds, { min: 0 })!;
      let report: SoakReport;
      // Ctrl-C: no new requests, the ones in flight finish (one silent for a minute, SOAK_IDLE_MS, is cut as hung), then the
      // soak's closing checks, and the report so far is printed.
      // A second one quits at once.
      const stop = new AbortController();
      const onInterrupt = (): void => {
        if (stop.signal.aborted) process.exit(130);
        process.stderr.write('\nsoak: interrupted; the requests in flight finish, then the report so far (Ctrl-C again to quit at once)\n');
        stop.abort();
      };
      process.on('SIGINT', onInterrupt);
      try {
        if (flags.pool !== undefined) {
          const poolUrl = parsePoolUrl(flags.pool);
          const token = flags.token ?? process.env.SSSD_POOL_TOKEN ?? null;
          const info = await getJson<PoolInfo>(`${poolUrl}/v1/info`, token, 'set SSSD_POOL_TOKEN or --token');
          report = await runSoak({ poolUrl, token, seconds, concurrency, seed, maxTokens, vocabSize: info.model.vocabSize, contextLength: info.model.contextLength, stop: stop.signal });
        } else {
          const edgeUrl = parseUrlFlag('--edge', flags.edge!);
          const key = flags.key ?? process.env.SSSD_API_KEY;
          if (!key) throw new CliError('soak: --edge needs an API key: --key or SSSD_API_KEY');
          const models = await getJson<{ data: Array<{ id: string }> }>(`${edgeUrl}/v1/models`, key, 'check --key or SSSD_API_KEY');
          const model = models.data[0]?.id;
          if (!model) throw new CliError(`soak: ${edgeUrl}/v1/models lists no model`);
          report = await runEdgeSoak({ edgeUrl, key, seconds, concurrency, seed, maxTokens, model, leaseSeconds, stop: stop.signal });
        }
      } finally {
        process.off('SIGINT', onInterrupt);
      }
      process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatSoakReport(report)}\n`);
      // A violation is the finding, interrupted or not; an interrupted clean run is not a full one.
      if (report.violationCount > 0) process.exitCode = 1;
      else if (stop.signal.aborted) process.exitCode = 130;
    });
}
