/**
 * The edge soak's checks against a stand-in that breaks the promises on
 * purpose (the real edge is soaked in test/e2e/openai-api.test.ts): each
 * broken promise is named.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { runEdgeSoak } from '../../../gpu-pool/bench/edge-soak';

describe('the edge soak', () => {
  it('names a 500 for a broken body, a 200 for one, a stream without [DONE] or cut, speculation changing the text, a key left refused, and the promises of vLLM fields and the Responses API broken', async () => {
    const server = http.createServer((req, res) => {
      let raw = '';
      req.on('data', (d: Buffer) => (raw += d.toString()));
      req.on('end', () => {
        let body: { stream?: boolean; speculation?: string; max_tokens?: number; n?: number; stop?: unknown } = {};
        try {
          body = JSON.parse(raw) as typeof body;
        } catch {
          res.statusCode = 500;
          res.end('{"error":{"message":"boom"}}');
          return;
        }
        // The final check's probe: refused, as a key whose slots leaked would be.
        if (body.max_tokens === 2) {
          res.statusCode = 429;
          res.setHeader('retry-after', '1');
          res.end('{"error":{"message":"Too many requests in flight"}}');
          return;
        }
        // Broken or not, answered as fine; speculation changes the text.
        const text = body.speculation === 'off' ? 'one' : 'two';
        res.statusCode = 200;
        if (body.stream && body.stop !== undefined) {
          // With a stop string: the connection dropped mid-stream.
          res.setHeader('content-type', 'text/event-stream');
          res.write(`data: ${JSON.stringify({ choices: [{ index: 0, text, finish_reason: null }] })}\n\n`);
          res.socket?.destroySoon();
          return;
        }
        if (body.stream) {
          res.setHeader('content-type', 'text/event-stream');
          res.end(`data: ${JSON.stringify({ choices: [{ index: 0, text, finish_reason: 'length' }] })}\n\n`);
        } else {
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ choices: [{ index: 0, text, finish_reason: 'length' }] }));
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      // Random traffic: soak again (other seeds) until each broken promise was met, however slow the machine.
      const wanted = [
        /a broken request got 500/,
        /a broken request got 200/,
        /a stream without data: \[DONE\]/,
        /speculation changed the answer/,
        /after the soak the key is still refused: 429/,
        /the connection was cut before a whole reply/,
        // Every field answered as fine: a refusal that is a 200, text no choice, no ids.
        /refusal of [a-z_.]+: got 200 naming undefined/,
        /choice: "(one|two)" \(finish_reason length\) is the start of none of the choices/,
        /return_token_ids: choice 0 has no token_ids/,
        /truncation: no prompt_token_ids with return_token_ids/,
        // The Responses API answered in chat's shape, its broken bodies as fine.
        /responses: a 200 that is no Response object as promised: no Response object/,
        /responses refusal of [a-z_.0-9]+: got 200 naming undefined/,
      ];
      let all = '';
      // The stand-in refuses the final check's probe for good: told at its first refusal, not after the 5 s margin a
      // real edge's lease is given (each soak of the loop waited it out).
      for (let seed = 2; seed < 22 && !wanted.every((w) => w.test(all)); seed++) {
        const report = await runEdgeSoak({ edgeUrl: url, key: 'k', seconds: 1, concurrency: 4, seed, model: 'm', leaseSeconds: 0, settleMarginSeconds: 0 });
        all += `${report.violations.join('\n')}\n`;
      }
      expect(all).toMatch(/a broken request got 500/);
      expect(all).toMatch(/a broken request got 200/);
      expect(all).toMatch(/a stream without data: \[DONE\]/);
      expect(all).toMatch(/speculation changed the answer/);
      expect(all).toMatch(/after the soak the key is still refused: 429/);
      expect(all).toMatch(/the connection was cut before a whole reply/);
      for (const w of wanted) expect(all).toMatch(w);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }, 90_000);
});
