/**
 * `sssd pool`: the verification pool service. Loads the model, tokenizer and
 * (optionally) the datastore, calibrates the step-cost curve (cached), and
 * serves protocol v1 over HTTP until SIGINT/SIGTERM/SIGHUP. The first signal
 * drains: new generations are refused (503, /healthz 503 "draining") while
 * the running and queued ones finish, for up to --drain-seconds; then, or at
 * a second signal, whatever is left is cancelled and the process exits.
 *
 * Auth: the bearer token comes from SSSD_POOL_TOKEN. Without it the pool
 * refuses to start, unless --insecure-no-auth is given, which is only allowed
 * on a loopback host (local development, tests). SSSD_POOL_PREVIOUS_TOKENS
 * (comma-separated) are accepted too, while edges move to a new token.
 */
import { bearerTokenProblem } from '../../shared/bearer-token';
import { createHash } from 'node:crypto';
import { constants, statSync } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { POOL_FEATURES } from '../../shared/pool-features';
import { PROTOCOL_VERSION, STOP_MATCHER_VERSION, type PoolInfo } from '../../shared/protocol';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import { TokenTexts } from '../verify/token-texts';
import { detectTokenizerFormat } from '../../shared/tokenizer/load-tokenizer';
import { readTokenizerBytes, resolveTokenizerPath } from './generate-command';
import { TOKENIZER_DEFAULT_HELP } from './tokenizer-beside';
import { modelEnvironmentHelp } from './model-environment-help';
import { loadModel } from '../model/load-model';
import { declaredChatTemplate } from '../model/hf-checkpoint';
import { intraOpThreads, ModelRunner } from '../runtime/model-runner';
import { Datastore } from '../datastore/datastore';
import { calibrate, describeCalibration } from '../budget/calibration';
import { TreeBudget, budgetPolicies } from '../budget/tree-budget';
import { SpeculationGovernor } from '../budget/speculation-governor';
import { PoolMetrics } from '../metrics/pool-metrics';
import { startStatsLog } from '../metrics/stats-log';
import { requestLogLine } from '../metrics/request-log';
import { Scheduler } from '../scheduler/scheduler';
import { drafterFactory } from '../scheduler/drafter-factory';
import { PrefixCache } from '../scheduler/prefix-cache';
import type { SequenceKvCache } from '../runtime/kv-cache';
import { nextTokenTableCorpusPositions, nextTokenTableFile, openNextTokenTable } from '../datastore/next-token-table-file';
import { DatastoreSaver } from '../datastore/datastore-saver';
import { acquireSaveLock } from '../datastore/save-lock';
import { DEFAULT_DRAIN_SECONDS } from './pool-drain';
import { sameFile } from './same-file';
import { RepeatFilter } from '../datastore/repeat-filter';
import { PoolServer } from '../server/pool-server';
import { packageVersion } from './package-version';
import { loadDatastoreFlag } from './datastore-flag';
import { CliError } from './cli-error';
import { decimalNumber } from './number-flags';
import { listenOnce } from '../server/listen-once';
import { POOL_NODE_FLAGS, oldSpaceFlag } from './pool-node-flags';
import { parseSpeculativeConfig, resolveSpeculation, type SpeculationSettings } from './speculative-config';
import { SAME_SIGNAL_MS } from './same-signal';
import { BatchSizeCaps } from '../budget/batch-size-caps';
import { poolCacheDir } from '../graph/graph-cache';
import { logLine } from '../metrics/log-line';
import { servedModelName } from './served-model-name';
import { defaultTenantReserve, TENANT_RESERVE_WINDOW_MS } from '../scheduler/tenant-reserve';
import { DEFAULT_METRICS_TENANTS, MAX_METRICS_TENANTS, TENANT_LABEL_CHARS, TENANT_SLOT_IDLE_MS } from '../metrics/tenant-slots';

interface PoolFlags {
  model: string;
  servedModelName?: string;
  tokenizer?: string;
  datastore?: string;
  nextTokens?: string;
  port: string;
  host: string;
  insecureNoAuth?: boolean;
  maxActive: string;
  maxQueued: string;
  maxTotalTokens?: string;
  tenantReserve?: string;
  /** --preempt / --no-preempt (absent: on). */
  preempt?: boolean;
  metricsTenants: string;
  budget: string;
  maxTreeNodes: string;
  recalibrate?: boolean;
  threads?: string;
  governor: boolean;
  drainSeconds: string;
  stuckSeconds: string;
  stalledReaderSeconds: string;
  requestTimeoutSeconds: string;
  prefixCacheMb: string;
  prefillChunk?: string;
  logStats: string;
  logRequests?: boolean;
  speculativeConfig?: string;
  saveDatastore?: string;
  saveDatastoreSeconds: string;
  datastoreIndexerDuty: string;
}

/** What `sssd pool --help` says of the environment it reads: no flag names these, and an operator looked for them in vain (review h137). */
export const POOL_ENVIRONMENT_HELP = `
Environment:
  SSSD_POOL_TOKEN             the bearer token edges must send (required unless --insecure-no-auth on a loopback host)
  SSSD_POOL_PREVIOUS_TOKENS   comma-separated tokens also accepted while a rotation reaches every edge (docs/protocol.md)
  SSSD_METRICS_TOKEN          where set, GET /metrics wants it as a bearer token (a scraper's own, not SSSD_POOL_TOKEN); unset, /metrics is open
  SSSD_MODEL_NAME             the name the model is served under where --served-model-name is not given
${modelEnvironmentHelp()}
`;

export function register(program: Command): void {
  program
    .command('pool')
    .description('run the verification pool (batched tree verification over HTTP)')
    .requiredOption('--model <path>', 'llama2.c .bin checkpoint or Hugging Face model directory')
    .option(
      '--served-model-name <name>',
      "the name the model is served under: clients' `model`, every reply's, /v1/info's (default: $SSSD_MODEL_NAME, else the checkpoint's file or folder name); every pool behind one edge must serve one name",
    )
    .option('--tokenizer <path>', `tokenizer file (llama2.c tokenizer .bin or tokenizer.json; ${TOKENIZER_DEFAULT_HELP})`)
    .option('--datastore <file>', 'global datastore file (sssd datastore build); default: empty, filled by opted-in outputs')
    .option('--next-tokens <file>', "the model's next-token table (datastore build --model writes FILE.next-tokens beside the datastore, the default when present; none = without): drafts for sampled requests, and short chains for every sssd row of a batch too wide for the fused drafter")
    .option('--port <n>', 'port (0 = any free port)', '8788')
    .option('--host <host>', 'interface to bind', '127.0.0.1')
    .option('--insecure-no-auth', 'serve without a bearer token (loopback hosts only)')
    .option('--max-active <n>', 'generations in the running batch', '128')
    .option('--max-queued <n>', 'generations waiting for a batch slot', '512')
    .option('--max-total-tokens <n>', 'token reservations (prompt + max tokens) over running and queued generations (default: (max-active + max-queued) × (context + 1))')
    .option(
      '--tenant-reserve <n>',
      `rows that, while tenants share the pool (another tenant's generation queued or running, or ended within ${TENANT_RESERVE_WINDOW_MS / 1000} s), only a tenant with no row running may take, so one tenant's flood cannot hold every row while another's request waits; one tenant alone fills every row (0 = off; default: max-active / 16, at least 1, below max-active)`,
    )
    .option(
      '--preempt',
      "with every row taken, a tenant with no row running while tenants share the pool takes one from the tenant holding the most (two at least): that tenant's cheapest generation to recompute gives its row up at a step boundary and resumes later by recompute, its stream only paused (once per generation at most; callers that name no tenant never) (default: on)",
    )
    .option('--no-preempt', 'never preempt: a tenant with no row running waits for a row to free')
    .option('--budget <policy>', `tree budget: ${budgetPolicies.join(', ')} or off`, 'marginal')
    .option('--max-tree-nodes <n>', 'most draft nodes per request per step', '32')
    .option('--recalibrate', 'measure the step-cost curve again instead of using the cache')
    .option('--no-governor', 'marginal budget: do not switch speculation off where measured throughput says it loses')
    .option('--threads <n>', 'onnxruntime intra-op threads (default $SSSD_THREADS or 1)')
    .option('--request-timeout-seconds <n>', 'longest a client may take to send a whole request, headers and body (past it: 408 and the connection closed); streams are not limited by it', '60')
    .option('--stalled-reader-seconds <n>', "a generation stream whose reader takes nothing for this long while its events wait (more than the kernel's buffers hold) is cut and its generation cancelled, so a reader that stopped cannot hold its row or its bytes; one that catches up now and then never is (0 = never)", '300')
    .option('--stuck-seconds <n>', 'a forward pass running longer than this makes /healthz answer 503 with "stuck": true, so edges and load balancers route elsewhere while the device hangs (0 = never)', '10')
    .option('--drain-seconds <n>', 'on SIGTERM/SIGINT/SIGHUP: refuse new generations and let the running ones finish for up to this long before cancelling them, in whole seconds (0 = cancel at once; a second signal, a second or more after the first, also does)', String(DEFAULT_DRAIN_SECONDS))
    .option('--prefix-cache-mb <n>', "keep finished generations' keys/values up to this many MiB, so prompts that start the same (a system prompt, a chat's earlier turns) skip that prefill (0 = off; host keys/values only)", '256')
    .option('--prefill-chunk <tokens>', `most prompt tokens one step feeds, over all the prompts going in (chunked prefill): long prompts, or many arriving together, go in over several steps, so the streams decoding beside them are held up by one chunk a step, not whole prompts (0 = every prompt whole; default ${CPU_PREFILL_CHUNK} on the CPU, ${DEVICE_PREFILL_CHUNK} on a GPU)`)
    .option(
      '--metrics-tenants <n>',
      `tenants with their own label value in /metrics' per-tenant series (sssd_pool_tenant_*{tenant}, the tenant's first ${TENANT_LABEL_CHARS} characters): the first seen, each keeping it while it comes back; one seen when all are taken gets the label of a tenant idle ${TENANT_SLOT_IDLE_MS / 60_000} minutes (whose series then end) or is counted as tenant="other"; callers naming none are tenant="none" (0 = no per-tenant series; at most ${MAX_METRICS_TENANTS}; each label taken adds ~1 KB to a scrape of /metrics and up to ~10 µs to the time it holds the step loop, ~10 ms with all ${MAX_METRICS_TENANTS}: docs/protocol.md, "Per-tenant series")`,
      String(DEFAULT_METRICS_TENANTS),
    )
    .option('--log-requests', 'a JSON line on stderr per finished generation: id, tenant (hash prefix), method, finish reason, token counts, queue time, time to first token, duration, drafted and accepted tokens (never the text)')
    .option('--log-stats <seconds>', 'while busy, a line on stderr this often: tokens/s, batch and queue, requests refused busy, speculation acceptance, prefix cache hit rate (0 = never)', '10')
    .option('--save-datastore <file>', 'write the datastore, with the outputs requests contributed (contributeToDatastore), to FILE when the pool stops and every --save-datastore-seconds; start again with --datastore FILE')
    .option('--save-datastore-seconds <n>', 'with --save-datastore: also save this often while contributions arrive, at least 1 s (0 = only when the pool stops)', '600')
    .option('--datastore-indexer-duty <share>', 'most of the time, in (0, 1], that re-indexing contributed outputs may keep a core busy (a worker thread); between two rebuilds it rests, and contributions wait for the next', '0.25')
    .option(
      '--speculative-config <json>',
      'speculation settings as one JSON object, or @FILE: num_speculative_tokens, budget, governor, disable_by_batch_size, max_tree_nodes_by_batch_size ({"1":32,"32":4}), fusion (drafter weights); see docs/protocol.md',
    )
    .addHelpText('after', POOL_ENVIRONMENT_HELP)
    .action(async (flags: PoolFlags, command: Command) => {
      const given = (name: string): boolean => command.getOptionValueSource(name) === 'cli';
      await runPool(flags, resolveSpeculation(flags.speculativeConfig === undefined ? null : parseSpeculativeConfig(flags.speculativeConfig), {
        budget: flags.budget,
        maxTreeNodes: positiveInt(flags.maxTreeNodes, '--max-tree-nodes'),
        governor: flags.governor,
        given,
      }));
    });
}

/**
 * --save-datastore names a file that can be written: its folder exists and
 * is writable, and it is no folder itself; and one that exists is the
 * datastore this pool loads (each save replaces the file with what the pool
 * holds: another file's contents, a corpus or an earlier run's outputs,
 * were lost without a word).
 */
async function checkSaveTarget(file: string, loaded: string | undefined): Promise<void> {
  const dir = path.dirname(file);
  const folder = await stat(dir).catch(() => null);
  if (!folder) throw new CliError(`--save-datastore: the folder ${dir} does not exist`);
  if (!folder.isDirectory()) throw new CliError(`--save-datastore: ${dir} is a file, not a folder to write ${path.basename(file)} in`);
  const target = await stat(file).catch(() => null);
  if (target?.isDirectory()) throw new CliError(`--save-datastore: ${file} is a folder; name the file to write`);
  // The save renames a new file over it: a device or a pipe (/dev/null, to discard) would be replaced by a file.
  if (target && !target.isFile()) throw new CliError(`--save-datastore: ${file} is not a regular file (a device or a pipe would be replaced by one)`);
  if (target) {
    const source = loaded === undefined ? null : await stat(loaded).catch(() => null);
    if (!sameFile(source, target)) {
      throw new CliError(
        `--save-datastore: ${file} exists and is not the datastore this pool loads (--datastore${loaded === undefined ? ', none given' : ` ${loaded}`}): saving would replace it and what it holds. To go on adding to it, load it too (--datastore ${file}); else remove it or name another file.`,
      );
    }
  }
  try {
    await access(dir, constants.W_OK);
  } catch {
    throw new CliError(`--save-datastore: the folder ${dir} is not writable`);
  }
}

/** Binds the port and lets it go: a CliError naming it if it cannot be listened on. */
async function checkPortFree(port: number, host: string): Promise<void> {
  // err.message as listen() words it (EADDRINUSE ...): the launcher picks another port on it.
  await listenOnce(port, host).catch((err: Error) => {
    throw new CliError(`cannot listen on ${host}:${port}: ${err.message}`);
  });
}

/** The longest wait node's timers take (2^31 - 1 ms, 24.8 days): a longer one fires after 1 ms. */
const MAX_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

/** A duration flag in seconds, written in decimal, at least `min` (0 stays 0 where it means "never"), within node's timers. */
/** `zero`: 0 is taken too, meaning this (`true`: never). */
function seconds(value: string | undefined, flag: string, min = 0, integer = false, zero: boolean | string = false): number {
  const n = value === undefined ? NaN : decimalNumber(value);
  if (zero !== false && n === 0) return 0;
  if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
    throw new CliError(`${flag} must be a ${integer ? 'whole ' : ''}number of seconds, at least ${min}${zero !== false ? ` (or 0: ${zero === true ? 'never' : zero})` : ''}, not "${value}"`);
  }
  if (n > MAX_TIMER_SECONDS) throw new CliError(`${flag} must be at most ${MAX_TIMER_SECONDS} seconds (24.8 days, the longest wait node's timers take), not "${value}"`);
  return n;
}

function positiveInt(value: string | undefined, flag: string, allowZero = false, max = Number.MAX_SAFE_INTEGER): number {
  const n = value === undefined ? NaN : decimalNumber(value);
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) throw new CliError(`${flag} must be a ${allowZero ? 'non-negative' : 'positive'} integer, not "${value}"`);
  if (n > max) throw new CliError(`${flag} must be at most ${max}, not ${value}`);
  return n;
}

/** onnxruntime's intra-op threads: past a few hundred it spends minutes making them and never listens (100,000 held 755 MB and hung). */
export const MAX_THREADS = 256;

/**
 * Whoever starts the pool with an IPC channel to it (the relaunch in
 * bin/sssd.mjs, `npm start`'s launcher, the tests) may die without a signal
 * reaching the pool: killed with SIGKILL, crashed. The pool would then serve
 * on, orphaned, holding its port, with nothing left to stop it. The channel
 * closes however that process dies, so the pool watches it: gone while the
 * pool loads, it exits; gone while it serves, it stops as on SIGTERM. The
 * channel is unreferenced so it never keeps the pool alive by itself. A pool
 * started without one (a shell, a supervisor) watches nothing.
 */
function watchLauncher(): { onGone(handler: () => void): void } {
  let handler = (): void => {
    logLine('pool: the process that started it is gone: exiting before serving');
    process.exit(1);
  };
  if (process.channel) {
    process.channel.unref();
    process.once('disconnect', () => handler());
  } else if (process.connected === false) {
    // Closed while the modules were still loading, before anyone listened.
    handler();
  }
  return { onGone: (h) => void (handler = h) };
}

/**
 * Default prompt tokens a step feeds (chunked prefill). On the 2-core CPU a
 * pass costs ~16 µs a token (128 tokens: 2.4 ms against ~1 ms for a decode
 * step at 8 rows); on a GPU a token costs next to nothing until the batch is
 * large and a pass's fixed cost is the price, so chunks there are larger
 * (vLLM's default token budget a step is 2,048).
 */
const CPU_PREFILL_CHUNK = 128;
const DEVICE_PREFILL_CHUNK = 2048;

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);
/** How long stopping may wait for the pass in flight to return before the process exits without it. */
const STOP_LIMIT_MS = 30_000;

async function runPool(flags: PoolFlags, speculation: SpeculationSettings): Promise<void> {
  const launcher = watchLauncher();
  const port = positiveInt(flags.port, '--port', true, 65_535);
  const maxActive = positiveInt(flags.maxActive, '--max-active');
  const maxQueued = positiveInt(flags.maxQueued, '--max-queued', true);
  const tenantReserve = flags.tenantReserve === undefined ? defaultTenantReserve(maxActive) : positiveInt(flags.tenantReserve, '--tenant-reserve', true);
  // Every row held back would leave a shared pool's busiest tenants none.
  if (tenantReserve > 0 && tenantReserve >= maxActive) throw new CliError(`--tenant-reserve must be less than --max-active (${maxActive}), not ${tenantReserve}`);
  const preempt = flags.preempt ?? true;
  const metricsTenants = positiveInt(flags.metricsTenants, '--metrics-tenants', true, MAX_METRICS_TENANTS);
  const { maxTreeNodes } = speculation;
  const chunkFlag = flags.prefillChunk === undefined ? undefined : positiveInt(flags.prefillChunk, '--prefill-chunk', true);
  const threads = flags.threads === undefined ? undefined : positiveInt(flags.threads, '--threads', false, MAX_THREADS);
  const drainSeconds = seconds(flags.drainSeconds, '--drain-seconds', 0, true);
  // Below a second, any pass would be "stuck", and any pause a stalled reader.
  const stuckSeconds = seconds(flags.stuckSeconds, '--stuck-seconds', 1, false, true);
  const stalledReaderSeconds = seconds(flags.stalledReaderSeconds, '--stalled-reader-seconds', 1, false, true);
  const requestTimeoutSeconds = seconds(flags.requestTimeoutSeconds, '--request-timeout-seconds', 0.1);
  const prefixCacheMb = decimalNumber(flags.prefixCacheMb ?? '');
  if (!(prefixCacheMb >= 0) || !Number.isFinite(prefixCacheMb)) throw new CliError(`--prefix-cache-mb must be a non-negative number, not "${flags.prefixCacheMb}"`);
  // Each save writes the whole datastore (0.1-1 s for tens of MiB): not back to back.
  const saveSeconds = seconds(flags.saveDatastoreSeconds, '--save-datastore-seconds', 1, false, 'only when the pool stops');
  // Found now rather than at the first save, minutes or hours in.
  if (flags.saveDatastore) await checkSaveTarget(path.resolve(flags.saveDatastore), flags.datastore === undefined ? undefined : path.resolve(flags.datastore));
  // Before the model loads: a second pool on the file is refused in a second, not after its start-up.
  const saveLock = flags.saveDatastore ? await acquireSaveLock(path.resolve(flags.saveDatastore)) : null;
  const indexerDuty = decimalNumber(flags.datastoreIndexerDuty ?? '');
  if (!(indexerDuty > 0 && indexerDuty <= 1)) throw new CliError(`--datastore-indexer-duty must be a number in (0, 1], not "${flags.datastoreIndexerDuty}"`);
  const logStatsSeconds = seconds(flags.logStats, '--log-stats', 1, false, true);
  const servedName = servedModelName(flags.servedModelName);
  const token = process.env.SSSD_POOL_TOKEN?.trim() || null;
  if (!token && !flags.insecureNoAuth) {
    throw new CliError('set SSSD_POOL_TOKEN (the bearer token edges must send), or pass --insecure-no-auth for local use');
  }
  // The safe way round, but said: someone who asked for no auth gets 401s otherwise without a word.
  if (token && flags.insecureNoAuth) logLine('pool: --insecure-no-auth is ignored: SSSD_POOL_TOKEN is set, and requests must send it');
  const previousTokens = (process.env.SSSD_POOL_PREVIOUS_TOKENS ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t.length > 0);
  for (const [name, value] of [['SSSD_POOL_TOKEN', token], ...previousTokens.map((t) => ['SSSD_POOL_PREVIOUS_TOKENS', t])] as const) {
    const problem = value === null ? null : bearerTokenProblem(name, value);
    if (problem) throw new CliError(problem);
  }
  const metricsToken = process.env.SSSD_METRICS_TOKEN?.trim() || null;
  const metricsProblem = metricsToken === null ? null : bearerTokenProblem('SSSD_METRICS_TOKEN', metricsToken);
  if (metricsProblem) throw new CliError(metricsProblem);
  if (previousTokens.length > 0 && !token) {
    throw new CliError('SSSD_POOL_PREVIOUS_TOKENS is set without SSSD_POOL_TOKEN: the previous tokens are accepted beside a current one, not instead of it');
  }
  if (!token && !LOOPBACK.has(flags.host)) {
    throw new CliError(`--insecure-no-auth only binds loopback hosts (127.0.0.1, ::1), not ${flags.host}`);
  }

  const tokenizerPath = resolveTokenizerPath(flags.model, flags.tokenizer);
  const tokenizerBytes = await readTokenizerBytes(tokenizerPath);
  let tokenizer;
  try {
    tokenizer = loadTokenizer(tokenizerBytes);
  } catch (err) {
    throw new CliError(`cannot read tokenizer ${tokenizerPath}: ${(err as Error).message}`);
  }
  // A port already taken is found now, not after the model's load and calibration (minutes, for a large one).
  if (port !== 0) await checkPortFree(port, flags.host);
  const model = await loadModel(flags.model).catch((err: Error) => {
    throw new CliError(err.message);
  });
  const config = model.config;
  const chatTemplate = statSync(flags.model).isDirectory() ? await declaredChatTemplate(flags.model) : null;
  if (chatTemplate !== null) {
    logLine(
      `pool: ${chatTemplate.file} declares a chat template; this pool renders chats with its own, \`concat\` (docs/chat-template.md), so a chat-tuned model sees none of its role markers. Render the chat yourself and send it to /v1/completions.`,
    );
  }
  if (tokenizer.vocabSize !== config.vocabSize) {
    throw new CliError(`tokenizer ${tokenizerPath} has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${config.vocabSize}`);
  }
  const tokenizerSha = createHash('sha256').update(tokenizerBytes).digest('hex');
  // Default: never binding (every running and queued generation may use the whole context).
  const maxTotalTokens =
    flags.maxTotalTokens === undefined ? (maxActive + maxQueued) * (config.contextLength + 1) : positiveInt(flags.maxTotalTokens, '--max-total-tokens');
  // Legal, and a pool that refuses the longest requests the model takes (review h113: 10 refused every request): said.
  if (maxTotalTokens < config.contextLength + 1) {
    logLine(`pool: --max-total-tokens ${maxTotalTokens} is under one whole-context request (${config.contextLength + 1} tokens): requests whose prompt and max tokens pass ${maxTotalTokens} are refused here (413 too_large; an edge passes them to another pool, or answers 400 where none holds them)`);
  }

  let datastore: Datastore;
  if (flags.datastore) {
    datastore = await loadDatastoreFlag(flags.datastore, { vocabSize: config.vocabSize, tokenizerSha256: tokenizerSha }, { indexerDuty });
  } else {
    datastore = Datastore.empty({ vocabSize: config.vocabSize, tokenizerSha256: tokenizerSha, indexerDuty });
  }
  const nextTokens = await openNextTokenTable(
    flags.nextTokens,
    flags.datastore,
    { vocabSize: config.vocabSize, tokenizerSha256: tokenizerSha, modelSha256: model.sha256 },
    (why) => logLine(`pool: ${why}`),
  ).catch((err: Error) => {
    throw new CliError(`cannot load the next-token table: ${err.message} (--next-tokens none runs without it)`);
  });

  const runner = await ModelRunner.create(model, { threads, maxSequences: maxActive, keptKvTokens: Math.min(maxActive * config.contextLength, maxTotalTokens) });
  const layoutNote = runner.layout.residentKv ? ' (resident keys/values)' : runner.layout.packedOutputs ? ' (packed outputs)' : '';
  const modelName = servedName ?? config.name;
  logLine(`pool: ${config.name}${servedName !== null && servedName !== config.name ? ` served as ${servedName}` : ''} on ${runner.executionProvider}${layoutNote}`);
  const prefillChunk = chunkFlag ?? (runner.executionProvider === 'cpu' ? CPU_PREFILL_CHUNK : DEVICE_PREFILL_CHUNK);
  const heapFlag = oldSpaceFlag(process.execArgv, process.env.NODE_OPTIONS);
  const heapNote = heapFlag
    ? `V8 heap ${heapFlag}`
    : `WARNING: node's default initial old generation; run the pool with \`node ${POOL_NODE_FLAGS.join(' ')}\` (bin/sssd.mjs does) or large passes bring on a full collection every few hundred steps`;
  logLine(`pool: ${heapNote}`);
  if (nextTokens) {
    logLine(`pool: next-token table of ${nextTokens.size} contexts drafts for sampled requests, and chains for batches too wide for the fused drafter`);
    const tableFile = nextTokenTableFile(flags.nextTokens, flags.datastore);
    // A table built before builds read the corpus's own positions drafts sampled requests a few percent worse.
    if (tableFile && (await nextTokenTableCorpusPositions(tableFile)) === null) {
      logLine(
        `pool: the next-token table ${tableFile} predates tables that read the corpus through the model (datastore build --model does since 2026-12-03); rebuilding it drafts sampled requests ~2% more tokens a step (stories260K)`,
      );
    }
  }
  // Every accepted position counted: a step accepts at most --max-tree-nodes drafted tokens.
  const metrics = new PoolMetrics(undefined, maxTreeNodes, modelName, metricsTenants);
  let budget: TreeBudget | null = null;
  if (speculation.budget !== 'off') {
    const t0 = performance.now();
    const cal = await calibrate(runner, {
      // Beside the graphs, wherever the pool is started from.
      cacheDir: path.join(poolCacheDir(), 'calibration'),
      modelSha256: model.sha256,
      executionProvider: runner.executionProvider,
      layout: runner.layout,
      threads: intraOpThreads(threads),
      refresh: flags.recalibrate,
    });
    const m = cal.model;
    // The runner's two-pass split goes by the same curve as the budget.
    const passTokens = m.passOverheadTokens();
    runner.setSplitOverheadTokens(passTokens);
    budget = new TreeBudget(m, { policy: speculation.budget, maxNodes: maxTreeNodes, splitsPasses: runner.splitsPasses });
    logLine(
      `pool: step cost (past 128): 1 row ${m.stepMs(1, 1, 1, 128).toFixed(2)} ms, 1 row × 16 tokens ${m.stepMs(1, 16, 16, 128).toFixed(2)} ms, ` +
        `32 rows ${m.stepMs(32, 1, 32, 128).toFixed(2)} ms, 32 rows × 4 tokens ${m.stepMs(32, 4, 128, 128).toFixed(2)} ms; knee ${budget.kneeTokens} tokens; ` +
        (runner.splitsPasses ? `a second pass costs ${passTokens} padded tokens; ` : '') +
        `budget ${budget.options.policy} (${describeCalibration(cal, performance.now() - t0)}, ${path.relative(process.cwd(), cal.file)})`,
    );
    if (cal.notCached) {
      logLine(`pool: warning: the calibration could not be kept (${cal.notCached}); it is measured again at the next start (SSSD_CACHE_DIR names a writable folder)`);
    }
  }

  // Resident keys/values live on the device, where a prefix would need a copy on the device too (not built).
  const prefixCache =
    prefixCacheMb > 0 && !runner.layout.residentKv
      ? new PrefixCache<SequenceKvCache>({ maxBytes: prefixCacheMb * 2 ** 20, bytesOf: (sequence) => sequence.byteLength })
      : null;
  if (prefixCacheMb > 0 && !prefixCache) logLine('pool: prefix caching is off: keys/values are resident on the device');

  const batchSizeCaps = new BatchSizeCaps(maxTreeNodes, speculation.maxTreeNodesByBatchSize, speculation.disableByBatchSize);
  if (batchSizeCaps.entries.length > 1) {
    logLine(`pool: draft nodes per request by batch size: ${batchSizeCaps.entries.map((e) => `${e.fromBatchSize}+ → ${e.maxTreeNodes}`).join(', ')}`);
  }
  if (runner.kvBuffers) metrics.watchKvBuffers(runner.kvBuffers);
  metrics.watchRunnerSteps(runner.stepCounts);
  metrics.watchDatastore(datastore);
  metrics.watchProcess();
  const saver = flags.saveDatastore
    ? new DatastoreSaver(datastore, flags.saveDatastore, {
        intervalMs: saveSeconds * 1000,
        nextTokensFile: nextTokens ? nextTokenTableFile(flags.nextTokens, flags.datastore) : null,
        log: (line) => logLine(`pool: ${line}`),
        onSaved: (result) => metrics.datastoreSaves.inc({ result }),
      })
    : null;
  // A contribution that repeats a recent one is not indexed again (gpu-pool/datastore/repeat-filter.ts).
  const repeats = new RepeatFilter();
  const governor = budget && speculation.governor ? new SpeculationGovernor() : null;
  if (governor) metrics.watchGovernor(() => governor.snapshot());
  const scheduler = new Scheduler(runner, {
    limits: { maxActive, maxQueued, maxTotalTokens, tenantReserve, preempt },
    budget,
    governor,
    metrics,
    createDrafter: drafterFactory(datastore, nextTokens, speculation.fusion),
    // What each token prints, as the edge's text: requests with choices are masked by it.
    tokenTexts: TokenTexts.of(tokenizer),
    // Its decoder follows each output's text as the edge's does: a request's stop strings end its generation here.
    tokenizer,
    onContribute: (tokens) => {
      if (!repeats.admit(tokens)) {
        metrics.datastoreContributions.inc({ result: 'repeat' });
        return;
      }
      metrics.datastoreContributions.inc({ result: 'indexed' });
      datastore.append(tokens);
      saver?.noteContribution();
    },
    onFinished: flags.logRequests ? (summary) => process.stderr.write(`${requestLogLine(summary)}\n`) : undefined,
    maxTreeNodes,
    batchSizeCaps,
    chainTable: nextTokens,
    prefixCache,
    prefillChunk,
  });
  const info: PoolInfo = {
    protocol: PROTOCOL_VERSION,
    model: {
      name: modelName,
      contextLength: config.contextLength,
      vocabSize: config.vocabSize,
      bosId: config.bosId,
      eosIds: [...config.eosIds],
      chatTemplate: 'concat',
      sha256: model.sha256,
      created: model.createdAt,
    },
    tokenizer: { format: detectTokenizerFormat(tokenizerBytes), path: '/v1/tokenizer', sha256: tokenizerSha },
    // Read at each request: contributed outputs grow the datastore while the pool runs.
    get datastore() {
      return { enabled: datastore.tokenCount > 0 || !!flags.datastore || !!flags.saveDatastore, tokens: datastore.tokenCount };
    },
    limits: { maxActive, maxQueued, maxTotalTokens, prefillChunk, tenantReserve, preempt },
    runtime: { executionProvider: runner.executionProvider },
    speculation: {
      budget: speculation.budget,
      governor: governor !== null,
      maxTreeNodes,
      maxTreeNodesByBatchSize: batchSizeCaps.entries.map((e) => ({ ...e })),
      fusion: { ...speculation.fusion },
    },
    features: [...POOL_FEATURES],
    stopMatcher: STOP_MATCHER_VERSION,
  };
  const server = new PoolServer({ scheduler, metrics, info, tokenizerBytes, token, previousTokens, metricsToken, requestTimeoutMs: Math.round(requestTimeoutSeconds * 1000), stuckMs: stuckSeconds * 1000, stalledReaderMs: stalledReaderSeconds * 1000, version: packageVersion() });
  let url: string;
  try {
    url = await server.listen(port, flags.host);
  } catch (err) {
    throw new CliError(`cannot listen on ${flags.host}:${port}: ${(err as Error).message}`);
  }
  if (!token) logLine('pool: WARNING: authentication is off (--insecure-no-auth)');
  // Said at every start: a rotation left half done keeps an old token valid.
  if (metricsToken !== null) logLine(`pool: /metrics wants SSSD_METRICS_TOKEN as a bearer token${metricsToken === token ? ' (the same as SSSD_POOL_TOKEN: whoever scrapes can also generate; give scrapers a token of their own)' : ''}`);
  if (previousTokens.length > 0) logLine(`pool: also accepting ${previousTokens.length} previous token(s) from SSSD_POOL_PREVIOUS_TOKENS; unset it once every edge sends SSSD_POOL_TOKEN`);
  const stopStatsLog = logStatsSeconds > 0 ? startStatsLog(metrics, logStatsSeconds, logLine) : () => {};

  await new Promise<void>((resolve) => {
    let stopping: Promise<void> | null = null;
    let closingServer = false;
    let lastSignalAt = 0;
    // The streams end once the pass in flight returns: one that never does (a hung device) would hold the process for ever.
    const exitIfHung = (why: string): never => {
      logLine(`pool: ${why}: a forward pass has not returned; exiting without it (its generations' streams are cut; edges resume them elsewhere)`);
      process.exit(1);
    };
    const stopNow = (): Promise<void> =>
      (stopping ??= (async () => {
        stopStatsLog();
        const watchdog = setTimeout(() => exitIfHung(`still stopping after ${STOP_LIMIT_MS / 1000} s`), STOP_LIMIT_MS);
        watchdog.unref();
        closingServer = true;
        try {
          await server.close();
        } finally {
          closingServer = false;
          clearTimeout(watchdog);
        }
        // Not cut short by a signal: the contributed outputs since the last save are written here.
        await saver?.stop();
        if (saver && saver.unsavedOutputs > 0) {
          // Lost with the process: a supervisor must not take this stop for a clean one.
          logLine(`pool: ${saver.unsavedOutputs} contributed outputs could not be saved (see above); exiting with 1`);
          process.exitCode = 1;
        }
        await datastore.close();
        await saveLock?.release();
      })().then(resolve, resolve));
    let firstSignalAt = 0;
    const onSignal = (): void => {
      const now = performance.now();
      const previous = lastSignalAt;
      lastSignalAt = now;
      if (stopping !== null) {
        // Asked again while the generations are being cancelled: do not wait for the pass any longer.
        if (closingServer && now - previous >= SAME_SIGNAL_MS) exitIfHung('signalled again while stopping');
        return;
      }
      if (server.draining) {
        // One signal delivered twice: a terminal's ^C reaches the whole process
        // group, and the relaunch in bin/sssd.mjs forwards it too. A second
        // one on purpose comes later.
        if (now - firstSignalAt < SAME_SIGNAL_MS) return;
        logLine('pool: second signal: cancelling the generations left');
        void stopNow();
        return;
      }
      firstSignalAt = now;
      const { active, queued } = scheduler.stats();
      logLine(`pool: draining: ${active} running and ${queued} queued generations may finish for ${drainSeconds} s; new ones are refused (a second signal, a second or more from now, stops at once)`);
      void server.drain(drainSeconds * 1000).then((finished) => {
        if (!finished) logLine(`pool: drain time over: cancelling ${scheduler.stats().active + scheduler.stats().queued} generations`);
        return stopNow();
      });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    // A closed terminal: drain and save as on SIGTERM (node's default for SIGHUP exits at once, losing both).
    process.on('SIGHUP', onSignal);
    launcher.onGone(() => {
      if (server.draining) return; // already stopping, within --drain-seconds
      logLine('pool: the process that started it is gone (killed before it could pass a signal on): stopping as on SIGTERM');
      onSignal();
    });
    // Announced only now: whoever started the pool may signal it the moment it reads this line.
    process.stdout.write(`pool listening on ${url}\n`);
  });
  // The log's last line: a stop that ran its course, told apart from a process that vanished (review h124).
  logLine(`pool: stopped${process.exitCode ? ` (exit code ${String(process.exitCode)})` : ''}`);
}
