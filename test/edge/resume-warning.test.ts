// The warning a resume writes, against a real pool behind a proxy that cuts
// the generation's stream: "another pool" only where the edge has another
// (review h223: a single pool's edge said "resumes on another pool").
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CompletionRun, type CompletionPlan } from '../../edge/completion-run';
import { PoolPicker } from '../../edge/pool-picker';
import { servedModel, type ServedModel } from '../../edge/served-model';
import { UserCacheStore } from '../../edge/user-cache-store';
import { samplingSchema } from '../../shared/protocol';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy';
import { realPoolForTests } from '../support/real-pool';

const pool = realPoolForTests();
let seq = 0;
const proxies: FaultProxy[] = [];

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
});

/** Runs a greedy generation to its end with `urls` as the edge's pools: its text, and the warnings written meanwhile. */
async function runOn(urls: string[]): Promise<{ text: string; warnings: string[] }> {
  const picker = new PoolPicker(urls, pool.token);
  const background: Promise<unknown>[] = [];
  const waitUntil = (p: Promise<unknown>): void => void background.push(p);
  const model: ServedModel = await servedModel(picker, waitUntil, 60_000);
  const plan: CompletionPlan = {
    id: `resume-warning-${++seq}`,
    promptIds: model.tokenizer.encode('Lily went to the park with her mom.', { bos: true }),
    maxTokens: 40,
    sampling: samplingSchema.parse({ temperature: 0 }),
    speculate: false,
    stops: [],
    ignoreEos: true,
    stopTokenIds: [],
    minTokens: 0,
    includeStop: false,
    allowedTokenIds: null,
    badWords: [],
    choices: null,
    userCache: null,
    trie: null,
    trieFollows: false,
    logprobs: null,
    saveToCache: false,
    echo: null,
    cacheSalt: 'resume-warning',
    tenant: 'resume-warning',
    contributeToDatastore: false,
  };
  const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
  // No user cache is read or written (userCache null): the store is never asked.
  const run = new CompletionRun(plan, { picker, model, store: new UserCacheStore({} as KVNamespace, 1024), waitUntil, edgeTrieNodes: 0, poolStallMs: 30_000, onFinish: () => undefined });
  await run.open();
  const reply = run.run();
  let text = '';
  for (;;) {
    const next = await reply.next();
    if (next.done) break;
    for (const segment of next.value) text += segment.text;
  }
  await Promise.all(background);
  const warnings = warn.mock.calls.map((args) => args.map(String).join(' '));
  warn.mockRestore();
  return { text, warnings };
}

/** A proxy in front of the pool that cuts each generation's stream (not a resumed one's) after two tokens events. */
async function cutting(): Promise<FaultProxy> {
  const proxy = await startFaultProxy(pool.url);
  proxy.mode = 'cut';
  proxy.afterTokenEvents = 2;
  proxies.push(proxy);
  return proxy;
}

describe("a resume's warning", () => {
  it('says the generation goes on on the same pool where the edge has one pool, and on another where it has more', async () => {
    const whole = await runOn([pool.url]);
    expect(whole.warnings.filter((w) => w.includes('resumes'))).toEqual([]);

    const only = await cutting();
    const alone = await runOn([only.url]);
    expect(only.broken).toHaveLength(1);
    expect(alone.text).toBe(whole.text);
    const [single] = alone.warnings.filter((w) => w.includes('resumes'));
    expect(single).toMatch(/^edge: generation resume-warning-\d+ resumes on the same pool, the only one, once it answers again after \d+ tokens \(/);
    expect(single).toContain(`(${only.url}: `);

    // Two pools, each cutting a generation (not a resumed one): whichever is asked first cuts it, the other goes on with it.
    const pair = [await cutting(), await cutting()];
    const twice = await runOn(pair.map((proxy) => proxy.url));
    const cut = pair.filter((proxy) => proxy.broken.length > 0);
    expect(cut).toHaveLength(1);
    expect(twice.text).toBe(whole.text);
    const [several] = twice.warnings.filter((w) => w.includes('resumes'));
    expect(several).toMatch(/^edge: generation resume-warning-\d+ resumes on another pool \(or this one again, where none other is up\) after \d+ tokens \(/);
    expect(several).toContain(`(${cut[0].url}: `);
  });
});
