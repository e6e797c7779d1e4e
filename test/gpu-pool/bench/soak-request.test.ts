/**
 * The soak's HTTP client: a deployed Worker is https (docs/deploy.md soaks
 * one), and a server that hangs must end in a finding, not a soak that waits
 * for ever and then reports a pass.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cutReason, soakAgent, soakRequest } from '../../../gpu-pool/bench/soak-request';

const tls = (file: string): Buffer => readFileSync(path.join(__dirname, '../../support/tls', file));
const servers: Array<http.Server> = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function listen(server: http.Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

describe('a soak request', () => {
  it('reaches an https address (a deployed Worker), with the agent made for it', async () => {
    const port = await listen(https.createServer({ key: tls('localhost-key.pem'), cert: tls('localhost-cert.pem') }, (req, res) => res.end(`${req.method} ok`)));
    const url = `https://127.0.0.1:${port}`;
    expect(soakAgent(url)).toBeInstanceOf(https.Agent);
    expect(soakAgent('http://127.0.0.1:1')).not.toBeInstanceOf(https.Agent);
    // The test's own certificate: trusted here alone.
    const agent = new https.Agent({ keepAlive: true, ca: tls('localhost-cert.pem') });
    const reply = await soakRequest(agent, `${url}/v1/completions`, 'POST', {}, '{}');
    expect(reply).toMatchObject({ status: 200, text: 'POST ok', complete: true });
    agent.destroy();
  });

  it('ends a reply the server stops sending as hung, said so, rather than wait for ever', async () => {
    // Headers, one line, then nothing: a frozen pool.
    const port = await listen(
      http.createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.write('{"type":"start"}\n');
      }),
    );
    const agent = soakAgent(`http://127.0.0.1:${port}`);
    const started = performance.now();
    const reply = await soakRequest(agent, `http://127.0.0.1:${port}/v1/generate`, 'POST', {}, '{}', { idleMs: 300 });
    expect(performance.now() - started).toBeLessThan(5000);
    expect(reply).toMatchObject({ status: 0, complete: false, stalledMs: 300, text: '{"type":"start"}\n' });
    expect(cutReason(reply)).toBe('the server sent nothing for 0.3 s (hung)');
    agent.destroy();
  });
});
