// `npm start` (= `sssd up`): one command brings up pool + edge, prints where to
// go, serves the API with the dev key, and Ctrl-C (SIGINT, delivered once or
// twice) stops both once the running generations finish; killed outright
// (SIGKILL), it leaves neither running, nor the edge's secrets on disk.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, isPortFree } from '../../launcher/service-process';
import { repoRoot } from '../../launcher/stack';
import { sssdNodeArgs } from '../support/compiled-cli';
import { models } from '../support/shared-data';

/**
 * bin/sssd.mjs itself, for the first stack (whose pool it starts as itself); the file's other sixteen `sssd up`
 * starts run it as compiled once (compiled-cli.ts), and it starts its pool compiled too (launcher/sssd-entry.ts).
 */
const SOURCE_SSSD = [path.join(repoRoot, 'bin/sssd.mjs')];

/** Every `sssd up` spawned: one still running after the file (a test that failed midway) is killed. */
const children = new Set<ChildProcess>();
const state = mkdtempSync(path.join(tmpdir(), 'sssd-up-'));

afterAll(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
  rmSync(state, { recursive: true, force: true });
});

interface RunningUp {
  up: ChildProcess;
  edgePort: number;
  poolPort: number;
  output: () => string;
  exited: Promise<number | null>;
}

/** Spawns `sssd up` (node's `entry` arguments before it) on free ports with `env` added, its output collected. */
async function spawnUp(env: Record<string, string>, args: string[] = [], entry: string[] = sssdNodeArgs()): Promise<RunningUp> {
  const [edgePort, poolPort] = [await freePort(), await freePort()];
  const up = spawn(process.execPath, [...entry, 'up', ...args], {
    cwd: repoRoot,
    env: { ...process.env, SSSD_EDGE_PORT: String(edgePort), SSSD_POOL_PORT: String(poolPort), SSSD_EDGE_STATE: state, SSSD_DATASTORE_SELF: 'off', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(up);
  let output = '';
  up.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  up.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => up.on('exit', resolve));
  return { up, edgePort, poolPort, output: () => output, exited };
}

/** The exit code of an `sssd up` that ends on its own, and all it wrote (read to its end). */
async function ended(running: RunningUp): Promise<{ code: number | null; output: string }> {
  const code = await running.exited;
  await new Promise((resolve) => (running.up.stdout!.readableEnded && running.up.stderr!.readableEnded ? resolve(null) : running.up.on('close', resolve)));
  return { code, output: running.output() };
}

/** Runs `sssd up` from folder `cwd` on free ports with `env` added, to its end: its exit code and its stderr. */
async function upIn(cwd: string, env: Record<string, string>, args: string[]): Promise<{ code: number | null; stderr: string }> {
  const up = spawn(process.execPath, [...sssdNodeArgs(), 'up', ...args], {
    cwd,
    env: { ...process.env, SSSD_EDGE_PORT: String(await freePort()), SSSD_POOL_PORT: String(await freePort()), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  up.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => up.on('close', resolve));
  return { code, stderr };
}

/** The name the stack of startUp serves its model under. */
const SERVED = 'up-stories-260k';

/** Starts `sssd up` (node's `entry` arguments before it) on free ports, with `env` added, and waits for its "Ctrl-C stops both" line. */
async function startUp(env: Record<string, string> = {}, entry: string[] = sssdNodeArgs()): Promise<RunningUp> {
  // Pool flags after --: the pool takes them (checked on /healthz, and in the output, below).
  // A pool token with a `$` in it: wrangler expands `$NAME` in its env file, and the edge got another token than the pool.
  // The model's name from the environment, as the pool reads it (review h191).
  const started = await spawnUp({ SSSD_DEV_API_KEY: 'up-test-key', SSSD_DEFAULT_CONCURRENCY: '1', SSSD_POOL_TOKEN: 'up-$HOME-token', SSSD_MODEL_NAME: SERVED, ...env }, ['--', '--max-total-tokens', '123456', '--log-requests'], entry);
  const { up } = started;
  const output = started.output;
  const deadline = Date.now() + 110_000;
  while (!output().includes('Ctrl-C stops both')) {
    if (up.exitCode !== null) throw new Error(`sssd up exited early:\n${output()}`);
    if (Date.now() > deadline) throw new Error(`sssd up did not come up:\n${output()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return started;
}

describe('sssd up', () => {
  it('starts the stack, prints the URLs and the dev key, and stops on SIGINT', async () => {
    const { up, edgePort, poolPort, output: out, exited } = await startUp({}, SOURCE_SSSD);
    const output = out();
    expect(output).toContain(`http://127.0.0.1:${edgePort}/#key=up-test-key`);
    expect(output).toContain(`http://127.0.0.1:${edgePort}/v1`);

    const res = await fetch(`http://127.0.0.1:${edgePort}/v1/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer up-test-key', 'content-type': 'application/json' },
      body: JSON.stringify({ model: SERVED, prompt: 'Once upon a time', max_tokens: 8, temperature: 0 }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { model: string; usage: { completion_tokens: number } })).toMatchObject({ model: SERVED, usage: { completion_tokens: 8 } });
    expect(output).toMatch(new RegExp(`starting pool \\(model .*stories260K\\.bin served as ${SERVED}, `));
    expect(((await (await fetch(`http://127.0.0.1:${poolPort}/healthz`)).json()) as { maxTotalTokens: number }).maxTotalTokens).toBe(123456);
    // Logs asked of the pool reach the terminal without --verbose (they went nowhere); the rest stays quiet.
    for (let i = 0; i < 50 && !out().includes('"completionTokens":8'); i++) await new Promise((r) => setTimeout(r, 100));
    expect(out()).toMatch(/"event":"request","id":"cmpl-[^\n]*"finishReason":"length"[^\n]*"completionTokens":8/);
    expect(out()).not.toMatch(/wrangler|workerd/i);
    const page = await fetch(`http://127.0.0.1:${edgePort}/`);
    expect(await page.text()).toContain('SSSD edge demo');

    // The Worker's tuning vars pass through: SSSD_DEFAULT_CONCURRENCY=1 lets the dev key run one request at a time.
    const completion = (maxTokens: number, signal?: AbortSignal): Promise<Response> =>
      fetch(`http://127.0.0.1:${edgePort}/v1/completions`, {
        method: 'POST',
        signal,
        headers: { authorization: 'Bearer up-test-key', 'content-type': 'application/json' },
        body: JSON.stringify({ model: SERVED, prompt: 'Once upon a time', max_tokens: maxTokens, stream: true }),
      });
    const cut = new AbortController();
    const running = await completion(400, cut.signal);
    await running.body!.getReader().read();
    const second = await completion(4);
    expect(second.status).toBe(429);
    await second.body?.cancel();
    cut.abort();

    // ^C with a stream running: the pool drains it, the edge carries it to its end, then both stop. Signalled twice
    // 100 ms apart, as `timeout` does (the process, then its group): one signal delivered twice, not "stop now".
    let draining: Response;
    const until = Date.now() + 10_000;
    // The cut request's slot may come back only when its lease lapses (docs/edge.md, "Keys and limits").
    do {
      draining = await fetch(`http://127.0.0.1:${edgePort}/v1/completions`, {
        method: 'POST',
        headers: { authorization: 'Bearer up-test-key', 'content-type': 'application/json' },
        body: JSON.stringify({ model: SERVED, prompt: 'Once upon a time', max_tokens: 480, temperature: 1, seed: 3, logit_bias: { '1': -100 }, speculation: 'off', stream: true }),
      });
      if (draining.status === 429) await new Promise((r) => setTimeout(r, 250));
    } while (draining.status === 429 && Date.now() < until);
    expect(draining.status).toBe(200);
    const reader = draining.body!.getReader();
    let streamed = new TextDecoder().decode((await reader.read()).value);
    up.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 100));
    up.kill('SIGINT');
    for (let next = await reader.read(); !next.done; next = await reader.read()) streamed += new TextDecoder().decode(next.value);
    expect(streamed).toContain('"finish_reason":"length"');
    expect(streamed.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(await exited).toBe(0);
    expect(out()).toContain('stopped.');
    expect(out()).not.toContain('again; stopping now');
    expect(out()).not.toContain('cannot read its KV store');
    expect(await isPortFree(edgePort)).toBe(true);
    expect(await isPortFree(poolPort)).toBe(true);
  }, 150_000);

  it("says so when the edge cannot read its local KV store (a damaged file under SSSD_EDGE_STATE), which made every stored key a silent 503", async () => {
    // The stack above left its KV namespace's database in the state folder: overwritten with noise.
    const files = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name)) : [path.join(dir, e.name)]));
    const stores = files(state).filter((f) => f.includes('KVNamespaceObject') && f.endsWith('.sqlite') && !f.endsWith('metadata.sqlite'));
    expect(stores.length).toBeGreaterThan(0);
    try {
      for (const store of stores) {
        writeFileSync(store, randomBytes(4096));
        for (const extra of ['-wal', '-shm']) rmSync(store + extra, { force: true });
      }
      const { up, output, exited } = await startUp();
      expect(output()).toMatch(/warning: the edge cannot read its KV store \(.*\): every key stored there answers 503/);
      up.kill('SIGINT');
      expect(await exited).toBe(0);
    } finally {
      rmSync(path.join(state, 'v3'), { recursive: true, force: true });
    }
  }, 150_000);

  it('interrupted while it starts, exits leaving neither services nor the file that holds the pool token', async () => {
    // Its own temporary folder: the edge's secrets folder (sssd-edge-*) is made there.
    const tmp = mkdtempSync(path.join(tmpdir(), 'sssd-up-tmp-'));
    try {
      const { up, edgePort, poolPort, output, exited } = await spawnUp({ TMPDIR: tmp });
      const secrets = (): string[] => readdirSync(tmp).filter((name) => name.startsWith('sssd-edge-'));
      // Up to 60 s: on a loaded machine sssd up takes a while to get there.
      for (let i = 0; i < 1200 && secrets().length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(secrets()).toHaveLength(1);
      expect(output()).not.toContain('Ctrl-C stops both');
      up.kill('SIGINT');
      expect(await exited).toBe(130);
      expect(output()).toContain('SIGINT while starting');
      expect(secrets()).toEqual([]);
      let free = false;
      for (let i = 0; i < 100 && !free; i++) {
        free = (await isPortFree(edgePort)) && (await isPortFree(poolPort));
        if (!free) await new Promise((r) => setTimeout(r, 200));
      }
      expect(free, 'the edge or the pool still holds its port 20 s after sssd up was interrupted').toBe(true);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 150_000);

  it('exits 1, not 0, when a service dies under it (a supervisor must see it and restart), and 2 for what cannot work: one port for both, a bad dev key or token, a missing datastore, a pool flag the pool refuses', async () => {
    // Two stacks, started at once (one start's wait, not two), each with its own state folder; each loses a service.
    // workerd dying leaves wrangler running: the edge's silence is what stops the second stack (after 4 s of it here,
    // not the 20 s a busy edge is given).
    const states = [mkdtempSync(path.join(state, 'dies-')), mkdtempSync(path.join(state, 'dies-'))];
    const [first, second] = await Promise.all([startUp({ SSSD_EDGE_STATE: states[0] }), startUp({ SSSD_EDGE_STATE: states[1], SSSD_UP_SILENT_SECONDS: '4' })]);
    // The pool's processes (the relaunching parent and the pool itself) are the ones that hold its port on their command line.
    const pids = execFileSync('pgrep', ['-f', `sssd.mjs pool .*--port ${first.poolPort}`]).toString().trim().split('\n').map(Number);
    expect(pids.length).toBeGreaterThan(0);
    const workerd = execFileSync('pgrep', ['-f', `workerd serve .*entry=127\\.0\\.0\\.1:${second.edgePort}`]).toString().trim().split('\n').map(Number);
    expect(workerd.length).toBeGreaterThan(0);
    for (const pid of [...pids, ...workerd]) process.kill(pid, 'SIGKILL');
    expect(await first.exited).toBe(1);
    expect(first.output()).toMatch(/pool exited .*so the stack stopped/s);
    expect(await second.exited).toBe(1);
    expect(second.output()).toMatch(/edge stopped answering .*so the stack stopped/s);
    for (const dir of states) rmSync(dir, { recursive: true, force: true });
    // What cannot work is refused, each by an `sssd up` of its own, all at once: each exits as soon as it has said so.
    const port = await freePort();
    const elsewhere = mkdtempSync(path.join(tmpdir(), 'sssd-up-cwd-'));
    try {
      // The pool's own flags are read from where up runs: its speculative config there (the pool looked in the repository).
      writeFileSync(path.join(elsewhere, 'spec.json'), '{"num_speculative_tokens": "many"}');
      const earlyCases = [
        [{ SSSD_DEV_API_KEY: 'my key' }, /SSSD_DEV_API_KEY must be printable ASCII without spaces/],
        [{ SSSD_POOL_TOKEN: "it's" }, /SSSD_POOL_TOKEN cannot hold quotes, backslashes or newlines/],
        // The model's name: before a datastore build of minutes, not after it at the pool's start.
        [{ SSSD_MODEL_NAME: 'two words' }, /SSSD_MODEL_NAME must start with a letter or digit .* not "two words"/],
        // A file where the edge keeps its KV: said before the pool starts, not as wrangler's EEXIST after it.
        [{ SSSD_EDGE_STATE: models.stories260K.tokenizer }, /SSSD_EDGE_STATE=.* must be a folder .*a file is in the way/],
      ] as const;
      // So under `npm start` typed in that folder: npm runs the script in the repository and names the folder in INIT_CWD.
      // Another package's start script that cd's into the repository named its paths from there: taken from there.
      const viaNpmCases = [[path.join(repoRoot, 'package.json'), elsewhere], [path.join(elsewhere, 'package.json'), repoRoot]] as const;
      const [same, refused, relative, flagged, early, viaNpm] = await Promise.all([
        spawnUp({ SSSD_EDGE_PORT: String(port), SSSD_POOL_PORT: String(port) }).then(ended),
        // A pool that refuses what it was given exits 2, and so does up: restarting would meet the same refusal.
        spawnUp({}, ['--', '--max-active', 'abc']).then(ended),
        // A relative datastore is taken from where up runs (the pool runs in the repository, and did not find it).
        upIn(elsewhere, { SSSD_DATASTORE_SELF: 'off' }, ['--datastore', 'here.sssd-ds']),
        // Any file passes up's own check; the pool reads its flags before it.
        upIn(elsewhere, { SSSD_DATASTORE: models.stories260K.checkpoint }, ['--', '--speculative-config', '@spec.json']),
        Promise.all(earlyCases.map(([env]) => spawnUp(env).then(ended))),
        Promise.all(viaNpmCases.map(([packageJson]) => upIn(repoRoot, { npm_lifecycle_event: 'start', npm_package_json: packageJson, INIT_CWD: elsewhere, SSSD_DATASTORE_SELF: 'off' }, ['--datastore', 'here.sssd-ds']))),
      ]);
      expect(same.code).toBe(2);
      expect(same.output).toMatch(/cannot share port/);
      // What cannot work is refused before anything starts, with 2: a dev key no header can carry, a token wrangler cannot take.
      for (const [i, [, said]] of earlyCases.entries()) {
        expect(early[i].code).toBe(2);
        expect(early[i].output).toMatch(said);
        expect(early[i].output).not.toContain('starting pool');
      }
      expect(relative.code).toBe(2);
      expect(relative.stderr).toContain(`Datastore file ${path.join(elsewhere, 'here.sssd-ds')} does not exist`);
      for (const [i, [, from]] of viaNpmCases.entries()) {
        expect(viaNpm[i].code).toBe(2);
        expect(viaNpm[i].stderr).toContain(`Datastore file ${path.join(from, 'here.sssd-ds')} does not exist`);
      }
      expect(flagged.code).toBe(2);
      expect(flagged.stderr).toMatch(/--speculative-config spec\.json: num_speculative_tokens/);
      expect(refused.code).toBe(2);
      expect(refused.output).toMatch(/the stack did not start: pool exited .*--max-active must be a positive integer/s);
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  }, 150_000);

  it('says a truncated checkpoint first, by its path, with 2: not a datastore suggestion and then the pool failing on it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sssd-up-model-'));
    try {
      const truncated = path.join(dir, 'truncated.bin');
      const whole = readFileSync(models.stories260K.checkpoint);
      writeFileSync(truncated, whole.subarray(0, 100_000));
      const run = await spawnUp({ SSSD_MODEL: truncated, SSSD_TOKENIZER: models.stories260K.tokenizer });
      expect(await run.exited).toBe(2);
      // All that is said: nothing of a datastore, nothing started.
      expect(run.output()).toBe(`sssd: ${truncated}: truncated llama2.c checkpoint (100000 bytes, expected ${whole.length})\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('leaves neither the pool nor wrangler/workerd serving, nor the pool token on disk, when it is killed outright', async () => {
    const { up, edgePort, poolPort, exited } = await startUp();
    // This edge's secrets folder: the one whose env file names this pool.
    const secrets = readdirSync(tmpdir())
      .filter((name) => name.startsWith('sssd-edge-'))
      .map((name) => path.join(tmpdir(), name))
      .filter((dir) => {
        try {
          return readFileSync(path.join(dir, 'edge.env'), 'utf8').includes(`:${poolPort}`);
        } catch {
          return false;
        }
      });
    expect(secrets).toHaveLength(1);
    up.kill('SIGKILL');
    await exited;
    // No one signals the services' process groups now: they stop on their own, the pool as on SIGTERM.
    let free = false;
    for (let i = 0; i < 100 && !free; i++) {
      free = (await isPortFree(edgePort)) && (await isPortFree(poolPort));
      if (!free) await new Promise((r) => setTimeout(r, 200));
    }
    expect(free, 'the edge or the pool still holds its port 20 s after sssd up was killed').toBe(true);
    expect(existsSync(secrets[0]), `${secrets[0]} (the pool token) outlived sssd up`).toBe(false);
  }, 150_000);
});
