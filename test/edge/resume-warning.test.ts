// A resume as the edge tells of it, against a real pool behind a proxy that
// cuts the generation's stream: the warning it writes says "another pool"
// only where the edge has another (review h223: a single pool's edge said
// "resumes on another pool"), and the request log counts it only once it
// opened (review h228: a stream cut off with no pool to go on logged
// `resumes: 1`).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CompletionRun } from '../../edge/completion-run';
import { greedyPlan } from '../support/greedy-plan';
import type { GenerationOutcome } from '../../edge/request-log';
import { PoolPicker } from '../../edge/pool-picker';
import { servedModel, type ServedModel } from '../../edge/served-model';
import { UserCacheStore } from '../../edge/user-cache-store';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy';
import { realPoolForTests } from '../support/real-pool';

const pool = realPoolForTests();
let seq = 0;
const proxies: FaultProxy[] = [];

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
});

/**
 * Runs a greedy generation to its end with `urls` as the edge's pools: its
 * text, the warnings written meanwhile, how it ended as the request log has
 * it, and the error it ended with (null: none).
 */
async function runOn(urls: string[], poolStallMs = 30_000): Promise<{ text: string; warnings: string[]; outcome: GenerationOutcome; error: unknown }> {
  const picker = new PoolPicker(urls, pool.token);
  const background: Promise<unknown>[] = [];
  const waitUntil = (p: Promise<unknown>): void => void background.push(p);
  const model: ServedModel = await servedModel(picker, waitUntil, 60_000);
  const plan = greedyPlan(`resume-warning-${++seq}`, model.tokenizer.encode('Lily went to the park with her mom.', { bos: true }), 'resume-warning', { maxTokens: 40, ignoreEos: true });
  const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
  // No user cache is read or written (userCache null): the store is never asked.
  const run = new CompletionRun(plan, { picker, model, store: new UserCacheStore({} as KVNamespace, 1024), waitUntil, edgeTrieNodes: 0, poolStallMs, onFinish: () => undefined });
  await run.open();
  const reply = run.run();
  let text = '';
  let error: unknown = null;
  try {
    for (;;) {
      const next = await reply.next();
      if (next.done) break;
      for (const segment of next.value) text += segment.text;
    }
  } catch (err) {
    error = err;
  }
  await Promise.all(background);
  const warnings = warn.mock.calls.map((args) => args.map(String).join(' '));
  warn.mockRestore();
  return { text, warnings, outcome: run.outcome, error };
}

/** A proxy in front of the pool that cuts each generation's stream (not a resumed one's) after two tokens events. */
async function cutting(): Promise<FaultProxy> {
  const proxy = await startFaultProxy(pool.url);
  proxy.mode = 'cut';
  proxy.afterTokenEvents = 2;
  proxies.push(proxy);
  return proxy;
}

describe('a resume as the edge tells of it', () => {
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

  it('counts a resume only once it opened: a stream cut off with no pool to go on logs none', async () => {
    // The only pool cuts the stream, then answers every generate as a full pool does: no resume opens within the window.
    const only = await cutting();
    only.breaks = (id) => {
      if (id.includes('.r')) return false;
      only.busyAnswers = 1_000_000;
      return true;
    };
    const cut = await runOn([only.url], 2_000);
    expect(only.broken).toHaveLength(1);
    expect(cut.error).toMatchObject({ status: 503, code: 'pool_unavailable', message: expect.stringMatching(/^The generation was cut off after \d+ tokens: its pool, the only one here, failed and could not go on with it in the \d+ s since its last tokens\. A retry starts it over\.$/) });
    expect(cut.text).not.toBe('');
    expect(cut.outcome).toMatchObject({ resumes: 0, error: 'pool_unavailable' });
    expect(cut.outcome.poolsTried).toBeGreaterThan(1);
    // One that did open is counted (the same cut, the pool taking the resume).
    const resumed = await runOn([(await cutting()).url]);
    expect(resumed.error).toBeNull();
    expect(resumed.outcome).toMatchObject({ resumes: 1, error: null });
  });
});
