/**
 * A soak of a running pool's HTTP API: many clients at once sending what real
 * and broken edges send (every method, greedy and sampled, penalties, logit
 * bias, logprobs, outputs contributed to the datastore while others draft
 * from it, random and malformed tries, trie pushes and cancels for live
 * and unknown ids, bodies too big, bodies that stall, clients that hang up
 * mid-stream), checking what a user relies on as it goes:
 *
 * - no answer is a 5xx other than `busy` (503 with Retry-After);
 * - a broken request gets a 4xx, never a 200;
 * - every stream that starts ends with `done`, never an `error` event;
 * - the same request with speculation off and on emits the same ids (pairs
 *   sent together, so they share batches with everything else);
 * - when the soak stops, the pool runs nothing and queues nothing.
 *
 * Seeded: the same seed sends the same sequence of requests (their timing,
 * and so the batches they meet, is the machine's).
 */
import { cutReason, soakAgent, soakRequest, type SoakReply, type SoakSendOptions } from './soak-request';
import { runSoakClients, type WeightedAction } from './soak-clients';
import { SoakTally, type SoakReport } from './soak-tally';

export type { SoakReport } from './soak-tally';
import { encodeEdgeTrie } from '../../shared/drafting/edge-trie';
import { seededRandom } from '../../shared/seeded-random';
import type { PoolEvent, PoolHealth } from '../../shared/protocol';

export interface SoakOptions {
  /** Aborted: start nothing more, finish what runs, and report (Ctrl-C). */
  stop?: AbortSignal;
  poolUrl: string;
  token: string | null;
  seconds: number;
  /** Clients at once. */
  concurrency: number;
  seed: number;
  /** From the pool's /v1/info. */
  vocabSize: number;
  contextLength: number;
  /** Longest generation asked for (keeps a soak's requests short). */
  maxTokens?: number;
  /** How long the pool may take to end its last generations after the soak (default 5,000 ms). */
  settleMs?: number;
}

const BODY_LIMIT_PROBE_BYTES = 9 * 1024 * 1024;

export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const random = seededRandom(opts.seed);
  const int = (n: number): number => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)];
  const maxTokens = opts.maxTokens ?? 120;
  const vocab = opts.vocabSize;
  const agent = soakAgent(opts.poolUrl);
  const tally = new SoakTally();
  const count = (what: string): void => tally.count(what);
  const violate = (what: string, keep = false): void => tally.violate(what, keep);
  const running = new Set<string>();
  let serial = 0;

  const headers = { ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}), 'content-type': 'application/json' };
  const send = (method: string, route: string, body: string | Buffer | null, options: SoakSendOptions = {}): Promise<SoakReply> =>
    soakRequest(agent, `${opts.poolUrl}${route}`, method, headers, body, options);

  /** Checks an answer that is not a stream's 200: busy must say when to retry; nothing else may be a 5xx. */
  const checkStatus = (what: string, reply: SoakReply, sent: string): void => {
    if (reply.status === 503) {
      if (!reply.retryAfter || !reply.text.includes('"busy"')) violate(`${what}: 503 without Retry-After or code busy: ${reply.text.slice(0, 200)} (sent ${sent.slice(0, 200)})`);
    } else if (reply.status >= 500) {
      violate(`${what}: ${reply.status} ${reply.text.slice(0, 200)} (sent ${sent.slice(0, 200)})`);
    }
  };

  /** A 200 stream's ids, and a violation unless it ended with `done`. */
  const readStream = (what: string, reply: SoakReply, sent: string, cutShort: boolean): number[] | null => {
    const lines = reply.text.split('\n').filter((l) => l.length > 0);
    const events: PoolEvent[] = [];
    for (const line of lines) {
      try {
        events.push(JSON.parse(line) as PoolEvent);
      } catch {
        if (!cutShort) violate(`${what}: a stream line is not JSON: ${line.slice(0, 120)}`);
        return null;
      }
    }
    const last = events.at(-1);
    if (cutShort) return null;
    // A queued generation whose place went to another tenant's ends so, with a hint (docs/protocol.md, "Admission"):
    // a refusal, as a busy 503 is. The soak sends no tenant, so a pool shared with an edge's traffic does this.
    if (last?.type === 'error' && last.code === 'busy' && last.retryAfterMs !== undefined) {
      count(`${what} displaced`);
      return null;
    }
    if (!last || last.type !== 'done') {
      violate(`${what}: the stream ended with ${last ? JSON.stringify(last).slice(0, 200) : 'nothing'} (sent ${sent.slice(0, 200)})`);
      return null;
    }
    return events.flatMap((e) => (e.type === 'tokens' ? e.ids : []));
  };

  const prompt = (): number[] => [1, ...Array.from({ length: 1 + int(60) }, () => 2 + int(vocab - 2))];
  const trie = (): string => {
    const kind = int(4);
    if (kind === 0) return Buffer.from(Array.from({ length: int(200) }, () => int(256))).toString('base64');
    if (kind === 1) return 'not base64!!';
    const n = 1 + int(100);
    const tokens = Array.from({ length: n }, () => (kind === 3 && int(10) === 0 ? vocab + 7 : int(vocab)));
    const parents = Array.from({ length: n }, (_, i) => (i === 0 ? -1 : int(i)));
    return Buffer.from(encodeEdgeTrie(tokens, parents, tokens.map(() => random()), int(3) === 0 ? int(n) : 0)).toString('base64');
  };
  /** A trie the pool takes: rooted at the prompt's last token, random continuations inside the vocabulary. */
  const validTrie = (promptIds: number[]): string => {
    const n = 1 + int(60);
    const tokens = Array.from({ length: n }, (_, i) => (i === 0 ? promptIds[promptIds.length - 1] : int(vocab)));
    const parents = Array.from({ length: n }, (_, i) => (i === 0 ? -1 : int(i)));
    return Buffer.from(encodeEdgeTrie(tokens, parents, tokens.map(() => random()))).toString('base64');
  };
  const sampling = (): Record<string, unknown> | undefined => {
    if (int(3) === 0) return undefined;
    if (int(3) === 0) return { temperature: 0, repetitionPenalty: 0.5 + random(), frequencyPenalty: random() - 0.5 };
    return {
      temperature: random() * 1.5,
      topP: 0.05 + random() * 0.95,
      topK: int(50),
      seed: int(1e9),
      ...(int(2) === 0 ? { repetitionPenalty: 0.5 + random(), presencePenalty: random() - 0.5 } : {}),
      ...(int(3) === 0 ? { logitBias: { [String(int(vocab))]: random() * 20 - 10 } } : {}),
    };
  };

  // Generations and pairs most of the time: they are what the other actions interfere with.
  const actions: WeightedAction[] = [
    // A generation, one in four cut off by its client.
    { weight: 6, run: async () => {
      const id = `soak-${opts.seed}-${serial++}`;
      const body = JSON.stringify({
        id,
        promptIds: prompt(),
        maxTokens: int(maxTokens),
        speculation: pick(['sssd', 'pld', 'context', 'off']),
        sampling: sampling(),
        ...(int(4) === 0 ? { logprobs: int(6) } : {}),
        ...(int(8) === 0 ? { promptLogprobs: int(3) } : {}),
        ...(int(2) === 0 ? { trie: trie() } : {}),
        ...(int(3) === 0 ? { cacheSalt: `s${int(3)}` } : {}),
        // Outputs fed to the global datastore while others draft from it.
        ...(int(6) === 0 ? { contributeToDatastore: true } : {}),
        ...(int(5) === 0 ? { useDatastore: false } : {}),
      });
      const cut = int(4) === 0;
      running.add(id);
      const reply = await send('POST', '/v1/generate', body, cut ? { hangUpAfterMs: int(30) } : {});
      running.delete(id);
      count(`generate ${reply.status}`);
      // One its client meant to cut off that came whole before the hang-up is checked as whole.
      if (reply.status === 200) readStream('generate', reply, body, cut && !reply.complete);
      else if (reply.status !== 0) checkStatus('generate', reply, body);
      else if (!cut) violate(`generate: ${cutReason(reply)} (sent ${body.slice(0, 200)})`);
    } },
    // The same request without and with speculation, sent together: the same ids.
    { weight: 4, run: async () => {
      const id = `soak-${opts.seed}-${serial++}`;
      const common = { promptIds: prompt(), maxTokens: 1 + int(maxTokens), sampling: sampling(), ...(int(4) === 0 ? { logprobs: int(4) } : {}), useDatastore: int(4) !== 0 };
      const method = pick(['sssd', 'pld', 'context']);
      const off = JSON.stringify({ ...common, id: `${id}-off`, speculation: 'off' });
      // Half the sssd ones with an edge trie (well formed, inside the vocabulary): it must not change the answer either.
      const shipped = method === 'sssd' && int(2) === 0 ? { trie: validTrie(common.promptIds) } : {};
      const on = JSON.stringify({ ...common, id: `${id}-on`, speculation: method, ...shipped });
      const [a, b] = await Promise.all([send('POST', '/v1/generate', off), send('POST', '/v1/generate', on)]);
      for (const [reply, sent] of [[a, off], [b, on]] as const) {
        if (reply.status === 0) violate(`pair: ${cutReason(reply)} (sent ${sent.slice(0, 200)})`);
      }
      if (a.status !== 200 || b.status !== 200) {
        count('pair refused');
        checkStatus('pair', a, off);
        checkStatus('pair', b, on);
        return;
      }
      const x = readStream('pair', a, off, false);
      const y = readStream('pair', b, on, false);
      if (!x || !y) return;
      const same = x.length === y.length && x.every((v, i) => v === y[i]);
      count(same ? 'pair same' : 'pair different');
      // Kept past the first violations listed: the one a soak is most for.
      if (!same) violate(`${method} emitted other ids than off for ${off.slice(0, 300)}: off ${x.slice(0, 20).join(',')}…, ${method} ${y.slice(0, 20).join(',')}…`, true);
    } },
    // A trie pushed to a running or unknown generation.
    { weight: 1, run: async () => {
      const target = running.size > 0 && int(2) === 0 ? pick([...running]) : `unknown-${int(100)}`;
      const body = JSON.stringify({ outputLength: int(50), trie: trie() });
      const reply = await send('POST', `/v1/generations/${target}/trie`, body);
      count(`push ${reply.status}`);
      checkStatus('push', reply, body);
    } },
    // A cancel of a running or unknown generation.
    { weight: 1, run: async () => {
      const target = running.size > 0 && int(2) === 0 ? pick([...running]) : `unknown-${int(100)}`;
      const reply = await send('DELETE', `/v1/generations/${target}`, null);
      count(`cancel ${reply.status}`);
      checkStatus('cancel', reply, target);
    } },
    // A broken request: a 4xx, never a 200 or a 5xx.
    { weight: 2, run: async () => {
      const id = `soak-${opts.seed}-${serial++}`;
      const body = pick([
        '{',
        '[]',
        '{"id":"x"}',
        JSON.stringify({ id, promptIds: [1, vocab + 3], maxTokens: 5 }),
        JSON.stringify({ id: 'bad id!', promptIds: [1], maxTokens: 1 }),
        JSON.stringify({ id, promptIds: Array.from({ length: opts.contextLength + 1 }, () => 5), maxTokens: 5 }),
        JSON.stringify({ id, promptIds: [1], maxTokens: -1 }),
        JSON.stringify({ id, promptIds: [1.5], maxTokens: 1 }),
        JSON.stringify({ id, promptIds: [1], maxTokens: 3, sampling: { temperature: 5 } }),
        JSON.stringify({ id, promptIds: [1], maxTokens: 3, logprobs: 50 }),
        JSON.stringify({ id, promptIds: [1], maxTokens: 3, sampling: { logitBias: { [String(vocab + 1)]: 1 } } }),
        JSON.stringify({ id, promptIds: [1], maxTokens: 3, speculation: 'maybe' }),
      ]);
      const reply = await send('POST', '/v1/generate', body);
      count(`broken ${reply.status}`);
      if (reply.status === 200 || reply.status >= 500) violate(`a broken request got ${reply.status}: ${body.slice(0, 120)} → ${reply.text.slice(0, 160)}`);
    } },
    // A body over the size limit: 413.
    { weight: 1, run: async () => {
      const reply = await send('POST', '/v1/generate', Buffer.alloc(BODY_LIMIT_PROBE_BYTES, 32));
      count(`oversized ${reply.status}`);
      if (reply.status !== 413 && reply.status !== 0) violate(`a ${BODY_LIMIT_PROBE_BYTES}-byte body got ${reply.status}, not 413`);
    } },
    // Half a body, then the client goes away.
    { weight: 1, run: async () => {
      const reply = await send('POST', '/v1/generate', JSON.stringify({ id: `soak-${opts.seed}-${serial++}`, promptIds: [1, 2], maxTokens: 5 }), { stallForMs: 50 + int(300) });
      count(`stalled ${reply.status}`);
      checkStatus('stalled', reply, 'half a body');
    } },
  ];
  await runSoakClients(actions, random, opts.seconds, opts.concurrency, opts.stop);

  // Every generation has ended: nothing may be left running or queued.
  let health: PoolHealth | null = null;
  const settleBy = Date.now() + (opts.settleMs ?? 5000);
  for (;;) {
    const reply = await send('GET', '/healthz', null);
    health = reply.status === 200 ? (JSON.parse(reply.text) as PoolHealth) : null;
    if ((health && health.active === 0 && health.queued === 0) || Date.now() > settleBy) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!health || health.active !== 0 || health.queued !== 0) {
    violate(`after the soak the pool still has ${health ? `${health.active} running and ${health.queued} queued` : 'no healthy answer'}`, true);
  }
  agent.destroy();
  return tally.report();
}
