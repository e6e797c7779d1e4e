/** `sssd pool` refuses unsafe or broken setups with a clear message (no stack trace, non-zero exit). */
import { execFile } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { models, repoRoot } from '../../support/shared-data';
import { POOL_NODE_FLAGS } from '../../../gpu-pool/cli/pool-node-flags';
import { sssdNodeArgs } from '../../support/compiled-cli';

const run = promisify(execFile);

async function pool(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; stderr: string }> {
  const base = { ...process.env, ...env };
  if (env.SSSD_POOL_TOKEN === undefined) delete base.SSSD_POOL_TOKEN;
  try {
    // Started with the pool's node flags, as the launchers start it: not relaunched for them (pool-node-flags.test.ts
    // tests that), which doubled each of these refusals' start-up; compiled once, not through tsx at each of some thirty
    // starts (the --help below runs bin/sssd.mjs itself).
    await run(process.execPath, [...POOL_NODE_FLAGS, ...sssdNodeArgs(), 'pool', ...args], { env: base, timeout: 60_000 });
    return { code: 0, stderr: '' };
  } catch (e) {
    const err = e as { code: number; stderr: string };
    return { code: err.code, stderr: err.stderr };
  }
}

/** Runs `starts` at most `width` at a time; their results in order. */
async function inBatches<T>(starts: ReadonlyArray<() => Promise<T>>, width: number): Promise<T[]> {
  const results: T[] = [];
  for (let i = 0; i < starts.length; i += width) results.push(...(await Promise.all(starts.slice(i, i + width).map((start) => start()))));
  return results;
}

const model = ['--model', models.stories260K.checkpoint, '--tokenizer', models.stories260K.tokenizer, '--port', '0'];

describe('sssd pool --help', () => {
  it('names the environment variables the pool reads, which no flag names', async () => {
    const { stdout } = await run(process.execPath, [path.join(repoRoot, 'bin/sssd.mjs'), 'pool', '--help'], { timeout: 60_000 });
    expect(stdout).toMatch(/Usage: sssd pool/);
    const environment = stdout.slice(stdout.indexOf('\nEnvironment:\n'));
    expect(environment.length).toBeLessThan(stdout.length);
    for (const name of ['SSSD_POOL_TOKEN', 'SSSD_POOL_PREVIOUS_TOKENS', 'SSSD_METRICS_TOKEN', 'SSSD_MODEL_NAME', 'SSSD_TOKENIZER', 'SSSD_EXECUTION_PROVIDER', 'SSSD_WEBGPU_OPTIONS', 'SSSD_THREADS', 'SSSD_CACHE_DIR', 'SSSD_RESIDENT_KV', 'SSSD_PACKED_OUTPUTS', 'SSSD_ATTENTION_GROUPS']) {
      expect(environment).toMatch(new RegExp(`^  ${name} `, 'm'));
    }
  });

  it('names --preempt, on by default, and --no-preempt', async () => {
    const { stdout } = await run(process.execPath, [path.join(repoRoot, 'bin/sssd.mjs'), 'pool', '--help'], { timeout: 60_000 });
    const flags = stdout.replace(/\s+/g, ' ');
    expect(flags).toMatch(/--preempt with every row taken, a tenant with no row running .* \(default: on\)/);
    expect(flags).toMatch(/--no-preempt never preempt/);
  });

  it('names --metrics-tenants: its cap, its fold into "other" and "none", its default', async () => {
    const { stdout } = await run(process.execPath, [path.join(repoRoot, 'bin/sssd.mjs'), 'pool', '--help'], { timeout: 60_000 });
    const flags = stdout.replace(/\s+/g, ' ');
    expect(flags).toMatch(/--metrics-tenants <n> tenants with their own label value in \/metrics' per-tenant series .*tenant="other".*tenant="none" \(0 = no per-tenant series; at most 1024; each label taken adds ~1 KB to a scrape of \/metrics and up to ~10 µs to the time it holds the step loop, ~10 ms with all 1024: docs\/protocol.md, "Per-tenant series"\) \(default: "32"\)/);
  });
});

describe('sssd pool start-up checks', () => {
  it('refuses to start without a token unless told to run without auth', async () => {
    const r = await pool(model);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/SSSD_POOL_TOKEN/);
    expect(r.stderr).not.toMatch(/\.ts:\d+/);
  });

  it('names a port already in use before it loads the model (minutes, for a large one)', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      const r = await pool(['--model', models.stories260K.checkpoint, '--tokenizer', models.stories260K.tokenizer, '--port', String(port)], { SSSD_POOL_TOKEN: 't' });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
      // Before the model: the line that follows its load never came.
      expect(r.stderr).not.toMatch(/on cpu/);
      // Without --tokenizer, the tok512.bin beside the checkpoint is taken, as `up` takes it: the start gets as far (review h141).
      // SSSD_TOKENIZER, as `up` reads it, for a model with none beside it (review h185): as far again.
      const [beside, fromEnv] = await Promise.all([
        pool(['--model', models.stories260K.checkpoint, '--port', String(port)], { SSSD_POOL_TOKEN: 't', SSSD_TOKENIZER: undefined }),
        pool(['--model', models.llama2xs.checkpoint, '--port', String(port)], { SSSD_POOL_TOKEN: 't', SSSD_TOKENIZER: models.llama2xs.tokenizer }),
      ]);
      expect([beside.code, beside.stderr]).toEqual([2, expect.stringMatching(new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`))]);
      expect([fromEnv.code, fromEnv.stderr]).toEqual([2, expect.stringMatching(new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`))]);
    } finally {
      taken.close();
    }
  });

  it('refuses previous tokens of a rotation without a current one', async () => {
    const r = await pool([...model, '--insecure-no-auth'], { SSSD_POOL_PREVIOUS_TOKENS: 'old' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/SSSD_POOL_PREVIOUS_TOKENS is set without SSSD_POOL_TOKEN/);
  });

  it('refuses a token that HTTP clients send differently or not at all (spaces, non-ASCII), current, previous or for /metrics', async () => {
    for (const env of [{ SSSD_POOL_TOKEN: 'tök-secret' }, { SSSD_POOL_TOKEN: 'two words' }, { SSSD_POOL_TOKEN: 'ok', SSSD_POOL_PREVIOUS_TOKENS: 'токен' }, { SSSD_POOL_TOKEN: 'ok', SSSD_METRICS_TOKEN: 'two words' }]) {
      const r = await pool(model, env);
      expect(r.code, JSON.stringify(env)).toBe(2);
      expect(r.stderr).toMatch(/printable ASCII/);
      expect(r.stderr).not.toMatch(/tök|токен|two words/);
    }
  });

  it('allows --insecure-no-auth on loopback only', async () => {
    const r = await pool([...model, '--insecure-no-auth', '--host', '0.0.0.0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/loopback/);
  });

  it('names a missing model or tokenizer, and a bad flag', async () => {
    // Some twenty refusals, each a node start: four at a time, not one after another (a loaded 2-core machine took
    // ~7 s a start, past the test's time), then each checked.
    const [missing, tok, none, tokFolder, flag, prefix, spec, save, underFile, every, tooOften, folder, device, forever, threads, port, duty, stalled, empty, twice, servedName, servedNameEnv, reserve, tenants] = await inBatches([
      () => pool(['--model', '/nonexistent/model.bin', '--tokenizer', models.stories260K.tokenizer], { SSSD_POOL_TOKEN: 't' }),
      () => pool(['--model', models.stories260K.checkpoint, '--tokenizer', '/nonexistent/tok.bin'], { SSSD_POOL_TOKEN: 't' }),
      () => pool(['--model', models.llama2xs.checkpoint], { SSSD_POOL_TOKEN: 't', SSSD_TOKENIZER: undefined }),
      () => pool(["--model", models.stories260K.checkpoint, "--tokenizer", path.dirname(models.stories260K.tokenizer)], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--budget', 'huge'], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--prefix-cache-mb', 'lots'], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--speculative-config', '{"method": "ngram", "num_speculative_tokens": 5}'], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--save-datastore', '/nonexistent/dir/live.sssd-ds'], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--save-datastore', path.join(models.stories260K.checkpoint, 'live.sssd-ds')], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--save-datastore-seconds', 'often'], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--save-datastore-seconds', '0.001'], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--save-datastore', tmpdir()], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--save-datastore', '/dev/null'], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--drain-seconds', '2592000'], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--threads', '100000'], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--port', '70000'], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--datastore-indexer-duty', '0'], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--stalled-reader-seconds', '-1'], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--drain-seconds', ''], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--max-tree-nodes', '8', '--speculative-config', '{"num_speculative_tokens": 5}'], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--served-model-name', 'two words'], { SSSD_POOL_TOKEN: 't' }),
      () => pool(model, { SSSD_POOL_TOKEN: 't', SSSD_MODEL_NAME: 'x'.repeat(129) }),
      () => pool([...model, '--max-active', '4', '--tenant-reserve', '4'], { SSSD_POOL_TOKEN: 't' }),
      () => pool([...model, '--metrics-tenants', '1025'], { SSSD_POOL_TOKEN: 't' }),
    ], 4);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/\/nonexistent\/model\.bin/);
    expect(tok.stderr).toMatch(/tokenizer not found/);
    // No --tokenizer, and none beside the llama2.c file to take as `up` does: said, with what to pass; a folder for it: which file.
    expect(none.stderr).toMatch(/No tokenizer found beside --model .*llama2xs\.bin \(no tok\*\.bin or tokenizer\.bin in .*\); set --tokenizer \(or SSSD_TOKENIZER\)/);
    expect(tokFolder.stderr).toMatch(/tokenizer .*stories260K is a folder; give the file/);
    expect(flag.stderr).toMatch(/--budget must be one of/);
    expect(prefix.code).toBe(2);
    expect(prefix.stderr).toMatch(/--prefix-cache-mb must be a non-negative number, not "lots"/);
    expect(spec.code).toBe(2);
    expect(spec.stderr).toMatch(/--speculative-config: .*"method".*chosen per request/);
    expect(save.code).toBe(2);
    expect(save.stderr).toMatch(/--save-datastore: the folder \/nonexistent\/dir does not exist/);
    // A file where its folder should be: said as such, not as a folder missing.
    expect(underFile.code).toBe(2);
    expect(underFile.stderr).toMatch(/--save-datastore: .*stories260K\.bin is a file, not a folder to write live\.sssd-ds in/);
    expect(every.stderr).toMatch(/--save-datastore-seconds must be a number of seconds, at least 1 \(or 0: only when the pool stops\), not "often"/);
    // Each save writes the whole datastore: not back to back.
    expect([tooOften.code, tooOften.stderr]).toEqual([2, expect.stringMatching(/--save-datastore-seconds must be a number of seconds, at least 1 \(or 0: only when the pool stops\), not "0.001"/)]);
    // A folder where the file should go, found at the start (the save at the stop failed, and the contributions were lost).
    expect(folder.code).toBe(2);
    expect(folder.stderr).toMatch(/--save-datastore: .* is a folder; name the file to write/);
    // A device would be replaced by a file at the save (as root, /dev/null itself).
    expect(device.code).toBe(2);
    expect(device.stderr).toMatch(/--save-datastore: \/dev\/null is not a regular file/);
    // Past node's timers (24.8 days) a wait fires after 1 ms: "drain for 30 days" cancelled everything at once.
    expect(forever.code).toBe(2);
    expect(forever.stderr).toMatch(/--drain-seconds must be at most 2147483 seconds/);
    // onnxruntime spent minutes making 100,000 threads and never listened; a port past 65535 was Node's raw error.
    expect(threads.code).toBe(2);
    expect(threads.stderr).toMatch(/--threads must be at most 256, not 100000/);
    expect(port.code).toBe(2);
    expect(port.stderr).toMatch(/--port must be at most 65535, not 70000/);
    expect(duty.code).toBe(2);
    expect(duty.stderr).toMatch(/--datastore-indexer-duty must be a number in \(0, 1\], not "0"/);
    expect(stalled.code).toBe(2);
    expect(stalled.stderr).toMatch(/--stalled-reader-seconds must be a number of seconds, at least 1 \(or 0: never\), not "-1"/);
    // Decimal only: '' was 0 ("cancel at once") and 0x10 sixteen.
    expect(empty.stderr).toMatch(/--drain-seconds must be a whole number of seconds, at least 0, not ""/);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toMatch(/--max-tree-nodes and --speculative-config's num_speculative_tokens both set it/);
    // The name clients send: refused before the model loads, naming where it came from (review h191).
    expect([servedName.code, servedName.stderr]).toEqual([2, expect.stringMatching(/--served-model-name must start with a letter or digit and hold only letters, digits and .* not "two words"/)]);
    expect(servedName.stderr).not.toMatch(/on cpu/);
    expect([servedNameEnv.code, servedNameEnv.stderr]).toEqual([2, expect.stringMatching(/SSSD_MODEL_NAME is 129 characters long; a model name takes 128 at most/)]);
    // Every row held back would leave a shared pool's busiest tenant none.
    expect([reserve.code, reserve.stderr]).toEqual([2, expect.stringMatching(/--tenant-reserve must be less than --max-active \(4\), not 4/)]);
    // Each tenant label is some eleven series: bounded.
    expect([tenants.code, tenants.stderr]).toEqual([2, expect.stringMatching(/--metrics-tenants must be at most 1024, not 1025/)]);
  }, 180_000); // some twenty pool starts: past the default 60 s on a loaded 2-core machine, even four at a time
});
