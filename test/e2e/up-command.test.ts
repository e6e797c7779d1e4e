// `npm start` (= `sssd up`): one command brings up pool + edge, prints where to
// go, serves the API with the dev key, and Ctrl-C (SIGINT) stops both.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, isPortFree } from '../../launcher/service-process';
import { repoRoot } from '../../launcher/stack';

let child: ChildProcess | null = null;
const state = mkdtempSync(path.join(tmpdir(), 'sssd-up-'));

afterAll(() => {
  if (child && child.exitCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
  rmSync(state, { recursive: true, force: true });
});

describe('sssd up', () => {
  it('starts the stack, prints the URLs and the dev key, and stops on SIGINT', async () => {
    const [edgePort, poolPort] = [await freePort(), await freePort()];
    child = spawn(process.execPath, [path.join(repoRoot, 'bin/sssd.mjs'), 'up'], {
      cwd: repoRoot,
      env: { ...process.env, SSSD_EDGE_PORT: String(edgePort), SSSD_POOL_PORT: String(poolPort), SSSD_DEV_API_KEY: 'up-test-key', SSSD_EDGE_STATE: state, SSSD_DATASTORE_SELF: 'off' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => child!.on('exit', resolve));
    const deadline = Date.now() + 110_000;
    while (!output.includes('Ctrl-C stops both')) {
      if (child.exitCode !== null) throw new Error(`sssd up exited early:\n${output}`);
      if (Date.now() > deadline) throw new Error(`sssd up did not come up:\n${output}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(output).toContain(`http://127.0.0.1:${edgePort}/#key=up-test-key`);
    expect(output).toContain(`http://127.0.0.1:${edgePort}/v1`);

    const res = await fetch(`http://127.0.0.1:${edgePort}/v1/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer up-test-key', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 8, temperature: 0 }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(8);
    const page = await fetch(`http://127.0.0.1:${edgePort}/`);
    expect(await page.text()).toContain('SSSD edge demo');

    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(output).toContain('stopped.');
    expect(await isPortFree(edgePort)).toBe(true);
    expect(await isPortFree(poolPort)).toBe(true);
  }, 150_000);
});
