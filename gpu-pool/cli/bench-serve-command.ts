/**
 * `sssd bench-serve`: the serving benchmark (gpu-pool/bench/bench-serve.ts)
 * against a running pool. Token from --token or SSSD_POOL_TOKEN.
 */
import { Option, type Command } from 'commander';
import { benchServe, describeInterruption, describeLevelRequests, formatFailures, formatPhaseTable, formatTable, parseMethods, type MethodResult } from '../bench/bench-serve';
import { loadServedWorkload } from '../bench/workload';
import { describeMeasuredPool, type MeasuredPool } from '../bench/measured-pool';
import { readFile } from 'node:fs/promises';
import { CliError, unreadableFile } from './cli-error';
import { jsonSchemaRegex, SchemaError } from '../../shared/structured/json-schema-regex';
import { parsePoolUrl } from './pool-url-flag';
import { parseNumberFlag, parseNumberList } from './number-flags';

interface BenchServeFlags {
  pool: string;
  workload: string;
  concurrency: string;
  methods: string;
  limit: string;
  repeat: string;
  json?: boolean;
  phases?: boolean;
  token?: string;
  datastore: boolean;
  edge: boolean;
  promptPrefix?: string;
  jsonSchema?: string;
  events: 'frames' | 'ndjson';
}

export function register(program: Command): void {
  program
    .command('bench-serve')
    .description('serving benchmark: replay a workload against a running pool at several concurrencies and methods')
    .requiredOption('--pool <url>', 'pool base URL, e.g. http://127.0.0.1:8788')
    .requiredOption('--workload <file>', 'workload JSONL, one request a line (fields below)')
    .option('--concurrency <list>', 'generations in flight, comma-separated', '1,8,32,128')
    .option('--methods <list>', 'speculation methods, comma-separated (off, pld, context, sssd)', 'off,pld,sssd')
    .option('--limit <n>', 'requests per concurrency level, at most the workload\'s (at least 4 × the concurrency, cycling through the workload for that)', '96')
    .option('--repeat <n>', 'measured replays of each level; ratios to off are also shown per replay (their range)', '1')
    .option('--no-datastore', "do not use the pool's global datastore for sssd")
    .option('--no-edge', 'do not play the edge for sssd (no per-user caches, no shipped tries)')
    .option('--json-schema <schema>', 'every request a structured output: its reply JSON valid under this schema (JSON text, or @FILE), sent to the pool as the regex the edge writes it into')
    .option('--prompt-prefix <text>', "text put before every workload prompt: a system prompt all requests share (what the pool's prefix cache is for)")
    .addOption(new Option('--events <form>', "the form of the pool's event streams: frames (binary, as the edge asks) or ndjson").choices(['frames', 'ndjson']).default('frames'))
    .option('--token <token>', 'bearer token (default $SSSD_POOL_TOKEN)')
    .option('--json', 'print the report as JSON: the pool measured, the workload, a result per level and method')
    .option('--phases', "also print where the pool's time went per output token, by scheduler phase (from its /metrics)")
    .addHelpText('after', WORKLOAD_HELP)
    .action(async (flags: BenchServeFlags) => {
      // A level twice compared its second run with the first's `off`: once each, in the order given.
      const concurrencies = [...new Set(parseNumberList('--concurrency', flags.concurrency, { integer: true, min: 1 }))];
      const limit = parseNumberFlag('--limit', flags.limit, { integer: true, min: 1 })!;
      const repeats = parseNumberFlag('--repeat', flags.repeat, { integer: true, min: 1 })!;
      let methods;
      try {
        methods = parseMethods(flags.methods);
      } catch (err) {
        throw new CliError((err as Error).message);
      }
      const poolUrl = parsePoolUrl(flags.pool);
      const loaded = await loadServedWorkload(flags.workload).catch((err: Error) => {
        throw new CliError(err.message);
      });
      const prefix = flags.promptPrefix;
      const workload = prefix ? loaded.map((r) => ({ ...r, prompt: `${prefix}${r.prompt}` })) : loaded;
      const t0 = performance.now();
      // Ctrl-C prints the levels already measured (a long run's first levels are not lost), then exits 130.
      let finished: readonly MethodResult[] = [];
      // Which pool the figures are of: known before the first request, so in every report.
      let pool: MeasuredPool | null = null;
      const printResults = (results: readonly MethodResult[]): void => {
        if (flags.json) {
          const report: BenchServeReport = { pool, workload: { file: flags.workload, requests: workload.length }, results };
          process.stdout.write(JSON.stringify(report, null, 2) + '\n');
        } else {
          process.stdout.write(formatTable(results) + '\n');
          if (flags.phases) process.stdout.write(formatPhaseTable(results) + '\n');
          const levels = [...new Set(results.map((r) => r.concurrency))];
          process.stdout.write(`(${describeLevelRequests(workload.length, limit, levels)}; ${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
          if (pool) process.stdout.write(`${describeMeasuredPool(pool)}\n`);
        }
      };
      const onInterrupt = (): void => {
        const levels = new Set(finished.map((r) => r.concurrency));
        process.stderr.write(`\n${describeInterruption([...levels])}\n`);
        if (finished.length > 0) printResults(finished);
        process.exit(130);
      };
      process.once('SIGINT', onInterrupt);
      const results = await benchServe({
        poolUrl,
        token: flags.token ?? process.env.SSSD_POOL_TOKEN ?? null,
        metricsToken: process.env.SSSD_METRICS_TOKEN?.trim() || null,
        workload,
        concurrencies,
        methods,
        limit,
        repeats,
        useDatastore: flags.datastore,
        edgeTries: flags.edge,
        events: flags.events,
        ...(flags.jsonSchema !== undefined ? { regex: await schemaRegex(flags.jsonSchema) } : {}),
        phases: flags.phases === true || flags.json === true,
        progress: !flags.json && process.stderr.isTTY === true,
        onPool: (measured) => (pool = measured),
        onLevel: (results) => {
          finished = [...results];
          // A line per level on stderr: a long run shows where it is, where no progress bar is drawn.
          const level = results[results.length - 1].concurrency;
          process.stderr.write(`bench-serve: concurrency ${level} measured (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
        },
        onWarmDraftCache: () =>
          process.stderr.write("bench-serve: warning: the pool's draft cache could not be emptied before a replay (a pool without DELETE /v1/draft-cache): `sssd` drafts dearer in a first replay than in the later ones\n"),
      })
        .catch((err: Error) => {
          throw new CliError(`bench-serve: ${err.message}`);
        })
        .finally(() => process.off('SIGINT', onInterrupt));
      printResults(results);
      // Figures with failures in them are not a clean run: say what failed, and exit 1.
      const failures = formatFailures(results);
      if (failures) throw new CliError(`requests failed (no ratio for their levels):\n${failures}`, 1);
    });
}

/** `--json`'s output: the pool measured (null only where none answered), the workload, and a result per level and method. */
export interface BenchServeReport {
  pool: MeasuredPool | null;
  workload: { file: string; requests: number };
  results: readonly MethodResult[];
}

const WORKLOAD_HELP = `
Workload lines (JSON objects):
  user, prompt, max_tokens     required
  temperature                  required: 0 is greedy (OpenAI's default, for a
                               request that names none, is 1)
  top_p, seed                  optional: top_p 1, a seed drawn by the pool
  stop, top_k, min_p, frequency_penalty, presence_penalty, repetition_penalty
                               optional, as OpenAI and vLLM read them, sent to
                               the pool (refused before the run where it lists
                               no such feature)
  arrival_s                    read and not used: each level keeps --concurrency
                               requests in flight, the next sent as one ends (a
                               closed loop), so bursts are not replayed
Any other field is refused, by its file and line, before the run.

The report ends with the pool measured (its /v1/info): model, context,
tokenizer and weights hashes, execution provider, datastore and admission
limits; --json has them as \`pool\`.`;

/** The regex of `--json-schema` (JSON text, or @FILE), as the edge writes a schema (shared/structured/json-schema-regex.ts). */
async function schemaRegex(flag: string): Promise<string> {
  let text = flag;
  if (flag.startsWith('@')) {
    try {
      text = await readFile(flag.slice(1), 'utf8');
    } catch (err) {
      throw unreadableFile('schema', flag.slice(1), err);
    }
  }
  let schema: unknown;
  try {
    schema = JSON.parse(text);
  } catch {
    throw new CliError('--json-schema: not JSON text (give the schema, or @FILE)');
  }
  try {
    return jsonSchemaRegex(schema);
  } catch (err) {
    if (err instanceof SchemaError) throw new CliError(`--json-schema: ${err.message}${err.path ? ` (at ${err.path})` : ''}`);
    throw err;
  }
}
