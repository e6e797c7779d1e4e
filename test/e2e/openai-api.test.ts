// The edge's OpenAI-compatible API against the real stack: a pool process and
// `wrangler dev` with local KV, driven by the official `openai` client.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, stepCountIs, streamText, tool } from 'ai';
import OpenAI from 'openai';
import { zodFunction, zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, sha256Hex, startEdge, type RunningEdge } from '../../launcher/stack';
import { referenceGenerate, startAll, startTestStack, type GenerateOutput, type TestStack } from './stack-fixture';
import type { CompletionUsage } from '../../edge/completion-run';
import { runEdgeSoak } from '../../gpu-pool/bench/edge-soak';
import { metricValue, seriesValue } from '../gpu-pool/server/pool-process';
import { finishedAfter, finishedCounts } from './finished-counts';
import { sssdNodeArgs } from '../support/compiled-cli';
import { models } from '../support/shared-data';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import { choiceSeed } from '../../shared/sampling/request-seed';

// The edge's own usage type: the test reads what the edge declares it sends.
type SpeculationFigures = CompletionUsage['speculation'];
type UsageWithSpeculation = OpenAI.CompletionUsage & { speculation: SpeculationFigures };

const PROMPT = 'Once upon a time, there was a little dog named Max.';
const LIMITED_KEY = 'e2e-limited-key';
const KV_KEY = 'e2e-kv-key';
/** Its KV record is not JSON (a revocation edited by hand, its brace left out). */
const BROKEN_KV_KEY = 'e2e-broken-kv-key';
/** In KV, never used before `sssd key revoke` revokes it: the edge's first lookup of it reads the revoked record. */
const REVOCABLE_KV_KEY = 'e2e-revocable-kv-key';
/** Named in SSSD_API_KEYS by its hash in upper case, as some tools print it. */
const UPPER_HASH_KEY = 'e2e-upper-hash-key';
const SHARING_KEY = 'e2e-sharing-key';
/** One request in flight at a time: a slot it never gets back locks it out. */
const ONE_SLOT_KEY = 'e2e-one-slot-key';
/** Two requests a minute and one slot: a request refused for its n must not spend one of the two. */
const N_REFUSED_KEY = 'e2e-n-refused-key';
/** The soak's own key: its traffic spends no other test's rate or slots. */
const SOAK_KEY = 'e2e-soak-key';
/** A few requests a minute and one slot: a chunked upload's rate token and slot are seen in another request's answer. */
const CHUNKED_KEY = 'e2e-chunked-key';
/** One request a minute: spent, the next is refused for its rate whatever its body. */
const RATE_SPENT_KEY = 'e2e-rate-spent-key';
const BENCH_KEY = 'e2e-bench-key';

let stack: TestStack;
let client: OpenAI;
let model: string;
let reference: GenerateOutput;

beforeAll(async () => {
  [stack, reference] = await startAll([
    startTestStack({
      vars: {
        SSSD_API_KEYS: JSON.stringify({
          [sha256Hex(LIMITED_KEY)]: { tenant: 'limited', rpm: 2, concurrency: 1 },
          [sha256Hex(SHARING_KEY)]: { tenant: 'sharing', contributeToDatastore: true },
          [sha256Hex(ONE_SLOT_KEY)]: { tenant: 'one-slot', rpm: 6000, concurrency: 1 },
          [sha256Hex(N_REFUSED_KEY)]: { tenant: 'n-refused', rpm: 2, concurrency: 1 },
          [sha256Hex(SOAK_KEY)]: { tenant: 'soak', rpm: 100000, concurrency: 4 },
          [sha256Hex(CHUNKED_KEY)]: { tenant: 'chunked', rpm: 5, concurrency: 1 },
          [sha256Hex(RATE_SPENT_KEY)]: { tenant: 'rate-spent', rpm: 1 },
          [sha256Hex(BENCH_KEY)]: { tenant: 'bench', rpm: 1, concurrency: 1 },
          [sha256Hex(UPPER_HASH_KEY).toUpperCase()]: { tenant: 'upper' },
        }),
        SSSD_MAX_BODY_BYTES: String(64 * 1024),
        // The dev key runs four replies of eight choices at once (32 generations, each a slot).
        SSSD_DEFAULT_CONCURRENCY: '40',
        // Short, so a slot the runtime never gave back returns within the test.
        SSSD_CONCURRENCY_LEASE_SECONDS: '3',
        // Short, so a non-streamed reply's client that leaves is noticed well before the tiny model finishes.
        SSSD_WHOLE_REPLY_HEARTBEAT_MS: '100',
        // Short, so a body that never arrives whole is refused within the test.
        // 3 s: the chunked-upload test's stalled upload must still hold its slot while two more requests are answered.
        SSSD_BODY_TIMEOUT_SECONDS: '3',
        SSSD_BENCH_ROUTES: '1',
      },
      kvKeys: { [KV_KEY]: { tenant: 'from-kv', rpm: 100, concurrency: 4 }, [BROKEN_KV_KEY]: '{"tenant": "broken", "disabled": true', [REVOCABLE_KV_KEY]: { tenant: 'revocable', rpm: 100 } },
    }),
    referenceGenerate(PROMPT, 80),
  ]);
  client = new OpenAI({ apiKey: stack.devKey, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
  model = (await client.models.list()).data[0].id;
});

afterAll(async () => {
  await stack?.dispose();
});

/** POST with fetch, for bodies the SDK would not send. */
async function post(path: string, body: unknown, key: string | null = stack.devKey): Promise<{ status: number; headers: Headers; json: { error?: { message: string; type: string; param: string | null; code: string | null } } & Record<string, unknown> }> {
  const res = await fetch(`${stack.edgeUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, json: (await res.json()) as never };
}

interface UserCacheView {
  object: string;
  user: string | null;
  stored: boolean;
  bytes: number;
  readable: boolean;
  requests_merged: number;
  contexts: number;
  history: Array<{ token_ids: number[]; text: string }>;
}

/** GET /v1/user-cache: what the edge keeps of a user. */
async function userCache(user: string | null, key = stack.devKey, edgeUrl = stack.edgeUrl): Promise<UserCacheView> {
  const res = await fetch(`${edgeUrl}/v1/user-cache${user === null ? '' : `?user=${encodeURIComponent(user)}`}`, { headers: { authorization: `Bearer ${key}` } });
  expect(res.status).toBe(200);
  expect(res.headers.get('cache-control')).toBe('no-store');
  return (await res.json()) as UserCacheView;
}

/** The same, the name in a JSON body (one no URL can carry), as curl sends it: fetch sends no body with a GET. */
function userCacheByBody(user: string): Promise<UserCacheView> {
  const body = JSON.stringify({ user });
  return new Promise((resolve, reject) => {
    const headers = { authorization: `Bearer ${stack.devKey}`, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) };
    const req = http.request(`${stack.edgeUrl}/v1/user-cache`, { method: 'GET', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(text) as UserCacheView) : reject(new Error(`${res.statusCode}: ${text}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Waits until `merged` requests of the user are in their cache: the writes run after the responses (waitUntil), a
 * user's puts a second apart (KV's one write a second per key), so a fixed wait was a guess at a loaded machine's pace.
 */
async function untilCacheMerged(user: string | null, merged: number, key = stack.devKey, edgeUrl = stack.edgeUrl, look = () => userCache(user, key, edgeUrl)): Promise<UserCacheView> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const view = await look();
    if (view.requests_merged >= merged || Date.now() > deadline) {
      expect(view.requests_merged, `requests merged into ${user}'s cache`).toBe(merged);
      return view;
    }
    // Each look is a request of the key, against its rate limit.
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function streamCompletion(params: Record<string, unknown>, c: OpenAI = client): Promise<{ text: string; chunks: string[]; segmentsPerChunk: number[]; finish: string | null; stopReason: string | number | null | undefined; usage: UsageWithSpeculation | null }> {
  const stream = await c.completions.create({ model, stream: true, stream_options: { include_usage: true, sources: true }, ...params } as unknown as OpenAI.CompletionCreateParamsStreaming);
  const chunks: string[] = [];
  const segmentsPerChunk: number[] = [];
  let finish: string | null = null;
  let stopReason: string | number | null | undefined;
  let usage: UsageWithSpeculation | null = null;
  for await (const chunk of stream) {
    if (chunk.choices[0]) {
      chunks.push(chunk.choices[0].text);
      const sources = (chunk.choices[0] as { sssd_sources?: unknown[] }).sssd_sources;
      if (sources) segmentsPerChunk.push(sources.length);
      finish = chunk.choices[0].finish_reason ?? finish;
      if (chunk.choices[0].finish_reason) stopReason = (chunk.choices[0] as { stop_reason?: string | number | null }).stop_reason;
    }
    if (chunk.usage) usage = chunk.usage as UsageWithSpeculation;
  }
  return { text: chunks.join(''), chunks, segmentsPerChunk, finish, stopReason, usage };
}

describe('OpenAI-compatible API on the edge', () => {
  it('lists the served model, and retrieves it by name (or as default); another name is 404', async () => {
    expect(model).toBe('stories260K');
    const retrieved = await client.models.retrieve(model);
    expect(retrieved).toMatchObject({ id: 'stories260K', object: 'model', owned_by: 'sssd', context_length: 512, max_model_len: 512 });
    // `created` is when the checkpoint was written, not a placeholder.
    expect(retrieved.created).toBe(Math.floor(statSync(models.stories260K.checkpoint).mtimeMs / 1000));
    expect((await client.models.retrieve('default')).id).toBe('stories260K');
    const missing = await client.models.retrieve('gpt-4o').catch((err: unknown) => err);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect((missing as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
    const res = await fetch(`${stack.edgeUrl}/v1/models/stories260K`);
    expect(res.status).toBe(401);
  });

  it("counts a prompt's tokens as the completion it would be (vLLM's /tokenize), and turns ids back into text (/detokenize)", async () => {
    const messages = [{ role: 'system' as const, content: 'You tell stories.' }, { role: 'user' as const, content: PROMPT }];
    const [chat, completion] = await Promise.all([
      client.chat.completions.create({ model, messages, max_tokens: 1, temperature: 0 }),
      client.completions.create({ model, prompt: PROMPT, max_tokens: 1, temperature: 0 }),
    ]);
    const ofChat = await post('/tokenize', { model, messages, return_token_strs: true });
    expect(ofChat.status).toBe(200);
    expect(ofChat.json).toMatchObject({ count: chat.usage?.prompt_tokens, max_model_len: 512 });
    const ofPrompt = await post('/v1/tokenize', { model: 'default', prompt: PROMPT });
    expect(ofPrompt.json).toMatchObject({ count: completion.usage?.prompt_tokens, token_strs: null });
    const tokens = ofPrompt.json.tokens as number[];
    expect(tokens[0]).toBe(1);
    // Each id's text, joined, is the prompt (BOS prints nothing; the first piece's space goes after BOS, as run.c prints it).
    const strs = (await post('/tokenize', { prompt: PROMPT, return_token_strs: true, add_special_tokens: false })).json;
    expect((strs.token_strs as string[]).join('').trim()).toBe(PROMPT);
    expect(strs.count).toBe(tokens.length - 1);
    expect((await post('/detokenize', { model, tokens })).json).toEqual({ prompt: PROMPT });
    // Refusals name the field; a key is needed; the wrong method is a 405.
    const outside = await post('/detokenize', { tokens: [1, 100_000] });
    expect(outside.status).toBe(400);
    expect(outside.json.error).toMatchObject({ param: 'tokens.1', code: 'invalid_value' });
    expect((await post('/tokenize', { model: 'gpt-4o', prompt: 'x' })).json.error?.code).toBe('model_not_found');
    expect((await post('/tokenize', { messages: [{ role: 'user', content: 'x' }], add_generation_prompt: false })).json.error).toMatchObject({ param: 'add_generation_prompt', message: 'add_generation_prompt: only true is served (the chat template ends in the assistant turn)' });
    expect((await post('/tokenize', { prompt: 'x' }, null)).status).toBe(401);
    expect((await fetch(`${stack.edgeUrl}/tokenize`, { headers: { authorization: `Bearer ${stack.devKey}` } })).status).toBe(405);
  });

  it("takes OpenAI's and vLLM's 16 tokens for a completion that names no max_tokens (within the context), and the rest of the context for a chat", async () => {
    const completion = await client.completions.create({ model, prompt: 'Once upon a time', temperature: 0 });
    expect(completion.usage?.completion_tokens).toBe(16);
    expect(completion.choices[0].finish_reason).toBe('length');
    // A prompt with less room than that gets what is left, not a refusal for a number it never sent.
    const long = Array.from({ length: 505 }, () => 261);
    const near = await client.completions.create({ model, prompt: [1, ...long], temperature: 0, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(near.usage).toMatchObject({ prompt_tokens: 506, completion_tokens: 6 });
    // truncate_prompt_tokens -1 keeps what fits beside those 16, as vLLM's: the context less 16, and then 16 tokens.
    const cut = await client.completions.create({ model, prompt: [1, ...long, ...long], temperature: 0, ignore_eos: true, truncate_prompt_tokens: -1 } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(cut.usage).toMatchObject({ prompt_tokens: 512 - 16, completion_tokens: 16 });
    const chat = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Once upon a time' }], temperature: 0, ignore_eos: true } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(chat.usage!.completion_tokens).toBe(512 - chat.usage!.prompt_tokens);
  });

  it('gives the same greedy text as `sssd generate`, streamed or not, chat or completions', async () => {
    expect(reference.text.length).toBeGreaterThan(50);
    const whole = await client.completions.create({ model, prompt: PROMPT, max_tokens: 80, temperature: 0, user: 'greedy' });
    expect(whole.choices[0].text).toBe(reference.text);
    expect(whole.usage?.completion_tokens).toBe(reference.output_ids.filter((id) => id !== 1).length);
    // top_p 0 (OpenAI takes it) keeps the most likely token alone, whatever the temperature: the greedy text.
    const nucleusOfOne = await client.completions.create({ model, prompt: PROMPT, max_tokens: 80, temperature: 1.3, top_p: 0, seed: 5, user: 'top-p-0' });
    expect(nucleusOfOne.choices[0].text).toBe(reference.text);

    const streamed = await streamCompletion({ prompt: PROMPT, max_tokens: 80, temperature: 0, user: 'greedy-stream' });
    expect(streamed.text).toBe(reference.text);
    expect(streamed.usage?.speculation.steps).toBeGreaterThan(0);
    // Unsmoothed, a chunk is one verification step, each token with its own
    // source segment: a step's accepted drafts and its one token of the model,
    // so the chunks carry as many tokens beyond one each as drafts were
    // accepted (the pool's budget decides whether a step speculates at all:
    // none accepted, one token a chunk).
    const segments = streamed.segmentsPerChunk.reduce((a, b) => a + b, 0);
    expect(segments).toBe(streamed.usage!.completion_tokens);
    expect(segments - streamed.segmentsPerChunk.length).toBe(streamed.usage!.speculation.accepted_tokens);

    const chat = await client.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_completion_tokens: 80, temperature: 0, user: 'greedy-chat' });
    expect(chat.choices[0].message.content).toBe(reference.text);
    expect(chat.choices[0].message.refusal).toBeNull();
    expect(chat.object).toBe('chat.completion');

    const chatStream = await client.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 80, temperature: 0, stream: true });
    let chatText = '';
    for await (const chunk of chatStream) {
      chatText += chunk.choices[0]?.delta?.content ?? '';
      // Not asked for: the SDK's stream helper would copy it into its final object.
      if (chunk.choices[0]) expect(chunk.choices[0]).not.toHaveProperty('sssd_sources');
    }
    expect(chatText).toBe(reference.text);

    const plain = await streamCompletion({ prompt: PROMPT, max_tokens: 80, temperature: 0, speculation: 'off', user: 'greedy-off' });
    expect(plain.text).toBe(reference.text);
    expect(plain.usage?.speculation).toMatchObject({ method: 'off', drafts: 0, draft_tokens: 0 });

    const smooth = await streamCompletion({ prompt: PROMPT, max_tokens: 80, temperature: 0, user: 'greedy-smooth', stream_options: { include_usage: true, smooth: true, sources: true } });
    expect(smooth.text).toBe(reference.text);
    expect(Math.max(...smooth.segmentsPerChunk)).toBe(1);
  });

  it("drafts a user's second request from their cache, and no one else's request sees it", async () => {
    const prompt = 'Tom had a red ball. He liked to kick it in the garden every day.';
    const first = await streamCompletion({ prompt, max_tokens: 64, temperature: 0, user: 'alice' });
    expect(first.usage?.speculation.edge_accepted_tokens).toBe(0);
    const kept = await untilCacheMerged('alice', 1);
    // What is kept is shown to the user: the request verbatim, prompt and answer.
    expect(kept).toMatchObject({ object: 'user_cache', user: 'alice', stored: true, readable: true });
    expect(kept.history.map((h) => h.text.trim())).toEqual([`${prompt}${first.text}`.trim()]);
    // Only under the user's key, and with the one parameter the route reads.
    expect((await fetch(`${stack.edgeUrl}/v1/user-cache?user=alice`)).status).toBe(401);
    const misspelt = await fetch(`${stack.edgeUrl}/v1/user-cache?user_id=alice`, { headers: { authorization: `Bearer ${stack.devKey}` } });
    expect(misspelt.status).toBe(400);
    expect(((await misspelt.json()) as { error: { param: string } }).error.param).toBe('user_id');
    const second = await streamCompletion({ prompt, max_tokens: 64, temperature: 0, user: 'alice' });
    expect(second.text).toBe(first.text);
    expect(second.usage!.speculation.edge_accepted_tokens).toBeGreaterThan(10);
    expect(second.usage!.speculation.mean_acceptance_length).toBeGreaterThan(first.usage!.speculation.mean_acceptance_length);
    expect(second.usage!.speculation.steps).toBeLessThan(first.usage!.speculation.steps);

    // Another user of the same key, and the same user name under another key: no trace of alice's cache.
    const bob = await streamCompletion({ prompt, max_tokens: 64, temperature: 0, user: 'bob' });
    expect(bob.usage?.speculation.edge_accepted_tokens).toBe(0);
    const otherKey = new OpenAI({ apiKey: KV_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    const alias = await streamCompletion({ prompt, max_tokens: 64, temperature: 0, user: 'alice' }, otherKey);
    expect(alias.usage?.speculation.edge_accepted_tokens).toBe(0);
  });

  it('ships no trie for a reply of one token (nor reads or writes the cache for it), and one no deeper than the tokens left for a short one: the same text', async () => {
    const prompt = 'Sam had a little dog. The dog liked to run and jump in the grass.';
    const off = async (max_tokens: number) => (await streamCompletion({ prompt, max_tokens, temperature: 0, speculation: 'off' })).text;
    const first = await streamCompletion({ prompt, max_tokens: 48, temperature: 0, user: 'ivy' });
    await untilCacheMerged('ivy', 1);
    // The cache holds this very request: a full trie follows its history deep.
    const full = await streamCompletion({ prompt, max_tokens: 48, temperature: 0, user: 'ivy' });
    expect(full.text).toBe(first.text);
    expect(full.usage!.speculation.edge_trie_bytes).toBeGreaterThan(0);
    await untilCacheMerged('ivy', 2);
    const one = await streamCompletion({ prompt, max_tokens: 1, temperature: 0, user: 'ivy' });
    expect(one.text).toBe(await off(1));
    expect(one.usage!.speculation).toMatchObject({ edge_trie_bytes: 0, edge_accepted_tokens: 0, drafts: 0 });
    // Nor is the cache read or written for it, as for any request that does not draft at the edge.
    const three = await streamCompletion({ prompt, max_tokens: 3, temperature: 0, user: 'ivy' });
    expect(three.text).toBe(await off(3));
    // Two tokens deep at most (the pool's third is its own): a trie of a few nodes, not the full one's.
    expect(three.usage!.speculation.edge_trie_bytes).toBeGreaterThan(0);
    expect(three.usage!.speculation.edge_trie_bytes).toBeLessThan(full.usage!.speculation.edge_trie_bytes);
    await untilCacheMerged('ivy', 3);
    await new Promise((r) => setTimeout(r, 500)); // time for a write of the one-token reply, were there one
    expect((await userCache('ivy')).requests_merged).toBe(3);
  });

  it('keeps nothing in the user cache of a request that says store: false, on any of the three APIs', async () => {
    const prompt = 'Lily found a small blue box under her bed. She opened it slowly.';
    await streamCompletion({ prompt, max_tokens: 32, temperature: 0, user: 'hana', store: false });
    await client.chat.completions.create({ model, messages: [{ role: 'user', content: prompt }], max_tokens: 16, temperature: 0, user: 'hana', store: false });
    await client.responses.create({ model, input: prompt, max_output_tokens: 16, temperature: 0, user: 'hana', store: false });
    // The same without it is kept, and alone.
    const kept = await streamCompletion({ prompt, max_tokens: 32, temperature: 0, user: 'hana' });
    await untilCacheMerged('hana', 1);
    await new Promise((r) => setTimeout(r, 1500)); // a late write of the others, were there one
    const view = await userCache('hana');
    expect(view.requests_merged).toBe(1);
    expect(view.history.map((h) => h.text.trim())).toEqual([`${prompt}${kept.text}`.trim()]);
  });

  it("forgets a user's cache on DELETE /v1/user-cache, and keeps nothing of a request that does not draft at the edge", async () => {
    const prompt = 'Ben saw a big cat on the wall. The cat was sleeping in the sun.';
    const forget = async (user: string | null, key = stack.devKey) => {
      const res = await fetch(`${stack.edgeUrl}/v1/user-cache${user === null ? '' : `?user=${encodeURIComponent(user)}`}`, { method: 'DELETE', headers: { authorization: `Bearer ${key}` } });
      return { status: res.status, body: (await res.json()) as { deleted?: boolean; user?: string | null; error?: { param: string | null } } };
    };
    // speculation "off" reads and writes nothing: a later request finds no cache.
    await streamCompletion({ prompt, max_tokens: 48, temperature: 0, user: 'frank', speculation: 'off' });
    await new Promise((r) => setTimeout(r, 500)); // time for a write, were there one
    expect(await userCache('frank')).toMatchObject({ stored: false, requests_merged: 0, history: [] });
    expect((await forget('frank')).body).toMatchObject({ object: 'user_cache.deleted', user: 'frank', deleted: false });
    const first = await streamCompletion({ prompt, max_tokens: 48, temperature: 0, user: 'frank' });
    expect(first.usage!.speculation.edge_trie_bytes).toBe(0);
    await streamCompletion({ prompt, max_tokens: 48, temperature: 0, user: 'gina' });
    await untilCacheMerged('frank', 1);
    await untilCacheMerged('gina', 1);
    // Another key sees nothing of frank under that name.
    expect(await userCache('frank', KV_KEY)).toMatchObject({ stored: false });
    // Another key cannot reach frank's cache under that name.
    expect((await forget('frank', KV_KEY)).body.deleted).toBe(false);
    expect((await forget('frank')).body.deleted).toBe(true);
    expect(await userCache('frank')).toMatchObject({ stored: false });
    const after = await streamCompletion({ prompt, max_tokens: 48, temperature: 0, user: 'frank' });
    expect(after.text).toBe(first.text);
    expect(after.usage!.speculation.edge_trie_bytes).toBe(0);
    // gina's cache is untouched.
    const gina = await streamCompletion({ prompt, max_tokens: 48, temperature: 0, user: 'gina' });
    expect(gina.usage!.speculation.edge_accepted_tokens).toBeGreaterThan(10);
    expect((await forget('x'.repeat(257))).status).toBe(400);
    // A name sent compressed is a 415, as on the completion routes.
    const gzipped = await fetch(`${stack.edgeUrl}/v1/user-cache`, { method: 'DELETE', headers: { authorization: `Bearer ${stack.devKey}`, 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: gzipSync(JSON.stringify({ user: 'gina' })) });
    expect(gzipped.status).toBe(415);
    await gzipped.text();
    // A name no URL can carry (a lone surrogate has a cache of its own) is forgotten by a JSON body.
    await streamCompletion({ prompt, max_tokens: 48, temperature: 0, user: '\ud800' });
    await untilCacheMerged('\ud800', 1, undefined, undefined, () => userCacheByBody('\ud800'));
    const byBody = await fetch(`${stack.edgeUrl}/v1/user-cache`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${stack.devKey}`, 'content-type': 'application/json' },
      body: '{"user": "\\ud800"}',
    });
    expect(byBody.status).toBe(200);
    expect(((await byBody.json()) as { deleted: boolean }).deleted).toBe(true);
    // Counted against the key's limits like a completion, and said so.
    expect(byBody.headers.get('x-ratelimit-limit-requests')).not.toBeNull();
    // A misspelt parameter is refused, not taken for the key's unnamed user.
    expect((await fetch(`${stack.edgeUrl}/v1/user-cache?user_id=gina`, { method: 'DELETE', headers: { authorization: `Bearer ${stack.devKey}` } })).status).toBe(400);
    const unkeyed = await fetch(`${stack.edgeUrl}/v1/user-cache?user=gina`, { method: 'DELETE' });
    expect(unkeyed.status).toBe(401);
    const wrongMethod = await fetch(`${stack.edgeUrl}/v1/user-cache`, { method: 'PUT', headers: { authorization: `Bearer ${stack.devKey}` } });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('GET, DELETE');
    // It takes none of the key's slots: a key whose one slot a stream holds still forgets.
    const holding = await fetch(`${stack.edgeUrl}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ONE_SLOT_KEY}` },
      body: JSON.stringify({ model, prompt, max_tokens: 400, temperature: 0, stream: true, speculation: 'off' }),
    });
    expect(holding.status).toBe(200);
    const refused = await post('/v1/completions', { model, prompt: 'Lily', max_tokens: 2 }, ONE_SLOT_KEY);
    expect(refused.status).toBe(429);
    // Saying what holds it, and how long a slot whose client left stays taken (3 s here): a client that cancels and
    // retries at once meets it.
    expect(refused.json.error?.message).toBe('Too many requests in flight: at most 1 at once for this key, held by 1 request in progress (a request whose client left holds its slot up to 3 s).');
    expect((await forget('gina', ONE_SLOT_KEY)).status).toBe(200);
    await holding.text();
    // Holding no slot, its body is small: a name's JSON, not SSSD_MAX_BODY_BYTES parked in the isolate while it trickles.
    const big = await fetch(`${stack.edgeUrl}/v1/user-cache`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${stack.devKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'gina', pad: 'x'.repeat(5000) }),
    });
    expect(big.status).toBe(413);
    expect(((await big.json()) as { error: { message: string } }).error.message).toMatch(/limit 4096 bytes/);
  });

  it('refuses a body declared but read as none (a broken chunk size) instead of taking it for no body: no user forgotten, no conversation made', async () => {
    const edge = new URL(stack.edgeUrl);
    // Framings fetch will not send, written on a socket; the answer read to its Content-Length.
    const exchange = (method: string, path: string, framing: string, body: string): Promise<{ status: number; json: { error?: { code: string | null }; user?: string | null; deleted?: boolean; object?: string } }> =>
      new Promise((resolve, reject) => {
        const socket = connect(Number(edge.port), edge.hostname);
        let answer = '';
        socket.on('error', reject);
        socket.on('data', (d: Buffer) => {
          answer += d.toString();
          const head = /^HTTP\/1\.1 (\d+)[^]*?\r\ncontent-length: (\d+)\r\n[^]*?\r\n\r\n/i.exec(answer);
          if (head && Buffer.byteLength(answer) - Buffer.byteLength(head[0]) >= Number(head[2])) {
            socket.destroy();
            resolve({ status: Number(head[1]), json: JSON.parse(answer.slice(head[0].length)) as never });
          }
        });
        socket.write(`${method} ${path} HTTP/1.1\r\nHost: ${edge.host}\r\nAuthorization: Bearer ${KV_KEY}\r\nContent-Type: application/json\r\n${framing}\r\n${body}`);
      });
    // The key's unnamed user and bob, each with a cache (KV_KEY's: the dev key's unnamed user is every other test's).
    const kvClient = new OpenAI({ apiKey: KV_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    const prompt = 'Tom had a red kite. He took it to the hill on a windy day.';
    await streamCompletion({ prompt, max_tokens: 16, temperature: 0 }, kvClient);
    await streamCompletion({ prompt, max_tokens: 16, temperature: 0, user: 'bob' }, kvClient);
    const stored = async (user: string | null): Promise<boolean> => (await userCache(user, KV_KEY)).stored;
    // Written after the responses (waitUntil).
    for (const until = Date.now() + 15_000; !((await stored(null)) && (await stored('bob'))) && Date.now() < until; ) await new Promise((r) => setTimeout(r, 200));
    expect(await stored(null)).toBe(true);
    expect(await stored('bob')).toBe(true);
    // workerd (wrangler dev) hands the Worker this body, its chunk size no hex number, as an empty one: read as no
    // body, the delete forgot the unnamed user's cache, not bob's, and answered 200 (review h175).
    const broken = 'Transfer-Encoding: chunked\r\n';
    const deleted = await exchange('DELETE', '/v1/user-cache', broken, 'zz\r\n{"user":"bob"}\r\n0\r\n\r\n');
    expect(deleted.status).toBe(400);
    expect(deleted.json.error?.code).toBe('invalid_body');
    expect(await stored(null)).toBe(true);
    expect(await stored('bob')).toBe(true);
    // It made an empty conversation, its metadata and items dropped.
    const created = await exchange('POST', '/v1/conversations', broken, 'zz\r\n{"metadata":{"topic":"x"}}\r\n0\r\n\r\n');
    expect(created).toMatchObject({ status: 400, json: { error: { code: 'invalid_body' } } });
    // An empty chunked body reads the same here, and is refused with it.
    expect((await exchange('POST', '/v1/conversations', broken, '0\r\n\r\n')).status).toBe(400);
    // A JSON null is a body, and no object: a 400 as [] is (it made an empty conversation).
    const nullBody = await exchange('POST', '/v1/conversations', 'Content-Length: 4\r\n', 'null');
    expect(nullBody).toMatchObject({ status: 400, json: { error: { code: 'invalid_value' } } });
    // No body, with Content-Length: 0 or no framing at all, is still none: a conversation with nothing in it, the
    // unnamed user forgotten; a whole chunked body is read as before.
    for (const framing of ['Content-Length: 0\r\n', '']) {
      expect(await exchange('POST', '/v1/conversations', framing, ''), framing).toMatchObject({ status: 200, json: { object: 'conversation' } });
    }
    expect(await exchange('DELETE', '/v1/user-cache', broken, 'e\r\n{"user":"bob"}\r\n0\r\n\r\n')).toMatchObject({ status: 200, json: { user: 'bob', deleted: true } });
    expect(await exchange('DELETE', '/v1/user-cache', '', '')).toMatchObject({ status: 200, json: { user: null, deleted: true } });
    expect(await stored(null)).toBe(false);
  });

  it("drafts a user's repeated greedy request from what they were answered before, verbatim", async () => {
    // Stories that share most of their phrases: the cache's n-gram table alone drafts a repeat no better than the others.
    const prompts = ['Lily went to the park with her mom.', 'Lily went to the park with her dad.', 'Lily went to the park with her dog.'];
    const firsts = [];
    for (const prompt of prompts) firsts.push(await streamCompletion({ prompt, max_tokens: 96, temperature: 0, user: 'carol' }));
    await untilCacheMerged('carol', 3);
    const again = await streamCompletion({ prompt: prompts[0], max_tokens: 96, temperature: 0, user: 'carol' });
    expect(again.text).toBe(firsts[0].text);
    const spec = again.usage!.speculation;
    // 96 tokens in 3 steps here, 93 of them from the edge; with the n-gram table alone 14 steps and 75.
    expect(spec.edge_accepted_tokens).toBeGreaterThan(85);
    expect(spec.steps).toBeLessThanOrEqual(6);
  });

  it("keeps what each of a user's concurrent requests added to their cache, not only the last one's", async () => {
    // Both read the (empty) cache at the start; the short one writes first,
    // and the long one's write must not drop it.
    const short = { prompt: 'Tom went to the shop with his dad.', max_tokens: 48, temperature: 0, user: 'dave' };
    const long = { prompt: 'Sue found a big box in the yard.', max_tokens: 240, temperature: 0, logit_bias: { '1': -100 }, user: 'dave' };
    const [first] = await Promise.all([streamCompletion(short), streamCompletion(long)]);
    expect(first.usage!.speculation.edge_accepted_tokens).toBe(0);
    // The long one's write lands within a second of the short one's (a user's puts a second apart, KV's limit), and
    // must not have dropped it.
    const kept = await untilCacheMerged('dave', 2);
    expect(kept.history).toHaveLength(2);
    const again = await streamCompletion(short);
    expect(again.text).toBe(first.text);
    // Drafted from its own verbatim history: 48 tokens in 2 steps here; 30,
    // none of them from the edge, when the long one's write dropped it.
    expect(again.usage!.speculation.edge_accepted_tokens).toBeGreaterThan(40);
    expect(again.usage!.speculation.steps).toBeLessThanOrEqual(3);
  });

  it("keeps every one of a user's requests that end at the same moment", async () => {
    // One batch at the pool, the same length: they end in the same step, and their cache writes meet.
    const asks = ['The cat sat on a mat.', 'A boy had a blue kite.', 'The sun was hot today.', 'Mia baked a small cake.'].map((prompt) => ({ prompt, max_tokens: 40, temperature: 0, logit_bias: { '1': -100 }, user: 'erin' }));
    const firsts = await Promise.all(asks.map((ask) => streamCompletion(ask)));
    // A user's puts a second apart (KV's one write a second per key): the first alone at once, the other three together
    // a second later.
    expect((await untilCacheMerged('erin', 4)).history).toHaveLength(4);
    for (const [i, ask] of asks.entries()) {
      const again = await streamCompletion(ask);
      expect(again.text).toBe(firsts[i].text);
      // Drafted from its own verbatim history (the n-gram table alone drafts ~half of it from the edge).
      expect(again.usage!.speculation.edge_accepted_tokens, ask.prompt).toBeGreaterThan(32);
    }
  });

  it("reports each token's log-probability and the most likely alternatives, streamed or whole, chat or completions", async () => {
    const maxTokens = 24;
    // Legacy completions: logprobs = how many alternatives.
    const whole = await client.completions.create({ model, prompt: PROMPT, max_tokens: maxTokens, temperature: 0, logprobs: 2 });
    const lp = whole.choices[0].logprobs!;
    expect(lp.tokens).toHaveLength(maxTokens);
    expect(lp.tokens!.join('')).toBe(whole.choices[0].text);
    expect(whole.choices[0].text).toBe(reference.text.slice(0, whole.choices[0].text.length));
    for (let i = 0; i < maxTokens; i++) {
      expect(lp.token_logprobs![i]).toBeLessThanOrEqual(0);
      const top = Object.values(lp.top_logprobs![i]);
      // Greedy: the emitted token is the most likely one.
      expect(Math.max(...top)).toBeCloseTo(lp.token_logprobs![i], 4);
    }
    expect(lp.text_offset![1]).toBe(lp.tokens![0].length);
    // Streamed, with speculation: the same tokens and log-probabilities, chunk by chunk.
    const stream = await client.completions.create({ model, prompt: PROMPT, max_tokens: maxTokens, temperature: 0, logprobs: 2, stream: true });
    const streamed: number[] = [];
    const streamedTokens: string[] = [];
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (c?.logprobs) {
        streamed.push(...c.logprobs.token_logprobs!);
        streamedTokens.push(...c.logprobs.tokens!);
      }
    }
    expect(streamedTokens).toEqual(lp.tokens);
    streamed.forEach((x, i) => expect(x).toBeCloseTo(lp.token_logprobs![i], 3));
    // Chat: logprobs true, top_logprobs n.
    const chat = await client.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 3 });
    const content = chat.choices[0].logprobs!.content!;
    expect(content).toHaveLength(12);
    expect(content.map((t) => t.token).join('')).toBe(chat.choices[0].message.content);
    for (const t of content) {
      expect(t.top_logprobs).toHaveLength(3);
      expect(t.top_logprobs[0].logprob).toBeCloseTo(t.logprob, 4);
      expect(t.bytes).toEqual([...new TextEncoder().encode(t.token)]);
    }
    // A reply the story's end token ended lists that token last, with no text: the entries number the tokens counted.
    const ended = await client.completions.create({ model, prompt: 'Once upon a time, Tom', max_tokens: 300, temperature: 0, logprobs: 1 });
    expect(ended.choices[0].finish_reason).toBe('stop');
    expect(ended.choices[0].logprobs!.tokens).toHaveLength(ended.usage!.completion_tokens);
    expect(ended.choices[0].logprobs!.tokens!.at(-1)).toBe('');
    expect(ended.choices[0].logprobs!.tokens!.join('')).toBe(ended.choices[0].text);
    const endedChat = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Once upon a time, Tom' }], max_tokens: 300, temperature: 0, logprobs: true });
    expect(endedChat.choices[0].finish_reason).toBe('stop');
    expect(endedChat.choices[0].logprobs!.content).toHaveLength(endedChat.usage!.completion_tokens);
    expect(endedChat.choices[0].logprobs!.content!.at(-1)).toMatchObject({ token: '', bytes: [] });
    // Not asked: null, as OpenAI sends it.
    const plain = await client.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 4, temperature: 0 });
    expect(plain.choices[0].logprobs).toBeNull();
    // top_logprobs without logprobs is a clear 400.
    const bad = await post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }], top_logprobs: 2 });
    expect(bad.status).toBe(400);
    expect(bad.json.error?.param).toBe('top_logprobs');
  });

  it('writes legacy top_logprobs most likely first in the JSON text, though the tokens are named by integers ("2", "0"), streamed or whole', async () => {
    const ask = { model, prompt: 'Tom was 1', max_tokens: 1, temperature: 0, logprobs: 3 };
    const raw = async (body: object): Promise<string> => {
      const res = await fetch(`${stack.edgeUrl}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.devKey}` }, body: JSON.stringify(body) });
      expect(res.status).toBe(200);
      return res.text();
    };
    // The first top_logprobs object as written: parsing would order integer keys again.
    const written = (text: string): Array<[string, number]> => {
      const at = text.indexOf('"top_logprobs":[{');
      expect(at).toBeGreaterThan(-1);
      const object = text.slice(at + '"top_logprobs":['.length, text.indexOf('}', at) + 1);
      return Array.from(object.matchAll(/"((?:[^"\\]|\\.)*)":(-?[0-9.e+-]+)/g), (m): [string, number] => [JSON.parse(`"${m[1]}"`) as string, Number(m[2])]);
    };
    const whole = await raw(ask);
    const entries = written(whole);
    const reply = JSON.parse(whole) as { choices: Array<{ text: string; logprobs: { tokens: string[]; top_logprobs: Array<Record<string, number>> } }> };
    expect(entries).toHaveLength(3);
    expect(new Map(entries)).toEqual(new Map(Object.entries(reply.choices[0].logprobs.top_logprobs[0])));
    // Names JavaScript would put first: the case this is about.
    expect(entries.filter(([name]) => /^[0-9]+$/.test(name)).length, JSON.stringify(entries)).toBeGreaterThanOrEqual(2);
    expect(entries.map(([, lp]) => lp)).toEqual(entries.map(([, lp]) => lp).sort((a, b) => b - a));
    // Greedy: the first is the chosen token.
    expect(entries[0][0]).toBe(reply.choices[0].logprobs.tokens[0]);
    const streamed = await raw({ ...ask, stream: true });
    const frame = streamed.split('\n').find((line) => line.startsWith('data: {') && line.includes('"top_logprobs":[{'));
    expect(frame).toBeDefined();
    expect(written(frame!).map(([name]) => name)).toEqual(entries.map(([name]) => name));
  });

  it("serves vLLM's logprob_token_ids: at each generated token the chosen one, then the listed ids' log-probabilities, streamed or whole, chat or completions", async () => {
    const listed = [2, 300, 511];
    const byId = (k: string) => Number(k.slice('token_id:'.length));
    // Completions, by id (return_tokens_as_token_ids), beside the natural top 5 the same request gets.
    const ask = { model, prompt: PROMPT, max_tokens: 12, temperature: 0, return_tokens_as_token_ids: true };
    const whole = await client.completions.create({ ...ask, logprobs: 0, logprob_token_ids: listed } as OpenAI.CompletionCreateParamsNonStreaming);
    const natural = await client.completions.create({ ...ask, logprobs: 5 } as OpenAI.CompletionCreateParamsNonStreaming);
    const lp = whole.choices[0].logprobs!;
    expect(whole.choices[0].text).toBe(natural.choices[0].text);
    expect(lp.tokens).toEqual(natural.choices[0].logprobs!.tokens);
    lp.top_logprobs!.forEach((top, i) => {
      const chosen = byId(lp.tokens![i]);
      expect(Object.keys(top).map(byId)).toEqual([chosen, ...listed.filter((id) => id !== chosen)]);
      expect(top[lp.tokens![i]]).toBeCloseTo(lp.token_logprobs![i], 6);
      // Where a listed id is among the natural top 5, the two agree.
      for (const [k, v] of Object.entries(natural.choices[0].logprobs!.top_logprobs![i])) if (k in top) expect(top[k], `token ${i} ${k}`).toBeCloseTo(v, 3);
      for (const id of listed) expect(top[`token_id:${id}`]).toBeLessThanOrEqual(0);
    });
    // Streamed, with speculation: the same entries, chunk by chunk.
    const stream = await client.completions.create({ ...ask, logprobs: 0, logprob_token_ids: listed, stream: true } as OpenAI.CompletionCreateParamsStreaming);
    const streamedTop: Array<Record<string, number>> = [];
    for await (const chunk of stream) if (chunk.choices[0]?.logprobs) streamedTop.push(...(chunk.choices[0].logprobs.top_logprobs as Array<Record<string, number>>));
    expect(streamedTop.map((t) => Object.keys(t))).toEqual(lp.top_logprobs!.map((t) => Object.keys(t!)));
    streamedTop.forEach((t, i) => Object.entries(t).forEach(([k, v]) => expect(v).toBeCloseTo(lp.top_logprobs![i]![k], 3)));
    // Chat: every listed id whatever top_logprobs says, the chosen token first; streamed the same.
    const chatAsk = { model, messages: [{ role: 'user' as const, content: PROMPT }], max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 1, logprob_token_ids: listed, return_tokens_as_token_ids: true };
    const chat = await client.chat.completions.create(chatAsk as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const content = chat.choices[0].logprobs!.content!;
    expect(content).toHaveLength(8);
    for (const t of content) {
      expect(t.top_logprobs.map((e) => byId(e.token))).toEqual([byId(t.token), ...listed.filter((id) => id !== byId(t.token))]);
      expect(t.top_logprobs[0].logprob).toBeCloseTo(t.logprob, 6);
    }
    const chatStream = await client.chat.completions.create({ ...chatAsk, stream: true } as OpenAI.ChatCompletionCreateParamsStreaming);
    const streamedContent: Array<{ token: string; top_logprobs: Array<{ token: string; logprob: number }> }> = [];
    for await (const chunk of chatStream) streamedContent.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    expect(streamedContent.map((t) => t.top_logprobs.map((e) => e.token))).toEqual(content.map((t) => t.top_logprobs.map((e) => e.token)));
    streamedContent.forEach((t, i) => t.top_logprobs.forEach((e, j) => expect(e.logprob).toBeCloseTo(content[i].top_logprobs[j].logprob, 3)));
    // Refused by name: without logprobs, an id outside the vocabulary, an echo that generates nothing.
    for (const [path, body] of [
      ['/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }], logprob_token_ids: [5] }],
      ['/v1/completions', { model, prompt: 'hi', logprob_token_ids: [5] }],
      ['/v1/completions', { model, prompt: 'hi', logprobs: 1, logprob_token_ids: [5, 512] }],
      ['/v1/completions', { model, prompt: 'hi', echo: true, max_tokens: 0, logprobs: 1, logprob_token_ids: [5] }],
    ] as const) {
      const bad = await post(path, body);
      expect(bad.status, JSON.stringify(body)).toBe(400);
      expect(bad.json.error?.param).toBe('logprob_token_ids');
    }
  });

  it('applies frequency, presence and repetition penalties, the same text with speculation or without', async () => {
    const base = { model, prompt: PROMPT, max_tokens: 40, temperature: 0 };
    const penalties = { frequency_penalty: 1.2, presence_penalty: 0.4, repetition_penalty: 1.2 };
    const plainText = (await client.completions.create(base)).choices[0].text;
    const drafted = await client.completions.create({ ...base, ...penalties } as OpenAI.CompletionCreateParamsNonStreaming);
    const undrafted = await client.completions.create({ ...base, ...penalties, speculation: 'off' } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(drafted.choices[0].text).toBe(undrafted.choices[0].text);
    expect(drafted.choices[0].text).not.toBe(plainText);
    expect((drafted.usage as UsageWithSpeculation).speculation.method).toBe('sssd');
    // A banned token never appears; an id outside the vocabulary is a 400 naming the field.
    const withIds = await client.completions.create({ ...base, logprobs: 0 });
    const banned = withIds.choices[0].logprobs!.tokens![0];
    const firstId = reference.output_ids[0];
    const biased = await client.completions.create({ ...base, logit_bias: { [String(firstId)]: -100 } });
    expect(biased.choices[0].text.startsWith(banned)).toBe(false);
    const outside = await post('/v1/completions', { ...base, logit_bias: { '999999': 1 } });
    expect(outside.status).toBe(400);
    expect(outside.json.error?.param).toBe('logit_bias');
  });

  it('echoes the prompt, and scores it with max_tokens 0, as evaluation harnesses ask (echo, logprobs, token ids)', async () => {
    // lm-eval's loglikelihood request: context + continuation as token ids, nothing generated.
    const ids = [...reference.prompt_ids, ...reference.output_ids.slice(0, 6)];
    const scored = await client.completions.create({ model, prompt: ids, max_tokens: 0, echo: true, logprobs: 1, temperature: 0 });
    const lp = scored.choices[0].logprobs!;
    expect(lp.tokens).toHaveLength(ids.length);
    expect(lp.token_logprobs![0]).toBeNull();
    expect(lp.top_logprobs![0]).toBeNull();
    expect(scored.usage?.completion_tokens).toBe(0);
    // The continuation is the model's greedy output: each of its tokens is the most likely one (lm-eval's is_greedy).
    for (let i = reference.prompt_ids.length; i < ids.length; i++) {
      const top = Object.entries(lp.top_logprobs![i] as Record<string, number>);
      expect(top).toHaveLength(1);
      expect(top[0][0]).toBe(lp.tokens![i]);
      expect(top[0][1]).toBeCloseTo(lp.token_logprobs![i]!, 4);
    }
    // Echo with a completion: the prompt as sent, then the generated text (the same as without echo).
    const echoed = await client.completions.create({ model, prompt: PROMPT, max_tokens: 8, echo: true, temperature: 0 });
    const plain = await client.completions.create({ model, prompt: PROMPT, max_tokens: 8, temperature: 0 });
    expect(echoed.choices[0].text).toBe(PROMPT + plain.choices[0].text);
    // Scored: the tokens join to that text, and each text_offset points at its token in it (harnesses cut the prompt off by offset).
    const offsets = await client.completions.create({ model, prompt: PROMPT, max_tokens: 8, echo: true, logprobs: 0, temperature: 0 });
    const { tokens, text_offset } = offsets.choices[0].logprobs!;
    expect(offsets.choices[0].text).toBe(echoed.choices[0].text);
    expect(tokens!.join('')).toBe(offsets.choices[0].text);
    tokens!.forEach((t, i) => expect(offsets.choices[0].text.slice(text_offset![i], text_offset![i] + t.length)).toBe(t));
    expect(text_offset![tokens!.length - 8]).toBe(PROMPT.length);
    // Token ids ending inside a character (a byte piece): its U+FFFD is in the text and in its token, so they still join.
    const cut = await post('/v1/completions', { model, prompt: [1, 233], max_tokens: 0, echo: true, logprobs: 0 });
    const cutChoice = (cut.json as unknown as { choices: Array<{ text: string; logprobs: { tokens: string[] } }> }).choices[0];
    expect(cutChoice.text).toBe('\ufffd');
    expect(cutChoice.logprobs.tokens.join('')).toBe(cutChoice.text);
    // Streamed: the prompt's chunk first.
    const stream = await client.completions.create({ model, prompt: PROMPT, max_tokens: 8, echo: true, temperature: 0, stream: true });
    const chunks: string[] = [];
    for await (const chunk of stream) if (chunk.choices[0]?.text) chunks.push(chunk.choices[0].text);
    expect(chunks[0]).toBe(PROMPT);
    expect(chunks.join('')).toBe(echoed.choices[0].text);
    // lm-eval's own payload: a batch of one token list, max_tokens 1; the same scores as the flat list.
    const batched = await post('/v1/completions', { model, prompt: [ids], max_tokens: 1, echo: true, logprobs: 1, temperature: 0, seed: 1234 });
    expect(batched.status).toBe(200);
    const batchedLp = (batched.json.choices as OpenAI.CompletionChoice[])[0].logprobs!;
    expect(batchedLp.tokens!.slice(0, ids.length)).toEqual(lp.tokens);
    batchedLp.token_logprobs!.slice(1, ids.length).forEach((v, i) => expect(v).toBeCloseTo(lp.token_logprobs![i + 1]!, 4));
    const two = await post('/v1/completions', { model, prompt: [ids, ids], max_tokens: 1, echo: true });
    expect(two.status).toBe(400);
    expect(two.json.error?.message).toMatch(/exactly one/);
    // A prompt that fills the whole context can be scored, not continued.
    const full = Array.from({ length: 512 }, (_, i) => [...reference.prompt_ids, ...reference.output_ids][i % 90]);
    const fullScore = await client.completions.create({ model, prompt: full, max_tokens: 0, echo: true, logprobs: 0, temperature: 0 });
    expect(fullScore.choices[0].logprobs!.tokens).toHaveLength(512);
    const fullContinued = await post('/v1/completions', { model, prompt: full, max_tokens: 1, echo: true });
    expect(fullContinued.json.error).toMatchObject({ code: 'context_length_exceeded', param: 'max_tokens' });
    expect(fullContinued.json.error?.message).toMatch(/max_tokens 0 with echo scores the prompt/);
    // max_tokens 0 without echo asks for nothing: a 400 naming the field.
    const nothing = await post('/v1/completions', { model, prompt: 'hi', max_tokens: 0 });
    expect(nothing.status).toBe(400);
    expect(nothing.json.error?.param).toBe('max_tokens');
  });

  it("with vLLM's continuous_usage_stats, every streamed chunk carries its choice's usage so far; without include_usage, none does", async () => {
    type Running = { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null | undefined;
    const chunksOf = async (body: Record<string, unknown>): Promise<Array<{ choices: Array<{ index: number; finish_reason: string | null }>; usage?: Running }>> => {
      const res = await fetch(`${stack.edgeUrl}${'messages' in body ? '/v1/chat/completions' : '/v1/completions'}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.devKey}` },
        body: JSON.stringify({ model, max_tokens: 12, temperature: 1, seed: 3, stream: true, ...body }),
      });
      expect(res.status).toBe(200);
      return (await res.text())
        .split('\n')
        .filter((l) => l.startsWith('data: {'))
        .map((l) => JSON.parse(l.slice(6)) as { choices: Array<{ index: number; finish_reason: string | null }>; usage?: Running });
    };
    for (const body of [{ prompt: PROMPT, n: 2 }, { messages: [{ role: 'user', content: PROMPT }] }]) {
      const chunks = await chunksOf({ ...body, stream_options: { include_usage: true, continuous_usage_stats: true } });
      const last = chunks.at(-1)!;
      expect(last.choices).toHaveLength(0);
      const so = new Map<number, number>();
      for (const chunk of chunks.slice(0, -1)) {
        const usage = chunk.usage!;
        expect(usage.prompt_tokens).toBe(last.usage!.prompt_tokens);
        expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);
        // Per choice, never fewer than in its chunk before.
        const index = chunk.choices[0].index;
        expect(usage.completion_tokens).toBeGreaterThanOrEqual(so.get(index) ?? 0);
        so.set(index, usage.completion_tokens);
      }
      // A chat's role chunk comes before any token; each choice's last count is what the final usage sums.
      if ('messages' in body) expect(chunks[0].usage!.completion_tokens).toBe(0);
      expect([...so.values()].reduce((a, b) => a + b, 0)).toBe(last.usage!.completion_tokens);
      // Without include_usage, as vLLM's: no usage at all, continuous or final.
      const without = await chunksOf({ ...body, stream_options: { continuous_usage_stats: true } });
      expect(without.every((c) => c.usage === undefined)).toBe(true);
    }
  });

  it("serves vLLM's prompt_logprobs: the prompt's scores as echo with logprobs gives them, per choice (completions) or once (chat)", async () => {
    type Entry = { logprob: number; rank: number | null; decoded_token: string };
    type Scored = { choices: Array<{ text: string; prompt_logprobs?: Array<Record<string, Entry> | null>; logprobs?: OpenAI.CompletionChoice.Logprobs }>; prompt_logprobs?: unknown; usage: { prompt_tokens: number } };
    const ids = [...reference.prompt_ids, ...reference.output_ids.slice(0, 6)];
    const echoed = await client.completions.create({ model, prompt: ids, max_tokens: 0, echo: true, logprobs: 2, temperature: 0 });
    const lp = echoed.choices[0].logprobs!;
    const res = await post('/v1/completions', { model, prompt: ids, max_tokens: 2, prompt_logprobs: 2, temperature: 0, n: 2 });
    expect(res.status).toBe(200);
    const body = res.json as unknown as Scored;
    const list = body.choices[0].prompt_logprobs!;
    expect(list).toHaveLength(ids.length);
    expect(list[0]).toBeNull();
    // Every choice has the same prompt, and the same scores.
    expect(body.choices[1].prompt_logprobs).toEqual(list);
    for (let i = 1; i < ids.length; i++) {
      const own = list[i]![String(ids[i])];
      expect(own.logprob).toBeCloseTo(lp.token_logprobs![i]!, 4);
      // The 2 most likely, ranked, the same log-probabilities as echo's alternatives.
      const ranked = Object.values(list[i]!).filter((e) => e.rank !== null).sort((a, b) => a.rank! - b.rank!);
      expect(ranked.map((e) => e.rank).slice(0, 2)).toEqual([1, 2]);
      const echoTop = Object.values(lp.top_logprobs![i] as Record<string, number>).sort((a, b) => b - a).slice(0, 2);
      ranked.slice(0, 2).forEach((e, r) => expect(e.logprob).toBeCloseTo(echoTop[r], 4));
      // The continuation is the model's greedy output: each of its tokens ranks first. Every token has its rank in the
      // vocabulary, past the two listed too.
      if (i >= reference.prompt_ids.length) expect(own.rank).toBe(1);
      expect(own.rank).toBeGreaterThanOrEqual(1);
      if (own.logprob < ranked[1].logprob - 1e-6) expect(own.rank).toBeGreaterThan(2);
    }
    // Both asked: echo's alternatives follow logprobs (1), the list prompt_logprobs (2).
    const both = (await post('/v1/completions', { model, prompt: ids, max_tokens: 0, echo: true, logprobs: 1, prompt_logprobs: 2, temperature: 0 })).json as unknown as Scored;
    expect(both.choices[0].prompt_logprobs).toEqual(list);
    expect(both.choices[0].logprobs!.token_logprobs).toEqual(lp.token_logprobs);
    for (const top of both.choices[0].logprobs!.top_logprobs!.slice(1)) expect(Object.keys(top as object).length).toBeLessThanOrEqual(2);
    // Chat: once, at the top of the response, 0 = each token's own alone.
    const chat = await post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, prompt_logprobs: 0, temperature: 0 });
    expect(chat.status).toBe(200);
    const chatBody = chat.json as unknown as Scored;
    const chatList = chatBody.prompt_logprobs as Array<Record<string, Entry> | null>;
    expect(chatList).toHaveLength(chatBody.usage.prompt_tokens);
    for (const position of chatList.slice(1)) {
      expect(Object.keys(position!)).toHaveLength(1);
      expect(Object.values(position!)[0].rank).toBeGreaterThanOrEqual(1);
    }
    expect(chatBody.choices[0]).not.toHaveProperty('prompt_logprobs');
    // vLLM's refusals: none above 0 in a stream, nor the whole vocabulary (-1: past the 20 allowed).
    for (const extra of [{ prompt_logprobs: 1, stream: true }, { prompt_logprobs: -1 }]) {
      const refused = await post('/v1/completions', { model, prompt: PROMPT, max_tokens: 2, ...extra });
      expect(refused.status, JSON.stringify(extra)).toBe(400);
      expect(refused.json.error?.param).toBe('prompt_logprobs');
    }
    // 0 in a stream is taken, and sends nothing of it (as vLLM).
    const streamed = await fetch(`${stack.edgeUrl}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.devKey}` },
      body: JSON.stringify({ model, prompt: PROMPT, max_tokens: 2, prompt_logprobs: 0, stream: true }),
    });
    expect(streamed.status).toBe(200);
    const sse = await streamed.text();
    expect(sse).toContain('data: [DONE]');
    expect(sse).not.toContain('prompt_logprobs');
  });

  it('answers n choices, each its own generation (choice 0 the seed, the others a hash of it), whole or streamed with their indices', async () => {
    const params = { model, prompt: PROMPT, max_tokens: 16, temperature: 1, seed: 5, n: 3, logprobs: 0 };
    const whole = await client.completions.create(params);
    expect(whole.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    // Each choice its own log-probabilities, offsets from its own start.
    for (const c of whole.choices) {
      expect(c.logprobs!.tokens!.join('')).toBe(c.text);
      expect(c.logprobs!.text_offset![0]).toBe(0);
    }
    // Choice i is what a lone request with its choice seed gives: choice 0 the seed itself (n = 1 writes what it did).
    const [alone, hashed, next] = await Promise.all([
      client.completions.create({ ...params, n: 1 }),
      client.completions.create({ ...params, n: 1, seed: choiceSeed(5, 2) }),
      client.completions.create({ ...params, seed: 6 }),
    ]);
    expect(whole.choices[0].text).toBe(alone.choices[0].text);
    expect(whole.choices[2].text).toBe(hashed.choices[0].text);
    expect(new Set(whole.choices.map((c) => c.text)).size).toBeGreaterThan(1);
    // The neighbouring seed's choices are none of these (review h190: with seed + i, seed 6's first two were seed 5's last two).
    for (const c of next.choices) expect(whole.choices.map((w) => w.text)).not.toContain(c.text);
    // An int64 seed past 2^53: still a seed of its own per choice.
    const big = await client.completions.create({ ...params, seed: 1e17 });
    expect(new Set(big.choices.map((c) => c.text)).size).toBeGreaterThan(1);
    // One fingerprint for all of them: one model, one sampler.
    expect(whole.system_fingerprint).toMatch(/^fp_[0-9a-f]{10}$/);
    for (const other of [alone, hashed, next, big]) expect(other.system_fingerprint).toBe(whole.system_fingerprint);
    const usage = whole.usage as UsageWithSpeculation;
    const tokensOf = (text: string) => (text.length > 0 ? 1 : 0); // at least one token per non-empty choice
    expect(usage.completion_tokens).toBeGreaterThanOrEqual(whole.choices.reduce((n, c) => n + tokensOf(c.text), 0));
    expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);
    // Streamed chat: every choice's deltas carry its index, each choice finishes, usage covers all.
    const stream = await client.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 12, temperature: 1, seed: 9, n: 2, stream: true, stream_options: { include_usage: true } });
    const texts = ['', ''];
    const finished = [false, false];
    let streamedUsage: OpenAI.CompletionUsage | undefined;
    // As OpenAI documents include_usage: every chunk but the last carries `usage: null` (a strict client checks it).
    const usageFields: unknown[] = [];
    // Each choice's role first, under its own index.
    const roles: number[] = [];
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        if (c.delta.role) roles.push(c.index);
        texts[c.index] += c.delta.content ?? '';
        if (c.finish_reason) finished[c.index] = true;
      }
      usageFields.push('usage' in chunk ? chunk.usage : 'absent');
      if (chunk.usage) streamedUsage = chunk.usage;
      // Every chunk carries it, as OpenAI's and vLLM's do.
      expect(chunk.system_fingerprint).toBe(whole.system_fingerprint);
    }
    expect(usageFields.slice(0, -1).every((u) => u === null)).toBe(true);
    expect(usageFields.at(-1)).toMatchObject({ completion_tokens: expect.any(Number) });
    expect(finished).toEqual([true, true]);
    expect(roles).toEqual([0, 1]);
    const wholeChat = await client.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 12, temperature: 1, seed: 9, n: 2 });
    expect(texts).toEqual(wholeChat.choices.map((c) => c.message.content));
    expect(wholeChat.system_fingerprint).toBe(whole.system_fingerprint);
    expect(streamedUsage?.completion_tokens).toBe(wholeChat.usage?.completion_tokens);
    const tooMany = await post('/v1/completions', { model, prompt: 'hi', n: 9 });
    expect(tooMany.status).toBe(400);
    expect(tooMany.json.error?.param).toBe('n');
  });

  it("tells the seed a request ran with (drawn where it sent none) and the fingerprint in headers, and that seed sent back gives the same reply", async () => {
    const params = { model, prompt: PROMPT, max_tokens: 24, temperature: 1, n: 2 };
    const { data: unseeded, response } = await client.completions.create(params).withResponse();
    const seed = response.headers.get('x-sssd-seed');
    expect(seed).toMatch(/^\d+$/);
    expect(Number(seed)).toBeLessThan(2 ** 53);
    expect(response.headers.get('x-sssd-fingerprint')).toBe(unseeded.system_fingerprint);
    // Every choice again, from choice 0's seed (the others' are derived from it).
    const again = await client.completions.create({ ...params, seed: Number(seed) });
    expect(again.choices.map((c) => c.text)).toEqual(unseeded.choices.map((c) => c.text));
    // A streamed chat: the same headers; a seed sent is told as the pool takes it (-1 as 2^53 - 1, docs/edge.md).
    const { data: stream, response: streamed } = await client.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 4, temperature: 1, seed: -1, stream: true }).withResponse();
    for await (const chunk of stream) expect(chunk.system_fingerprint).toBe(unseeded.system_fingerprint);
    expect(streamed.headers.get('x-sssd-seed')).toBe(String(2 ** 53 - 1));
    expect(streamed.headers.get('x-sssd-fingerprint')).toBe(unseeded.system_fingerprint);
    // Greedy and unseeded: no seed to tell, the fingerprint still.
    const greedy = await post('/v1/completions', { model, prompt: 'Once', max_tokens: 2, temperature: 0 });
    expect(greedy.headers.get('x-sssd-seed')).toBeNull();
    expect(greedy.headers.get('x-sssd-fingerprint')).toBe(unseeded.system_fingerprint);
    expect(greedy.json.system_fingerprint).toBe(unseeded.system_fingerprint);
  });

  it('stops at a stop string that spans tokens and chunks, without sending any of it', async () => {
    const full = reference.text;
    const stop = full.slice(20, 31); // crosses token boundaries in mid-word
    const expected = full.slice(0, full.indexOf(stop));
    for (const speculation of ['auto', 'off']) {
      const streamed = await streamCompletion({ prompt: PROMPT, max_tokens: 80, temperature: 0, stop: [stop, 'zzz'], speculation, user: `stop-${speculation}` });
      expect(streamed.text).toBe(expected);
      expect(streamed.finish).toBe('stop');
      // vLLM's stop_reason: which stop string ended it.
      expect(streamed.stopReason).toBe(stop);
      for (const chunk of streamed.chunks) expect(stop.startsWith(chunk) && chunk.length > 0).toBe(false);
      expect(streamed.usage!.completion_tokens).toBeLessThan(80);
    }
    const whole = await client.completions.create({ model, prompt: PROMPT, max_tokens: 80, temperature: 0, stop });
    expect(whole.choices[0].text).toBe(expected);
    expect(whole.choices[0].finish_reason).toBe('stop');
    expect((whole.choices[0] as { stop_reason?: string | null }).stop_reason).toBe(stop);
    // Ended by the model's end token or a length: no stop string, null (as vLLM's).
    const ended = await client.completions.create({ model, prompt: PROMPT, max_tokens: 3, temperature: 0, stop: ['zzz'] });
    expect(ended.choices[0].finish_reason).toBe('length');
    expect((ended.choices[0] as { stop_reason?: string | null }).stop_reason).toBeNull();
    // A stop string completed only by the decoder's last held byte (a lone lead byte, U+FFFD) is a stop too.
    const held = { prompt: PROMPT, max_tokens: 1, temperature: 0, logit_bias: { '231': 100 }, stop: ['\ufffd'] };
    const flushed = await client.completions.create({ model, ...held });
    expect(flushed.choices[0]).toMatchObject({ text: '', finish_reason: 'stop' });
    expect((await streamCompletion({ ...held, user: 'stop-flush' })).finish).toBe('stop');
  });

  it("serves vLLM's include_stop_str_in_output, stop_token_ids, ignore_eos, min_tokens and allowed_token_ids, the same with speculation and without", async () => {
    const full = reference.text;
    const eos = '1'; // stories260K's end token
    for (const speculation of ['auto', 'off']) {
      const ask = (params: Record<string, unknown>) => client.completions.create({ model, prompt: PROMPT, max_tokens: 40, temperature: 0, speculation, ...params } as OpenAI.CompletionCreateParamsNonStreaming);
      const reasonOf = (c: OpenAI.Completion) => (c.choices[0] as { stop_reason?: string | number | null }).stop_reason;
      // The stop string sent with the text before it.
      const stop = full.slice(20, 31);
      const withStop = await ask({ stop, include_stop_str_in_output: true });
      expect(withStop.choices[0].text, speculation).toBe(full.slice(0, full.indexOf(stop) + stop.length));
      expect(reasonOf(withStop)).toBe(stop);
      const streamed = await streamCompletion({ prompt: PROMPT, max_tokens: 40, temperature: 0, speculation, stop, include_stop_str_in_output: true, user: `incl-${speculation}` });
      expect(streamed.text).toBe(withStop.choices[0].text);
      // A stop token id: the reply ends where the model first gives it, its id the stop_reason, its text left out unless asked for.
      const at = reference.output_ids.findIndex((id, i) => i >= 3 && id !== 1);
      const stopId = reference.output_ids[at];
      const first = reference.output_ids.indexOf(stopId);
      const byId = await ask({ stop_token_ids: [stopId] });
      expect(byId.choices[0].finish_reason).toBe('stop');
      expect(reasonOf(byId)).toBe(stopId);
      expect(byId.usage!.completion_tokens).toBe(first + 1);
      const byIdShown = await ask({ stop_token_ids: [stopId], include_stop_str_in_output: true });
      expect(full.startsWith(byIdShown.choices[0].text) && byIdShown.choices[0].text.startsWith(byId.choices[0].text)).toBe(true);
      expect(byIdShown.choices[0].text.length).toBeGreaterThan(byId.choices[0].text.length);
      // The end token forced: the reply ends at once, unless ignore_eos (then it runs to max_tokens), or min_tokens holds it back.
      const forced = { logit_bias: { [eos]: 100 }, max_tokens: 6 };
      expect((await ask(forced)).usage!.completion_tokens).toBe(1);
      const ignored = await ask({ ...forced, ignore_eos: true });
      expect(ignored.choices[0].finish_reason).toBe('length');
      expect(ignored.usage!.completion_tokens).toBe(6);
      const held = await ask({ ...forced, min_tokens: 4 });
      expect(held.choices[0].finish_reason).toBe('stop');
      expect(held.usage!.completion_tokens).toBe(5);
      expect(held.choices[0].text.length).toBeGreaterThan(0);
      // Only the allowed ids: here the first three words' tokens, so the reply repeats a few of them.
      const few = reference.output_ids.slice(0, 3);
      const narrowed = await ask({ allowed_token_ids: few, logprobs: 0 });
      expect(narrowed.usage!.completion_tokens).toBe(40);
      expect(narrowed.choices[0].text.length).toBeGreaterThan(0);
      // A stop string is not looked for in the first min_tokens tokens' text.
      const early = full.slice(0, 3);
      expect((await ask({ stop: early })).choices[0].text).toBe('');
      const late = await ask({ stop: early, min_tokens: 3 });
      expect(late.choices[0].text.length).toBeGreaterThan(0);
      expect(full.startsWith(late.choices[0].text)).toBe(true);
    }
    // Out of range: named.
    await expect(client.completions.create({ model, prompt: PROMPT, max_tokens: 5, min_tokens: 6 } as OpenAI.CompletionCreateParamsNonStreaming)).rejects.toMatchObject({ status: 400, param: 'min_tokens' });
    await expect(client.completions.create({ model, prompt: PROMPT, max_tokens: 5, stop_token_ids: [512] } as OpenAI.CompletionCreateParamsNonStreaming)).rejects.toMatchObject({ status: 400, param: 'stop_token_ids' });
    await expect(client.completions.create({ model, prompt: PROMPT, max_tokens: 5, allowed_token_ids: [3, 512] } as OpenAI.CompletionCreateParamsNonStreaming)).rejects.toMatchObject({ status: 400, param: 'allowed_token_ids' });
    await expect(client.completions.create({ model, prompt: PROMPT, max_tokens: 5, allowed_token_ids: [] } as OpenAI.CompletionCreateParamsNonStreaming)).rejects.toMatchObject({ status: 400, param: 'allowed_token_ids' });
  });

  it("serves vLLM's bad_words: the word's tokens never in the reply, the same with speculation and without", async () => {
    // The reference reply names Max twice; the word's tokens as vLLM makes them (llama2.c's: with its leading space).
    const tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)), 'llama2c');
    const word = tokenizer.encode('Max', { bos: false });
    expect(word.length).toBeGreaterThan(1);
    const holds = (ids: number[]) => ids.some((_, i) => word.every((t, j) => ids[i + j] === t));
    expect(holds(reference.output_ids.slice(0, 40))).toBe(true);
    const ids: number[][] = [];
    for (const speculation of ['auto', 'off']) {
      const c = await client.completions.create({ model, prompt: PROMPT, max_tokens: 40, temperature: 0, speculation, bad_words: [' Max'], logprobs: 0, return_tokens_as_token_ids: true } as OpenAI.CompletionCreateParamsNonStreaming);
      ids.push(c.choices[0].logprobs!.tokens!.map((t) => Number(t.slice('token_id:'.length))));
      const streamed = await streamCompletion({ prompt: PROMPT, max_tokens: 40, temperature: 0, speculation, bad_words: ['Max'], user: `bad-words-${speculation}` });
      expect(streamed.text, speculation).toBe(c.choices[0].text);
    }
    expect(ids[0]).toEqual(ids[1]);
    expect(ids[0]).toHaveLength(40);
    expect(holds(ids[0])).toBe(false);
    // Its first tokens are the reference's own: only the word's last token is masked, after the others.
    expect(ids[0].slice(0, word.length - 1)).toEqual(word.slice(0, -1));
    await expect(client.completions.create({ model, prompt: PROMPT, max_tokens: 5, bad_words: ['Max', ' '] } as OpenAI.CompletionCreateParamsNonStreaming)).rejects.toMatchObject({ status: 400, param: 'bad_words' });
    await expect(client.completions.create({ model, prompt: PROMPT, max_tokens: 5, bad_words: 'Max' } as unknown as OpenAI.CompletionCreateParamsNonStreaming)).rejects.toMatchObject({ status: 400, param: 'bad_words' });
    // Masks that leave the first token nothing to be are the request's fault: a 400 saying so, not a failed model.
    const none = await post('/v1/completions', { model, prompt: PROMPT, max_tokens: 5, allowed_token_ids: [...tokenizer.eosIds], min_tokens: 2 });
    expect(none.status).toBe(400);
    expect(none.json.error).toMatchObject({ param: 'allowed_token_ids', message: expect.stringMatching(/^allowed_token_ids leaves no token to generate: every one is .*before min_tokens/) });
  });

  it("serves vLLM's structured_outputs.choice and guided_choice: the reply is one of the choices, whole or streamed, chat or completions, the same with speculation and without", async () => {
    const choices = [' Max was happy', ' Max was a good dog and he liked to play', ' Lily'];
    const answers = ['yes', 'no', 'maybe not'];
    for (const speculation of ['auto', 'off']) {
      const whole = await client.completions.create({ model, prompt: PROMPT, max_tokens: 40, temperature: 0, speculation, structured_outputs: { choice: choices } } as OpenAI.CompletionCreateParamsNonStreaming);
      expect(choices, speculation).toContain(whole.choices[0].text);
      expect(whole.choices[0].finish_reason).toBe('stop');
      const streamed = await streamCompletion({ prompt: PROMPT, max_tokens: 40, temperature: 0, speculation, guided_choice: choices, user: `choice-${speculation}` });
      expect(streamed.text, speculation).toBe(whole.choices[0].text);
      expect(streamed.finish).toBe('stop');
      const messages = [{ role: 'user' as const, content: 'Is Max a good dog?' }];
      const chat = await client.chat.completions.create({ model, messages, max_tokens: 20, temperature: 0, speculation, structured_outputs: { choice: answers } } as OpenAI.ChatCompletionCreateParamsNonStreaming);
      expect(answers, speculation).toContain(chat.choices[0].message.content);
      expect(chat.choices[0].finish_reason).toBe('stop');
      const chatStream = await client.chat.completions.create({ model, messages, max_tokens: 20, temperature: 0, speculation, stream: true, guided_choice: answers } as OpenAI.ChatCompletionCreateParamsStreaming);
      let content = '';
      for await (const chunk of chatStream) content += chunk.choices[0]?.delta.content ?? '';
      expect(content, speculation).toBe(chat.choices[0].message.content);
    }
    // Sampled, n choices: each one of them.
    const sampled = await client.completions.create({ model, prompt: PROMPT, max_tokens: 40, temperature: 1, seed: 5, n: 4, structured_outputs: { choice: choices } } as OpenAI.CompletionCreateParamsNonStreaming);
    for (const c of sampled.choices) expect(choices).toContain(c.text);
    // Cut by max_tokens: the start of a choice, finish length.
    const cut = await client.completions.create({ model, prompt: PROMPT, max_tokens: 2, temperature: 0, structured_outputs: { choice: [choices[1]] } } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(cut.choices[0].finish_reason).toBe('length');
    expect(choices[1].startsWith(cut.choices[0].text)).toBe(true);
    const empty = await post('/v1/completions', { model, prompt: PROMPT, max_tokens: 5, structured_outputs: { choice: [] } });
    expect(empty.status).toBe(400);
    expect(empty.json.error).toMatchObject({ param: 'structured_outputs.choice', code: 'invalid_value' });
  });

  it("serves structured outputs beside choice: vLLM's regex and json (and guided_*), OpenAI's response_format json_object and json_schema; the reply matches, whole or streamed, the same with speculation and without", async () => {
    const messages = [{ role: 'user' as const, content: 'Tell me about a dog.' }];
    const schema = { type: 'object', properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer', minimum: 0, maximum: 20 }, good: { type: 'boolean' } }, required: ['name', 'age', 'good'] };
    for (const speculation of ['auto', 'off']) {
      const regex = ' Max (was|is) [a-z ]{1,40}\\.';
      const whole = await client.completions.create({ model, prompt: PROMPT, max_tokens: 80, temperature: 0, speculation, structured_outputs: { regex } } as OpenAI.CompletionCreateParamsNonStreaming);
      expect(whole.choices[0].text, speculation).toMatch(new RegExp(`^(?:${regex})$`));
      expect(whole.choices[0].finish_reason).toBe('stop');
      const streamed = await streamCompletion({ prompt: PROMPT, max_tokens: 80, temperature: 0, speculation, guided_regex: regex, user: `regex-${speculation}` });
      expect(streamed.text, speculation).toBe(whole.choices[0].text);
      // OpenAI's json_schema through its SDK's own field: an object the schema holds.
      const chat = await client.chat.completions.create({ model, messages, max_tokens: 120, temperature: 0, speculation, response_format: { type: 'json_schema', json_schema: { name: 'dog', schema } } } as OpenAI.ChatCompletionCreateParamsNonStreaming);
      expect(chat.choices[0].finish_reason, chat.choices[0].message.content ?? '').toBe('stop');
      const dog = JSON.parse(chat.choices[0].message.content!) as { name: string; age: number; good: boolean };
      expect(Object.keys(dog)).toEqual(['name', 'age', 'good']);
      expect(dog.name.length).toBeLessThanOrEqual(12);
      expect(Number.isInteger(dog.age) && dog.age >= 0 && dog.age <= 20).toBe(true);
      expect(typeof dog.good).toBe('boolean');
      const chatStream = await client.chat.completions.create({ model, messages, max_tokens: 120, temperature: 0, speculation, stream: true, structured_outputs: { json: schema } } as OpenAI.ChatCompletionCreateParamsStreaming);
      let content = '';
      for await (const chunk of chatStream) content += chunk.choices[0]?.delta.content ?? '';
      expect(content, speculation).toBe(chat.choices[0].message.content);
    }
    // The SDK's own structured-output flow: a zod schema as response_format (strict, additionalProperties false, a
    // nullable field as a type list), and the reply parsed back by the SDK into the schema's type.
    const Dog = z.object({ name: z.string().max(12), age: z.number().int().min(0).max(20), mood: z.enum(['happy', 'sad']), toys: z.array(z.string().max(10)).max(3), owner: z.string().max(12).nullable() });
    for (const temperature of [0, 1]) {
      const parsed = await client.chat.completions.parse({ model, messages, max_tokens: 300, temperature, seed: 4, response_format: zodResponseFormat(Dog, 'dog') });
      expect(parsed.choices[0].finish_reason).toBe('stop');
      expect(Dog.parse(parsed.choices[0].message.parsed)).toEqual(parsed.choices[0].message.parsed);
    }
    // JSON mode: any JSON object (cut by max_tokens it may be unfinished, as OpenAI's).
    const mode = await client.chat.completions.create({ model, messages, max_tokens: 200, temperature: 0, response_format: { type: 'json_object' } });
    if (mode.choices[0].finish_reason === 'stop') expect(typeof JSON.parse(mode.choices[0].message.content!)).toBe('object');
    else expect(mode.choices[0].message.content!.startsWith('{')).toBe(true);
    // Sampled, n replies: each valid.
    const sampled = await client.chat.completions.create({ model, messages, max_tokens: 120, temperature: 1, seed: 9, n: 3, response_format: { type: 'json_schema', json_schema: { name: 'dog', schema } } } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(sampled.choices).toHaveLength(3);
    for (const c of sampled.choices) {
      // Seeded, the same replies every run: each ends within max_tokens.
      expect(c.finish_reason, c.message.content ?? '').toBe('stop');
      expect(Object.keys(JSON.parse(c.message.content!))).toEqual(['name', 'age', 'good']);
    }
    // vLLM's GBNF grammar (sent as extra_body is): a JSON object of a name and a list, nested lists allowed; the reply parses.
    const grammar = [
      'root ::= "{" ws "\\"name\\":" ws name "," ws "\\"tags\\":" ws list "}"',
      'name ::= "\\"" [A-Z] [a-z]{1,10} "\\""',
      'list ::= "[" ( item ( "," ws item )? )? "]"',
      'item ::= "\\"" [a-z]{1,8} "\\"" | list',
      'ws ::= " "?',
    ].join('\n');
    const byGrammar = await client.chat.completions.create({ model, messages, max_tokens: 120, temperature: 0, structured_outputs: { grammar } } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(byGrammar.choices[0].finish_reason, byGrammar.choices[0].message.content ?? '').toBe('stop');
    expect(JSON.parse(byGrammar.choices[0].message.content!)).toEqual({ name: expect.stringMatching(/^[A-Z][a-z]{1,10}$/), tags: expect.any(Array) });
    const badGrammar = await post('/v1/chat/completions', { model, messages, guided_grammar: 'root ::= root "a" | "b"' });
    expect(badGrammar.status).toBe(400);
    expect(badGrammar.json.error).toMatchObject({ param: 'guided_grammar', code: 'invalid_value', message: expect.stringContaining('left recursion') });
    // Refused, naming the field: a regex that is not one, a schema keyword not followed, two constraints at once.
    const bad = await post('/v1/completions', { model, prompt: PROMPT, max_tokens: 5, structured_outputs: { regex: '(a' } });
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatchObject({ param: 'structured_outputs.regex', code: 'invalid_value' });
    const keyword = await post('/v1/chat/completions', { model, messages, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'integer', multipleOf: 3 } } } });
    expect(keyword.status).toBe(400);
    expect(keyword.json.error).toMatchObject({ param: 'response_format.json_schema.schema', message: expect.stringContaining('multipleOf') });
    const two = await post('/v1/chat/completions', { model, messages, structured_outputs: { regex: 'a' }, response_format: { type: 'json_object' } });
    expect(two.status).toBe(400);
    expect(two.json.error?.message).toContain('You can only use one kind of structured outputs constraint');
  });

  it("follows a zod schema's string length beside its pattern or format (z.email().max, .min().regex, .regex().length) through the SDK's zodResponseFormat: the reply parses and satisfies it", async () => {
    const messages = [{ role: 'user' as const, content: 'Sign Max up.' }];
    const Signup = z.object({ user: z.string().min(1).max(12).regex(/^[a-z]+$/), email: z.email().max(30), pin: z.string().regex(/^\d+$/).length(6) });
    for (const temperature of [0, 1]) {
      const parsed = await client.chat.completions.parse({ model, messages, max_tokens: 300, temperature, seed: 7, response_format: zodResponseFormat(Signup, 'signup') });
      const choice = parsed.choices[0];
      expect(choice.finish_reason, choice.message.content ?? '').toBe('stop');
      const signup = Signup.parse(JSON.parse(choice.message.content!));
      expect(choice.message.parsed).toEqual(signup);
      expect([...signup.email].length).toBeLessThanOrEqual(30);
    }
  });

  it('serves tool calls where tool_choice names a function or is "required": the reply is the call, whole or streamed, through the SDK\'s own tool helpers', async () => {
    const messages = [{ role: 'user' as const, content: 'What is the weather in Paris?' }];
    const weather = { type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 20 }, days: { type: 'integer', minimum: 1, maximum: 7 } }, required: ['city', 'days'] } } };
    const time = { type: 'function' as const, function: { name: 'get_time', parameters: { type: 'object', properties: { zone: { type: 'string', enum: ['UTC', 'CET'] } }, required: ['zone'] } } };
    const checkWeather = (args: string): void => {
      const parsed = JSON.parse(args) as { city: string; days: number };
      expect(Object.keys(parsed)).toEqual(['city', 'days']);
      expect(parsed.city.length).toBeLessThanOrEqual(20);
      expect(Number.isInteger(parsed.days) && parsed.days >= 1 && parsed.days <= 7).toBe(true);
    };
    for (const speculation of ['auto', 'off']) {
      const named = await client.chat.completions.create({ model, messages, tools: [weather, time], tool_choice: { type: 'function', function: { name: 'get_weather' } }, max_tokens: 150, temperature: 0, speculation } as OpenAI.ChatCompletionCreateParamsNonStreaming);
      const message = named.choices[0].message;
      expect(message.content).toBeNull();
      expect(named.choices[0].finish_reason).toBe('stop');
      expect(message.tool_calls).toHaveLength(1);
      const call = message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
      expect(call).toMatchObject({ id: expect.stringMatching(/^chatcmpl-tool-[0-9a-f]{32}$/), type: 'function', function: { name: 'get_weather' } });
      checkWeather(call.function.arguments);
      // Streamed: the id, type and name once, then the arguments in pieces that join to the same call.
      const stream = await client.chat.completions.create({ model, messages, tools: [weather, time], tool_choice: { type: 'function', function: { name: 'get_weather' } }, max_tokens: 150, temperature: 0, speculation, stream: true } as OpenAI.ChatCompletionCreateParamsStreaming);
      let args = '';
      const ids: string[] = [];
      let finish: string | null = null;
      const firstDeltas: unknown[] = [];
      for await (const chunk of stream) {
        if (firstDeltas.length === 0) firstDeltas.push(chunk.choices[0]?.delta);
        for (const d of chunk.choices[0]?.delta.tool_calls ?? []) {
          if (d.id) ids.push(d.id);
          args += d.function?.arguments ?? '';
        }
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      // The role chunk's content is null, as OpenAI's before a call (the AI SDK opens a text part for a "").
      expect(firstDeltas).toEqual([{ role: 'assistant', content: null }]);
      expect(ids).toHaveLength(1);
      expect(args, speculation).toBe(call.function.arguments);
      expect(finish).toBe('stop');
    }
    // "required": calls of the listed functions, finish tool_calls; one at most without parallel calls.
    const required = await client.chat.completions.create({ model, messages, tools: [weather, time], tool_choice: 'required', parallel_tool_calls: false, max_tokens: 150, temperature: 0 });
    expect(required.choices[0].finish_reason).toBe('tool_calls');
    expect(required.choices[0].message.tool_calls).toHaveLength(1);
    const first = required.choices[0].message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(['get_weather', 'get_time']).toContain(first.function.name);
    if (first.function.name === 'get_weather') checkWeather(first.function.arguments);
    // max_tokens on the end token, the one token that could follow the whole call: still the call, finish tool_calls
    // (the AI SDK runs no call of a reply that ended "length").
    const atLimit = await client.chat.completions.create({ model, messages, tools: [weather, time], tool_choice: 'required', parallel_tool_calls: false, max_tokens: required.usage!.completion_tokens - 1, temperature: 0 });
    expect(atLimit.choices[0].finish_reason).toBe('tool_calls');
    expect(atLimit.choices[0].message.tool_calls?.map((c) => (c as OpenAI.ChatCompletionMessageFunctionToolCall).function)).toEqual([first.function]);
    const requiredStream = await client.chat.completions.create({ model, messages, tools: [weather, time], tool_choice: 'required', parallel_tool_calls: false, max_tokens: 150, temperature: 0, stream: true });
    const streamedCalls: Array<{ name?: string; arguments: string }> = [];
    for await (const chunk of requiredStream) for (const d of chunk.choices[0]?.delta.tool_calls ?? []) (streamedCalls[d.index] ??= { arguments: '' }).arguments += d.function?.arguments ?? '', (streamedCalls[d.index].name ??= d.function?.name);
    expect(streamedCalls).toEqual([{ name: first.function.name, arguments: first.function.arguments }]);
    // OpenAI's allowed_tools: "required" over some of the listed tools; a name not listed refused, naming the entry.
    const onlyTime = await client.chat.completions.create({ model, messages, tools: [weather, time], tool_choice: { type: 'allowed_tools', allowed_tools: { mode: 'required', tools: [{ type: 'function', function: { name: 'get_time' } }] } }, parallel_tool_calls: false, max_tokens: 150, temperature: 0 });
    expect(onlyTime.choices[0].finish_reason).toBe('tool_calls');
    expect(onlyTime.choices[0].message.tool_calls?.map((c) => (c as OpenAI.ChatCompletionMessageFunctionToolCall).function.name)).toEqual(['get_time']);
    const notListed = await post('/v1/chat/completions', { model, messages, tools: [weather], tool_choice: { type: 'allowed_tools', allowed_tools: { mode: 'auto', tools: [{ type: 'function', function: { name: 'get_time' } }] } } });
    expect([notListed.status, notListed.json.error?.param]).toEqual([400, 'tool_choice.allowed_tools.tools.0']);
    // The SDK's zod helper: strict function tools, and the arguments parsed back into the schema's type.
    const parsed = await client.chat.completions.parse({
      model,
      messages,
      max_tokens: 150,
      temperature: 0,
      tools: [zodFunction({ name: 'get_weather', parameters: z.object({ city: z.string().max(20), days: z.number().int().min(1).max(7) }) })],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
    });
    const parsedCall = parsed.choices[0].message.tool_calls?.[0] as { function: { parsed_arguments: { city: string; days: number } } } | undefined;
    expect(parsedCall?.function.parsed_arguments.days).toBeGreaterThanOrEqual(1);
    // Refused by name: a call with no (or an empty) list, a name not listed, tools beside a structured output (also under "auto").
    for (const [extra, param] of [
      [{ tools: [weather], guided_regex: 'a|b' }, 'tool_choice'],
      [{ tools: [], tool_choice: 'required' }, 'tool_choice'],
      [{ tools: [weather], tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice'],
      [{ tools: [weather], tool_choice: 'required', response_format: { type: 'json_object' } }, 'tool_choice'],
      [{ tool_choice: 'required' }, 'tool_choice'],
    ] as const) {
      const res = await post('/v1/chat/completions', { model, messages, ...extra });
      expect(res.status, JSON.stringify(extra)).toBe(400);
      expect(res.json.error?.param, JSON.stringify(extra)).toBe(param);
    }
    // Completions have no tools, as in vLLM.
    const completionTools = await post('/v1/completions', { model, prompt: PROMPT, tools: [weather], tool_choice: 'required' });
    expect(completionTools.json.error).toMatchObject({ param: 'tools', code: 'unsupported_parameter' });
  });

  it('serves tool_choice "auto" (the default where tools are sent): a reply that starts with text is the text it is without tools, whole or streamed; one that starts with "[" is the calls "required" makes', async () => {
    const messages = [{ role: 'user' as const, content: 'What is the weather in Paris?' }];
    const weather = { type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 20 }, days: { type: 'integer', minimum: 1, maximum: 7 } }, required: ['city', 'days'] } } };
    const time = { type: 'function' as const, function: { name: 'get_time', parameters: { type: 'object', properties: { zone: { type: 'string', enum: ['UTC', 'CET'] } }, required: ['zone'] } } };
    const tools = [weather, time];
    /** A stream's role delta, its text, its calls (assembled) and its finish reason. */
    const streamed = async (params: Record<string, unknown>): Promise<{ first: unknown; text: string; calls: Array<{ name?: string; arguments: string }>; finish: string | null }> => {
      const stream = await client.chat.completions.create({ model, messages, temperature: 0, stream: true, ...params } as unknown as OpenAI.ChatCompletionCreateParamsStreaming);
      const out = { first: undefined as unknown, text: '', calls: [] as Array<{ name?: string; arguments: string }>, finish: null as string | null };
      for await (const chunk of stream) {
        const choice = chunk.choices[0];
        if (!choice) continue;
        out.first ??= choice.delta;
        out.text += choice.delta.content ?? '';
        for (const d of choice.delta.tool_calls ?? []) ((out.calls[d.index] ??= { arguments: '' }).arguments += d.function?.arguments ?? ''), (out.calls[d.index].name ??= d.function?.name);
        out.finish = choice.finish_reason ?? out.finish;
      }
      return out;
    };
    for (const speculation of ['auto', 'off']) {
      // The model writes text here: the very text it writes with no tools, token for token.
      const plain = await client.chat.completions.create({ model, messages, max_tokens: 40, temperature: 0, speculation } as OpenAI.ChatCompletionCreateParamsNonStreaming);
      for (const choice of [{}, { tool_choice: 'auto' }]) {
        const auto = await client.chat.completions.create({ model, messages, tools, ...choice, max_tokens: 40, temperature: 0, speculation } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming);
        expect(auto.choices[0].message.content, speculation).toBe(plain.choices[0].message.content);
        expect(auto.choices[0].message.tool_calls).toBeUndefined();
        expect(auto.choices[0].finish_reason).toBe(plain.choices[0].finish_reason);
      }
      // Tools whose schema the pool cannot follow (multipleOf is not written here): the reply is read, not held, and
      // the request still gets its text, not a 400 for a constraint it never asked for.
      const even = { type: 'function' as const, function: { name: 'even', parameters: { type: 'object', properties: { n: { type: 'integer', multipleOf: 2 } } } } };
      const unfollowed = await client.chat.completions.create({ model, messages, tools: [weather, even], max_tokens: 40, temperature: 0, speculation } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming);
      expect(unfollowed.choices[0].message.content).toBe(plain.choices[0].message.content);
      // Sampled hot (seeds where the model writes byte pieces that are no whole character, found by review h105): the
      // same tokens too, the pool's mask lifted past the first character.
      for (const seed of [14, 15, 16, 17]) {
        const sampled = { messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 50, temperature: 2, seed, return_token_ids: true, speculation };
        const [free, withTools] = await Promise.all([post('/v1/chat/completions', { model, ...sampled }), post('/v1/chat/completions', { model, ...sampled, tools })]);
        const ids = (r: typeof free): unknown => (r.json as { choices: Array<{ token_ids: number[] }> }).choices[0].token_ids;
        expect(ids(withTools), `seed ${seed}`).toEqual(ids(free));
      }
      // Streamed: text as it comes, after a role delta whose content is "" (the reply may be text).
      const stream = await streamed({ tools, max_tokens: 40, speculation });
      expect(stream).toEqual({ first: { role: 'assistant', content: '' }, text: plain.choices[0].message.content, calls: [], finish: plain.choices[0].finish_reason });
    }
    // A reply whose first token is "[" (pushed there by logit_bias): held to the calls' array, and made calls (one: this
    // model, left to it, writes call after call).
    const strs = (await post('/tokenize', { prompt: '[', return_token_strs: true, add_special_tokens: false })).json;
    const bracket = (strs.tokens as number[])[(strs.token_strs as string[]).indexOf('[')];
    expect(bracket).toBeGreaterThan(0);
    const called = await client.chat.completions.create({ model, messages, tools, parallel_tool_calls: false, logit_bias: { [bracket]: 100 }, max_tokens: 150, temperature: 0 });
    const message = called.choices[0].message;
    expect(called.choices[0].finish_reason, JSON.stringify(message)).toBe('tool_calls');
    expect(message.content).toBeNull();
    expect(message.tool_calls).toHaveLength(1);
    for (const call of message.tool_calls! as OpenAI.ChatCompletionMessageFunctionToolCall[]) {
      expect(call.id).toMatch(/^chatcmpl-tool-[0-9a-f]{32}$/);
      const args = JSON.parse(call.function.arguments) as Record<string, unknown>;
      if (call.function.name === 'get_weather') expect(Object.keys(args)).toEqual(['city', 'days']);
      else expect(call.function).toMatchObject({ name: 'get_time', arguments: expect.stringMatching(/"zone"\s*:\s*"(UTC|CET)"/) });
    }
    // Streamed: no text, the same calls at the end, after a role delta sent once the reply starts them: its content
    // null, as OpenAI's before a call (the AI SDK would open an empty text part for a "").
    const calls = await streamed({ tools, parallel_tool_calls: false, logit_bias: { [bracket]: 100 }, max_tokens: 150 });
    expect(calls).toEqual({ first: { role: 'assistant', content: null }, text: '', calls: message.tool_calls!.map((c) => ({ name: (c as OpenAI.ChatCompletionMessageFunctionToolCall).function.name, arguments: (c as OpenAI.ChatCompletionMessageFunctionToolCall).function.arguments })), finish: 'tool_calls' });

    // Beside a response_format (a structured answer, as OpenAI takes both): the JSON (this model, greedy, starts the
    // calls: "[" is held back here), or, starting with "[", the calls.
    const Answer = z.object({ city: z.string().max(12), sunny: z.boolean() });
    const answered = await client.chat.completions.create({ model, messages, tools, response_format: zodResponseFormat(Answer, 'answer'), logit_bias: { [bracket]: -100 }, max_tokens: 200, temperature: 0 });
    expect(answered.choices[0].finish_reason, answered.choices[0].message.content ?? '').toBe('stop');
    expect(Answer.parse(JSON.parse(answered.choices[0].message.content!))).toBeTruthy();
    const orCalled = await client.chat.completions.create({ model, messages, tools, response_format: zodResponseFormat(Answer, 'answer'), parallel_tool_calls: false, logit_bias: { [bracket]: 100 }, max_tokens: 150, temperature: 0 });
    expect(orCalled.choices[0].finish_reason).toBe('tool_calls');
    expect(orCalled.choices[0].message.tool_calls).toHaveLength(1);

    // The AI SDK's tools, its toolChoice left at its default ("auto"): text as without tools; or the call, run by the SDK.
    const provider = createOpenAI({ apiKey: stack.devKey, baseURL: `${stack.edgeUrl}/v1` });
    const ran: unknown[] = [];
    const sdkTools = { get_weather: tool({ inputSchema: z.object({ city: z.string().max(20), days: z.number().int().min(1).max(7) }), execute: async (input) => (ran.push(input), 'Sunny.') }) };
    const prompt = messages[0].content;
    const text = await generateText({ model: provider.chat(model), prompt, tools: sdkTools, maxOutputTokens: 40, temperature: 0, maxRetries: 0 });
    const withoutTools = await client.chat.completions.create({ model, messages, max_tokens: 40, temperature: 0 });
    expect([text.text, text.toolCalls, text.finishReason]).toEqual([withoutTools.choices[0].message.content, [], withoutTools.choices[0].finish_reason]);
    const asked = await generateText({ model: provider.chat(model), prompt, tools: sdkTools, maxOutputTokens: 150, temperature: 0, maxRetries: 0, stopWhen: stepCountIs(1), providerOptions: { openai: { logitBias: { [bracket]: 100 }, parallelToolCalls: false } } });
    expect(asked.finishReason).toBe('tool-calls');
    expect(asked.toolCalls.map((c) => c.toolName)).toEqual(['get_weather']);
    expect(ran).toEqual([asked.toolCalls[0].input]);
    // Streamed through the SDK: the same step, a call and its result (no empty text part before it).
    const streamedStep = streamText({ model: provider.chat(model), prompt, tools: sdkTools, maxOutputTokens: 150, temperature: 0, maxRetries: 0, stopWhen: stepCountIs(1), providerOptions: { openai: { logitBias: { [bracket]: 100 }, parallelToolCalls: false } } });
    expect((await streamedStep.content).map((part) => part.type)).toEqual(asked.content.map((part) => part.type));
    expect(await streamedStep.finishReason).toBe('tool-calls');
  });

  it("serves vLLM's truncate_prompt_tokens (the prompt's last k tokens, a text prompt's BOS kept) and return_tokens_as_token_ids", async () => {
    const ids = reference.prompt_ids;
    expect(ids[0]).toBe(1); // BOS
    const ask = (params: Record<string, unknown>) => client.completions.create({ model, max_tokens: 8, temperature: 0, ...params } as unknown as OpenAI.CompletionCreateParamsNonStreaming);
    const chatAsk = (params: Record<string, unknown>) => client.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 8, temperature: 0, ...params } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming);
    // Text: BOS and the last k - 1 tokens, the same reply as those ids sent as the prompt.
    const text = await ask({ prompt: PROMPT, truncate_prompt_tokens: 6 });
    expect(text.usage!.prompt_tokens).toBe(6);
    const asIds = await ask({ prompt: [1, ...ids.slice(-5)] });
    expect(text.choices[0].text).toBe(asIds.choices[0].text);
    // Token ids, and a chat's templated prompt: the last k, whatever they are.
    const tail = await ask({ prompt: ids.slice(-6) });
    expect((await ask({ prompt: ids, truncate_prompt_tokens: 6 })).choices[0].text).toBe(tail.choices[0].text);
    const chat = await chatAsk({ truncate_prompt_tokens: 6 });
    expect(chat.usage!.prompt_tokens).toBe(6);
    expect(chat.choices[0].message.content).toBe(tail.choices[0].text);
    // k at or past the prompt's length: whole. -1: as many as fit beside max_tokens, so a prompt past the context is cut to fit.
    expect((await ask({ prompt: PROMPT, truncate_prompt_tokens: ids.length })).usage!.prompt_tokens).toBe(ids.length);
    const long = Array.from({ length: 60 }, () => PROMPT).join(' ');
    expect((await post('/v1/completions', { model, prompt: long, max_tokens: 8 })).json.error).toMatchObject({ code: 'context_length_exceeded' });
    const fitted = await ask({ prompt: long, truncate_prompt_tokens: -1 });
    expect(fitted.usage!.prompt_tokens).toBe(512 - 8);
    // Echoed and scored: the tokens the model saw (BOS scored null), joined to the echoed text.
    const echoed = await ask({ prompt: PROMPT, truncate_prompt_tokens: 6, echo: true, logprobs: 0, max_tokens: 0 });
    expect(echoed.choices[0].logprobs!.tokens).toHaveLength(6);
    expect(echoed.choices[0].logprobs!.token_logprobs![0]).toBeNull();
    expect(echoed.choices[0].logprobs!.tokens!.join('')).toBe(echoed.choices[0].text);
    // Out of range: 0, and more than the context less max_tokens, named.
    for (const k of [0, 505]) expect((await post('/v1/completions', { model, prompt: PROMPT, max_tokens: 8, truncate_prompt_tokens: k })).json.error, String(k)).toMatchObject({ param: 'truncate_prompt_tokens', code: 'invalid_value' });
    // A reply bound past the context is the reply's fault, as without truncation (and as vLLM checks it first).
    for (const k of [5, -1]) expect((await post('/v1/completions', { model, prompt: PROMPT, max_tokens: 600, truncate_prompt_tokens: k })).json.error, String(k)).toMatchObject({ param: 'max_tokens', code: 'context_length_exceeded' });
    // A prompt longer than the context too: still the reply's bound that is refused, not the prompt the cut would have shortened (review h156).
    const longer = await post('/v1/chat/completions', { model, messages: [{ role: 'user', content: PROMPT.repeat(40) }], max_completion_tokens: 512, truncate_prompt_tokens: 5 });
    expect(longer.json.error).toMatchObject({ param: 'max_completion_tokens', code: 'context_length_exceeded', message: expect.stringContaining('512 are asked for the reply') });

    // Tokens named by id: the greedy reply's own ids, in both shapes; alternatives too.
    const byId = await ask({ prompt: PROMPT, logprobs: 2, return_tokens_as_token_ids: true });
    const idOf = (name: string) => Number(name.replace(/^token_id:/, ''));
    const lp = byId.choices[0].logprobs!;
    expect(lp.tokens!.map(idOf)).toEqual(reference.output_ids.slice(0, 8));
    lp.top_logprobs!.forEach((top, i) => {
      expect(Object.keys(top!).every((k) => /^token_id:\d+$/.test(k))).toBe(true);
      expect(top![lp.tokens![i]]).toBeCloseTo(lp.token_logprobs![i]!, 4);
    });
    const chatById = await chatAsk({ logprobs: true, top_logprobs: 2, return_tokens_as_token_ids: true });
    const content = chatById.choices[0].logprobs!.content!;
    expect(content.map((c) => idOf(c.token))).toEqual(reference.output_ids.slice(0, 8));
    expect(Buffer.from(content.flatMap((c) => c.bytes!)).toString('utf8')).toBe(chatById.choices[0].message.content);
    for (const c of content) for (const alt of c.top_logprobs) expect(alt.token).toMatch(/^token_id:\d+$/);
  });

  it("serves vLLM's truncation_side right (the prompt's first k tokens) and return_token_ids (the prompt's ids and each choice's, whole or streamed, chat or completions)", async () => {
    const ids = reference.prompt_ids;
    const out = reference.output_ids.slice(0, 8);
    type Whole = { choices: Array<{ text?: string; message?: { content: string }; token_ids?: number[]; prompt_token_ids?: number[] }>; prompt_token_ids?: number[]; usage: { prompt_tokens: number } };
    const whole = async (path: string, body: Record<string, unknown>): Promise<Whole> => {
      const res = await post(path, { model, max_tokens: 8, temperature: 0, ...body });
      expect(res.status, JSON.stringify(res.json)).toBe(200);
      return res.json as unknown as Whole;
    };
    const chatBody = { messages: [{ role: 'user', content: PROMPT }] };
    // Right: the first k (BOS and the k - 1 after it), the same reply as those ids sent as the prompt; the ids say so.
    const right = await whole('/v1/completions', { prompt: PROMPT, truncate_prompt_tokens: 6, truncation_side: 'right', return_token_ids: true });
    expect(right.usage.prompt_tokens).toBe(6);
    expect(right.choices[0].prompt_token_ids).toEqual(ids.slice(0, 6));
    const head = await whole('/v1/completions', { prompt: ids.slice(0, 6) });
    expect(right.choices[0].text).toBe(head.choices[0].text);
    const chatRight = await whole('/v1/chat/completions', { ...chatBody, truncate_prompt_tokens: 6, truncation_side: 'right', return_token_ids: true });
    expect(chatRight.prompt_token_ids).toEqual(ids.slice(0, 6));
    expect(chatRight.choices[0].message!.content).toBe(head.choices[0].text);
    // Left, as null and as left out: the last k.
    expect((await whole('/v1/completions', { prompt: ids, truncate_prompt_tokens: 6, truncation_side: 'left', return_token_ids: true })).choices[0].prompt_token_ids).toEqual(ids.slice(-6));
    expect((await post('/v1/completions', { model, prompt: PROMPT, truncate_prompt_tokens: 6, truncation_side: 'middle' })).json.error).toMatchObject({ param: 'truncation_side', code: 'invalid_value' });

    // Whole: completions' choices carry both, chat's its own beside the prompt's at the top; the greedy reply's ids.
    const completion = await whole('/v1/completions', { prompt: PROMPT, return_token_ids: true });
    expect(completion.choices[0]).toMatchObject({ prompt_token_ids: ids, token_ids: out });
    const chat = await whole('/v1/chat/completions', { ...chatBody, return_token_ids: true });
    expect(chat.prompt_token_ids).toEqual(ids);
    expect(chat.choices[0].token_ids).toEqual(out);
    expect(chat.choices[0]).not.toHaveProperty('prompt_token_ids');
    expect(JSON.stringify(await whole('/v1/completions', { prompt: PROMPT }))).not.toMatch(/token_ids/);

    // Streamed: the ids of each chunk join to the reply's; the prompt's come once, in the first chunk.
    type Chunk = { choices: Array<{ index: number; token_ids?: number[]; prompt_token_ids?: number[] }>; prompt_token_ids?: number[] };
    const streamed = async (path: string, body: Record<string, unknown>): Promise<Chunk[]> => {
      const res = await fetch(`${stack.edgeUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.devKey}` },
        body: JSON.stringify({ model, max_tokens: 8, temperature: 0, stream: true, return_token_ids: true, ...body }),
      });
      expect(res.status).toBe(200);
      return (await res.text())
        .split('\n')
        .filter((l) => l.startsWith('data: {'))
        .map((l) => JSON.parse(l.slice(6)) as Chunk);
    };
    const chunks = await streamed('/v1/completions', { prompt: PROMPT });
    expect(chunks[0].choices[0].prompt_token_ids).toEqual(ids);
    expect(chunks.slice(1).every((c) => c.choices[0]?.prompt_token_ids === undefined)).toBe(true);
    expect(chunks.flatMap((c) => c.choices[0]?.token_ids ?? [])).toEqual(out);
    const chatChunks = await streamed('/v1/chat/completions', chatBody);
    expect(chatChunks[0].prompt_token_ids).toEqual(ids);
    expect(chatChunks.slice(1).every((c) => c.prompt_token_ids === undefined && c.choices[0]?.prompt_token_ids === undefined)).toBe(true);
    expect(chatChunks.flatMap((c) => c.choices[0]?.token_ids ?? [])).toEqual(out);
    // n choices: each its own first chunk with the prompt's ids, and its own ids.
    const sampled = await streamed('/v1/completions', { prompt: PROMPT, n: 2, temperature: 1, seed: 5, stream_options: { include_usage: true } });
    const usage = sampled.at(-1) as unknown as { usage: { completion_tokens: number } };
    for (const index of [0, 1]) {
      const mine = sampled.filter((c) => c.choices[0]?.index === index);
      expect(mine[0].choices[0].prompt_token_ids).toEqual(ids);
      expect(mine.slice(1).every((c) => c.choices[0].prompt_token_ids === undefined)).toBe(true);
    }
    expect(sampled.flatMap((c) => c.choices[0]?.token_ids ?? [])).toHaveLength(usage.usage.completion_tokens);
  });

  it("counts a completion ended at a stop string as a stop at the pool, not as an abort", async () => {
    // The tests before may have left generations the pool is still ending (cancels go out after the response).
    for (let i = 0; i < 50 && (await metricValue({ url: stack.poolUrl }, 'vllm:num_requests_running')) + (await metricValue({ url: stack.poolUrl }, 'vllm:num_requests_waiting')) > 0; i++) await new Promise((r) => setTimeout(r, 100));
    const before = await finishedCounts(stack.poolUrl);
    // Long (the end token banned): the edge's cancel at the stop string reaches the pool while it still runs.
    const body = { prompt: PROMPT, max_tokens: 400, temperature: 0, logit_bias: { '1': -100 }, stop: [reference.text.slice(20, 31)], user: 'stop-metrics' };
    for (let i = 0; i < 3; i++) expect((await streamCompletion(body)).finish).toBe('stop');
    const after = await finishedAfter(stack.poolUrl, before, 3);
    expect(after.total).toBe(before.total + 3);
    expect(after.cancelled).toBe(before.cancelled);
    expect(after.stopped).toBe(before.stopped + 3);
  });

  it('answers bad and missing keys with 401', async () => {
    const bad = new OpenAI({ apiKey: 'not-a-key', baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    const err = await bad.completions.create({ model, prompt: 'hi', max_tokens: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    const missing = await post('/v1/completions', { model, prompt: 'hi' }, null);
    expect(missing.status).toBe(401);
    expect(missing.json.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_api_key' });
    // A KV record that is not JSON refuses its key (it was a 503 "key store unavailable", retried for ever).
    const broken = await post('/v1/completions', { model, prompt: 'hi', max_tokens: 2 }, BROKEN_KV_KEY);
    expect(broken.status).toBe(401);
    expect(broken.json.error).toMatchObject({ code: 'invalid_api_key' });
    expect(broken.headers.get('retry-after')).toBeNull();
    // A hash written in upper case names its key.
    expect((await post('/v1/completions', { model, prompt: 'hi', max_tokens: 2 }, UPPER_HASH_KEY)).status).toBe(200);
  });

  it('refuses a key `sssd key revoke` revoked in the running edge\'s KV (401), and serves it again once `sssd key restore` restored it', async () => {
    const sssd = (...args: string[]) => promisify(execFile)(process.execPath, [...sssdNodeArgs(), 'key', ...args, '--local', '--persist-to', stack.persistTo], { cwd: repoRoot });
    const prefix = sha256Hex(REVOCABLE_KV_KEY).slice(0, 12);
    expect((await sssd('revoke', prefix)).stdout).toContain(`revoked key:${sha256Hex(REVOCABLE_KV_KEY)} in the local store`);
    const refused = await post('/v1/completions', { model, prompt: 'hi', max_tokens: 2 }, REVOCABLE_KV_KEY);
    expect(refused.status).toBe(401);
    expect(refused.json.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_api_key' });
    expect((await sssd('restore', prefix)).stdout).toContain('restored key:');
    // The edge remembers a refused key for 2 s (missMs): the restore's wrangler runs mostly outlast it; asked again until 5 s past it.
    const deadline = Date.now() + 5_000;
    let served = await post('/v1/completions', { model, prompt: 'hi', max_tokens: 2 }, REVOCABLE_KV_KEY);
    while (served.status === 401 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      served = await post('/v1/completions', { model, prompt: 'hi', max_tokens: 2 }, REVOCABLE_KV_KEY);
    }
    expect(served.status).toBe(200);
  }, 120_000);

  it("names every request in x-request-id, as the SDK's _request_id, the completion's id carrying the same hex", async () => {
    const completion = await client.completions.create({ model, prompt: PROMPT, max_tokens: 4, temperature: 0 });
    const hex = /^req-([0-9a-f]{24})$/.exec(completion._request_id ?? '')?.[1];
    expect(hex, completion._request_id ?? 'no _request_id').toBeDefined();
    expect(completion.id).toBe(`cmpl-${hex}`);
    const { data: chat, request_id: chatRequestId } = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, stream: true }).withResponse();
    const first = await chat[Symbol.asyncIterator]().next();
    const chatHex = /^req-([0-9a-f]{24})$/.exec(chatRequestId ?? '')?.[1];
    expect(chatHex, chatRequestId ?? 'no request id on the stream').toBeDefined();
    expect((first.value as OpenAI.ChatCompletionChunk).id).toBe(`chatcmpl-${chatHex}`);
    chat.controller.abort();
    const refused = await post('/v1/completions', { model, prompt: 'hi' }, null);
    expect(refused.headers.get('x-request-id')).toMatch(/^req-[0-9a-f]{24}$/);
    expect(refused.headers.get('x-request-id')).not.toBe(completion._request_id);
  });

  it('answers bad bodies with 400 in the OpenAI error shape, naming the field', async () => {
    const cases: Array<[unknown, string | null]> = [
      [{ prompt: 'hi' }, 'model'],
      [{ model, prompt: 'hi', n: 0 }, 'n'],
      [{ model, prompt: 'hi', temperature: 7 }, 'temperature'],
      [{ model, prompt: 'hi', stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
      // As OpenAI: options of a stream without one.
      [{ model, prompt: 'hi', stream_options: { include_usage: true } }, 'stream_options'],
      [{ model, messages: [{ role: 'user', content: 'hi' }], stream: false, stream_options: { include_usage: true } }, 'stream_options'],
      [{ model, messages: [] }, null],
      ['{"model": ', null],
    ];
    for (const [body, param] of cases) {
      const path = typeof body === 'object' && body !== null && 'messages' in body ? '/v1/chat/completions' : '/v1/completions';
      const res = await post(path, body);
      expect(res.status).toBe(400);
      expect(res.json.error).toEqual({ message: expect.any(String), type: 'invalid_request_error', param: param ?? res.json.error?.param, code: expect.anything() });
      if (param) expect(res.json.error?.param).toBe(param);
    }
    // Parameters that would change the answer and are not implemented: refused by name, not ignored.
    for (const [path, body, param] of [
      ['/v1/completions', { model, prompt: 'hi', best_of: 3 }, 'best_of'],
      ['/v1/completions', { model, prompt: 'hi', tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools'],
      ['/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }], structured_outputs: { structural_tag: '{}' } }, 'structured_outputs.structural_tag'],
    ] as const) {
      const res = await post(path, body);
      expect(res.status).toBe(400);
      expect(res.json.error).toMatchObject({ type: 'invalid_request_error', param, code: 'unsupported_parameter' });
    }
    // At their neutral values (as some clients send them by default) they are fine.
    const neutral = await post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, logprobs: false, logit_bias: {}, tool_choice: 'none', tools: [], response_format: { type: 'text' } });
    expect(neutral.status).toBe(200);
    const unknownModel = await post('/v1/completions', { model: 'gpt-4', prompt: 'hi' });
    expect(unknownModel.status).toBe(404);
    expect(unknownModel.json.error?.code).toBe('model_not_found');
    // A long unknown name is quoted in part, as docs/edge.md says of model names.
    const longModel = await post('/v1/completions', { model: 'm'.repeat(256), prompt: 'hi' });
    expect(longModel.json.error?.message).toContain(`'${'m'.repeat(200)}…'`);
    // The right path, the wrong method: 405 with Allow; an unknown route 404, quoting a long path only in part.
    const got = await fetch(`${stack.edgeUrl}/v1/chat/completions`, { method: 'PUT', headers: { authorization: `Bearer ${stack.devKey}` } });
    expect(got.status).toBe(405);
    expect(got.headers.get('allow')).toBe('GET, POST');
    expect(((await got.json()) as { error: { code: string } }).error.code).toBe('method_not_allowed');
    // Every known route so, the models, the demo page and the probes too: a POST /v1/models was a 404 "No route" (review h141).
    for (const [method, route, allow] of [['POST', '/v1/models', 'GET'], ['DELETE', '/v1/models', 'GET'], ['DELETE', `/v1/models/${model}`, 'GET'], ['POST', '/', 'GET'], ['POST', '/healthz', 'GET'], ['PUT', '/readyz', 'GET'], ['GET', '/bench/edge-cpu', 'POST']] as const) {
      const res = await fetch(`${stack.edgeUrl}${route}`, { method, headers: { authorization: `Bearer ${stack.devKey}` } });
      expect([route, res.status, res.headers.get('allow'), ((await res.json()) as { error: { message: string } }).error.message]).toEqual([route, 405, allow, `${route} takes ${allow}, not ${method}.`]);
    }
    const nowhere = await fetch(`${stack.edgeUrl}/v1/${'x'.repeat(20_000)}`, { headers: { authorization: `Bearer ${stack.devKey}` } });
    expect(nowhere.status).toBe(404);
    expect((await nowhere.text()).length).toBeLessThan(1000);
    // A chat completion sent without store is not kept (OpenAI's default), and asking for it back is a 404 (stored ones: stored-chat-completions.test.ts).
    const unstored = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, metadata: { run: 'e2e' } });
    const retrieved = await client.chat.completions.retrieve(unstored.id).catch((err: unknown) => err);
    expect(retrieved).toBeInstanceOf(OpenAI.NotFoundError);
    expect((retrieved as InstanceType<typeof OpenAI.NotFoundError>).message).toBe(`404 Chat completion with id '${unstored.id}' not found.`);
    expect((await client.chat.completions.messages.list(unstored.id).catch((err: unknown) => err)) as unknown).toBeInstanceOf(OpenAI.NotFoundError);
    // A compressed body is said to be one (415), not "not valid JSON".
    const gzipped = await fetch(`${stack.edgeUrl}/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.devKey}`, 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: gzipSync(JSON.stringify({ model, prompt: 'hi', max_tokens: 2 })),
    });
    expect(gzipped.status).toBe(415);
    expect(((await gzipped.json()) as { error: { message: string } }).error.message).toMatch(/Content-Encoding gzip is not supported/);
    // A body that is not UTF-8 is refused (review h142: "café" in Latin-1 ran as "caf\uFFFD").
    const latin1 = await fetch(`${stack.edgeUrl}/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.devKey}`, 'content-type': 'application/json; charset=iso-8859-1' },
      body: Buffer.from(JSON.stringify({ model, prompt: 'caf\u00e9', max_tokens: 1, echo: true }), 'latin1'),
    });
    expect(latin1.status).toBe(400);
    expect(((await latin1.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'invalid_json', message: expect.stringMatching(/not valid UTF-8/) });
  });

  it('bounds a reply by max_completion_tokens on either endpoint, and refuses two different bounds', async () => {
    // A client that moved to the newer name must not get an unbounded (and billed) reply from /v1/completions.
    const completion = await post('/v1/completions', { model, prompt: PROMPT, max_completion_tokens: 3, temperature: 0, speculation: 'off' });
    expect(completion.status).toBe(200);
    expect(completion.json).toMatchObject({ usage: { completion_tokens: 3 }, choices: [{ finish_reason: 'length' }] });
    const same = await post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, max_completion_tokens: 2, temperature: 0 });
    expect(same.json).toMatchObject({ usage: { completion_tokens: 2 } });
    for (const path of ['/v1/completions', '/v1/chat/completions']) {
      const differ = await post(path, { model, prompt: PROMPT, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, max_completion_tokens: 5 });
      expect(differ.status).toBe(400);
      expect(differ.json.error).toMatchObject({ param: 'max_completion_tokens', code: 'invalid_value' });
      expect(differ.json.error?.message).toMatch(/max_tokens \(2\) and max_completion_tokens \(5\) differ/);
    }
    const tooMany = await post('/v1/completions', { model, prompt: PROMPT, max_completion_tokens: 10_000 });
    expect(tooMany.json.error).toMatchObject({ param: 'max_completion_tokens', code: 'context_length_exceeded' });
  });

  it('refuses oversize prompts (400) and oversize bodies (413)', async () => {
    const long = await post('/v1/completions', { model, prompt: Array.from({ length: 600 }, () => 300) });
    expect(long.status).toBe(400);
    expect(long.json.error?.code).toBe('context_length_exceeded');
    const outside = await post('/v1/completions', { model, prompt: [1, 99_999] });
    expect(outside.status).toBe(400);
    expect(outside.json.error).toMatchObject({ param: 'prompt', code: 'invalid_value' });
    const tooMany = await post('/v1/completions', { model, prompt: PROMPT, max_tokens: 10_000 });
    expect(tooMany.status).toBe(400);
    expect(tooMany.json.error?.param).toBe('max_tokens');
    // Far past what the context holds: refused before it is tokenized (the message says so, in characters), chat too.
    const farTooLong = await post('/v1/completions', { model, prompt: 'a '.repeat(30_000) });
    expect(farTooLong.status).toBe(400);
    expect(farTooLong.json.error).toMatchObject({ code: 'context_length_exceeded', param: 'prompt' });
    expect(farTooLong.json.error?.message).toMatch(/60000 characters/);
    const chatTooLong = await post('/v1/chat/completions', { model, messages: [{ role: 'user', content: [{ type: 'text', text: 'a '.repeat(15_000) }, { type: 'text', text: 'b '.repeat(15_000) }] }] });
    expect(chatTooLong.json.error).toMatchObject({ code: 'context_length_exceeded', param: 'messages' });
    const huge = await post('/v1/completions', { model, prompt: 'a '.repeat(40_000) });
    expect(huge.status).toBe(413);
    expect(huge.json.error?.code).toBe('request_too_large');
    // Sent in chunks, no length declared: refused while read, and the next request is served (wrangler dev failed it, 503, while the refused body was left half read).
    const { request } = await import('node:http');
    const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const r = request(`${stack.edgeUrl}/v1/completions`, { method: 'POST', headers: { authorization: `Bearer ${stack.devKey}`, 'content-type': 'application/json' } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      r.on('error', reject);
      r.write(`{"model":"${model}","prompt":"`);
      for (let i = 0; i < 20; i++) r.write('a '.repeat(5_000));
      r.end('"}');
    });
    expect(chunked.status).toBe(413);
    expect((JSON.parse(chunked.body) as { error: { code: string } }).error.code).toBe('request_too_large');
    expect((await post('/v1/completions', { model, prompt: 'Once', max_tokens: 2 })).status).toBe(200);
    // The same far past a small route's limit (the user cache's 4 KiB): read to its end too, not only to 8 times that.
    const forgetting = await new Promise<number>((resolve, reject) => {
      // (Node sends a DELETE's body chunked only when told.)
      const r = request(`${stack.edgeUrl}/v1/user-cache`, { method: 'DELETE', headers: { authorization: `Bearer ${stack.devKey}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      r.on('error', reject);
      for (let i = 0; i < 20; i++) r.write('a'.repeat(5_000));
      r.end();
    });
    expect(forgetting).toBe(413);
    expect((await post('/v1/completions', { model, prompt: 'Once', max_tokens: 2 })).status).toBe(200);
  });

  it("takes a chat's earlier turn from the pool's prefix cache, within the key's tenant only", async () => {
    const system = { role: 'system' as const, content: 'Tell a short story about a girl named Lily and her big red ball in the park.' };
    const ask = { role: 'user' as const, content: 'Once upon a time, there was a girl named Lily.' };
    const first = await client.chat.completions.create({ model, messages: [system, ask], max_tokens: 24, temperature: 0 });
    const reply = first.choices[0].message.content ?? '';
    // The next turn sends the whole conversation again.
    const turn = [system, ask, { role: 'assistant' as const, content: reply }, { role: 'user' as const, content: 'What did Lily do next?' }];
    const second = await client.chat.completions.create({ model, messages: turn, max_tokens: 8, temperature: 0 });
    const cached = second.usage?.prompt_tokens_details?.cached_tokens ?? 0;
    // The first turn's prompt and the reply as the pool wrote it: the reply continues the prompt in both.
    expect(cached).toBeGreaterThanOrEqual(first.usage!.prompt_tokens + first.usage!.completion_tokens - 2);
    expect(cached).toBeLessThan(second.usage!.prompt_tokens);
    // Another tenant sending the same conversation prefills it whole.
    const other = new OpenAI({ apiKey: KV_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    const theirs = await other.chat.completions.create({ model, messages: turn, max_tokens: 8, temperature: 0 });
    expect(theirs.usage?.prompt_tokens_details?.cached_tokens).toBe(0);
    expect(theirs.choices[0].message.content).toBe(second.choices[0].message.content);
    // A request's own cache_salt narrows sharing within the tenant: a new salt finds nothing, the same salt again finds its own.
    const salted = (salt: string) => client.chat.completions.create({ model, messages: turn, max_tokens: 8, temperature: 0, cache_salt: salt } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect((await salted('user-42')).usage?.prompt_tokens_details?.cached_tokens).toBe(0);
    expect((await salted('user-42')).usage?.prompt_tokens_details?.cached_tokens).toBeGreaterThanOrEqual(16);
    // Ended at a stop string (the edge cancels before the pool's `done`): the figure came with the start.
    const stopped = await client.chat.completions.create({ model, messages: turn, max_tokens: 40, temperature: 0, stop: [second.choices[0].message.content!.slice(2, 6)] });
    expect(stopped.choices[0].finish_reason).toBe('stop');
    expect(stopped.usage?.prompt_tokens_details?.cached_tokens).toBeGreaterThanOrEqual(cached);
  });

  it("adds the outputs of a key the operator opted in to the pool's global datastore, and no one else's", async () => {
    const datastoreTokens = async (): Promise<number> => {
      const text = await (await fetch(`${stack.poolUrl}/metrics`)).text();
      return Number(/^sssd_pool_datastore_tokens(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1] ?? NaN);
    };
    const before = await datastoreTokens();
    expect(Number.isFinite(before)).toBe(true);
    await client.completions.create({ model, prompt: 'A small bird sang in the tree.', max_tokens: 24, temperature: 0 });
    const sharing = new OpenAI({ apiKey: SHARING_KEY, baseURL: `${stack.edgeUrl}/v1`, maxRetries: 0 });
    const shared = await sharing.completions.create({ model, prompt: 'A small bird sang in the tree.', max_tokens: 24, temperature: 0, n: 2 });
    // The pool indexes contributed outputs in the background (seconds on a loaded machine): wait for them.
    const copy = shared.usage!.prompt_tokens + 20;
    const until = Date.now() + 40_000;
    let grown = 0;
    while ((grown = (await datastoreTokens()) - before) < copy && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    // Prompt and output once: not once per choice, and not the dev key's request (it finished first, so it
    // would have been indexed no later).
    expect(grown).toBeGreaterThanOrEqual(copy);
    expect(grown).toBeLessThan(2 * copy);

    // The key's request that says store: false gives it nothing (review h117): 200 tokens not kept, then a short one
    // kept, which ends after it, so the long one would have been indexed no later.
    const beforeUnkept = await datastoreTokens();
    await sharing.completions.create({ model, prompt: 'A big dog ran in the park with a red ball.', max_tokens: 200, ignore_eos: true, temperature: 0, store: false } as OpenAI.CompletionCreateParamsNonStreaming);
    const kept = await sharing.completions.create({ model, prompt: 'The sun was warm.', max_tokens: 16, temperature: 0 });
    const keptSize = kept.usage!.prompt_tokens + kept.usage!.completion_tokens;
    const until2 = Date.now() + 40_000;
    let more = 0;
    while ((more = (await datastoreTokens()) - beforeUnkept) < keptSize - 4 && Date.now() < until2) await new Promise((r) => setTimeout(r, 100));
    expect(more).toBeGreaterThanOrEqual(keptSize - 4);
    expect(more).toBeLessThan(keptSize + 50);
  });

  it("holds the bench route to the key's limits and to a bounded run: it takes the isolate's thread while it computes", async () => {
    const small = { prompt: 'Once upon a time', repeat: 5 };
    const first = await post('/bench/edge-cpu', small, BENCH_KEY);
    expect(first.status).toBe(200);
    expect(first.json).toMatchObject({ repeat: 5 });
    expect(first.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    const again = await post('/bench/edge-cpu', small, BENCH_KEY);
    expect(again.status).toBe(429);
    expect(again.json.error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' });
    // A run past its bound (100,000 repeats of a 128-node trie: minutes of the edge's thread) is refused before it runs.
    const started = performance.now();
    const big = await post('/bench/edge-cpu', { prompt: 'x', repeat: 100_000 });
    expect(big.status).toBe(400);
    expect(big.json.error).toMatchObject({ param: 'repeat' });
    expect(big.json.error?.message).toMatch(/units of work, repeat × \(prompt \+ output characters \+ [\d,]+ bytes of user cache \+ 64 × trieNodes \+ 96 × \d+ output tokens\), more than 200,000,000/);
    expect(performance.now() - started).toBeLessThan(1000);
    expect((await post('/bench/edge-cpu', { prompt: 'x'.repeat(16_385) })).json.error).toMatchObject({ param: 'prompt' });
  });

  it('rate-limits a key with 429 and Retry-After, leaving other keys alone', async () => {
    const body = { model, prompt: 'Lily', max_tokens: 2, temperature: 0 };
    const first = await post('/v1/completions', body, LIMITED_KEY);
    expect(first.status).toBe(200);
    // OpenAI's budget headers: 2 a minute, one left, full again within the half minute one request takes to refill.
    expect(first.headers.get('x-ratelimit-limit-requests')).toBe('2');
    expect(first.headers.get('x-ratelimit-remaining-requests')).toBe('1');
    expect(first.headers.get('x-ratelimit-reset-requests')).toMatch(/^(2\d|30)(\.\d+)?s$/);
    // A stream carries them too.
    const second = await fetch(`${stack.edgeUrl}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${LIMITED_KEY}` },
      body: JSON.stringify({ ...body, stream: true }),
    });
    expect(second.status).toBe(200);
    expect(await second.text()).toContain('[DONE]');
    expect(second.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    const limited = await post('/v1/completions', body, LIMITED_KEY);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(limited.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    expect(limited.headers.get('x-ratelimit-reset-requests')).toMatch(/^(\d+(\.\d+)?s|1m\d+(\.\d+)?s)$/);
    expect(limited.json.error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' });
    // Past its limit a key's body is not even read: a broken one is the same 429 (no parse billed for it).
    expect((await post('/v1/completions', '{"model": [[[', LIMITED_KEY)).status).toBe(429);
    expect((await post('/v1/completions', body)).status).toBe(200);
    // Each of n choices is a generation in flight: n takes as many of the key's slots, and more than it has is a 400.
    const tooMany = await post('/v1/completions', { ...body, n: 2 }, ONE_SLOT_KEY);
    expect(tooMany.status).toBe(400);
    expect(tooMany.json.error).toMatchObject({ param: 'n', code: 'invalid_value' });
    expect(tooMany.json.error?.message).toMatch(/n is 2, more than the 1 generations this key may run at once/);
    expect((await post('/v1/completions', body, ONE_SLOT_KEY)).status).toBe(200);
    // ... and spends none of the key's rate: two such refusals, and the key's two requests a minute are still whole.
    // So is one past the n any request may ask (8), refused by the request's schema rather than the key's slots.
    for (const n of [2, 9]) {
      const refused = await post('/v1/completions', { ...body, n }, N_REFUSED_KEY);
      expect(refused.status).toBe(400);
      expect(refused.headers.get('x-ratelimit-remaining-requests')).toBe('2');
    }
    expect((await post('/v1/completions', body, N_REFUSED_KEY)).status).toBe(200);
    // A malformed n is a broken body, which spends its token as any does.
    const malformed = await post('/v1/completions', { ...body, n: '2' }, N_REFUSED_KEY);
    expect(malformed.status).toBe(400);
    expect(malformed.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    expect((await post('/v1/completions', body, N_REFUSED_KEY)).status).toBe(429);
  });

  it('cancels the generation at the pool when the client goes away', async () => {
    // The tiny model can finish a whole story before the abort reaches the
    // pool; such an attempt proves nothing either way and is repeated. An
    // attempt is decided when the pool counts the generation as finished.
    let cancelled = false;
    for (let attempt = 0; attempt < 5 && !cancelled; attempt++) {
      const before = await finishedCounts(stack.poolUrl);
      const controller = new AbortController();
      const res = await fetch(`${stack.edgeUrl}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.devKey}` },
        body: JSON.stringify({ model, prompt: 'Once', max_tokens: 500, temperature: 1, seed: 7 + attempt, stream: true, speculation: 'off', stream_options: { smooth: true } }),
        signal: controller.signal,
      });
      const reader = res.body!.getReader();
      await reader.read();
      controller.abort();
      const after = await finishedAfter(stack.poolUrl, before, 1);
      expect(after.total).toBe(before.total + 1);
      cancelled = after.cancelled === before.cancelled + 1;
    }
    expect(cancelled).toBe(true);
  });

  it("drafts from a chat's predicted output (OpenAI's prediction), with the same reply in fewer steps", async () => {
    const ask = { model, messages: [{ role: 'user' as const, content: 'Tell me about a cat.' }], max_tokens: 150, temperature: 0 };
    const plain = await client.chat.completions.create({ ...ask, speculation: 'off' } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const reply = plain.choices[0].message.content!;
    expect(reply.length).toBeGreaterThan(100);
    // The reply with a few words changed: an edit of what it predicts.
    const edited = reply.replace(/ the /g, ' a ');
    // Users of their own: neither has a cache that holds the reply (the plain request taught the default user's).
    const predicted = await client.chat.completions.create({ ...ask, user: 'prediction-user', prediction: { type: 'content', content: edited } });
    const without = await client.chat.completions.create({ ...ask, user: 'no-prediction-user' });
    expect(predicted.choices[0].message.content).toBe(reply);
    expect(without.choices[0].message.content).toBe(reply);
    const steps = (r: OpenAI.ChatCompletion): number => (r.usage as unknown as UsageWithSpeculation).speculation.steps;
    expect(steps(predicted)).toBeLessThan(steps(without));
    // OpenAI's counts of the prediction's tokens the reply followed, and the rest (the changed words).
    const details = predicted.usage!.completion_tokens_details!;
    expect(details.accepted_prediction_tokens).toBeGreaterThan(predicted.usage!.completion_tokens * 0.7);
    expect(details.accepted_prediction_tokens).toBeLessThanOrEqual(predicted.usage!.completion_tokens);
    expect(details.rejected_prediction_tokens).toBeGreaterThan(0);
    expect(without.usage!.completion_tokens_details).toBeUndefined();
    // Speculation off still says how much of it the reply followed: the same counts.
    const offPredicted = await client.chat.completions.create({ ...ask, speculation: 'off', prediction: { type: 'content', content: edited } } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(offPredicted.choices[0].message.content).toBe(reply);
    expect(offPredicted.usage!.completion_tokens_details).toEqual(details);
    // The reply itself as the prediction: all of it accepted, none rejected (its tokens as the reply's, no leading space of its own).
    const exact = await client.completions.create({ model, prompt: PROMPT, max_tokens: 40, temperature: 0, prediction: { type: 'content', content: reference.text.slice(0, 60) } } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(exact.usage!.completion_tokens_details).toMatchObject({ rejected_prediction_tokens: 0 });
    expect(exact.usage!.completion_tokens_details!.accepted_prediction_tokens).toBeGreaterThan(10);
    // Longer than any reply could follow: tokenized only as far as the context (512 here), not its 20,000 characters.
    const long = await client.completions.create({ model, prompt: PROMPT, max_tokens: 2, temperature: 0, prediction: { type: 'content', content: 'the dog '.repeat(2500) } } as OpenAI.CompletionCreateParamsNonStreaming);
    const longDetails = long.usage!.completion_tokens_details!;
    expect(longDetails.accepted_prediction_tokens! + longDetails.rejected_prediction_tokens!).toBeLessThanOrEqual(512);
    expect(longDetails.rejected_prediction_tokens).toBeGreaterThan(400);
    // Empty, but given: 0 and 0.
    const empty = await client.chat.completions.create({ ...ask, max_tokens: 8, prediction: { type: 'content', content: '' } });
    expect(empty.usage!.completion_tokens_details).toEqual({ accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 });
    // Parts of text are joined; anything but content is refused.
    const parts = await client.chat.completions.create({ ...ask, user: 'prediction-parts-user', prediction: { type: 'content', content: [{ type: 'text', text: edited.slice(0, 40) }, { type: 'text', text: edited.slice(40) }] } });
    expect(parts.choices[0].message.content).toBe(reply);
    const wrong = await post('/v1/chat/completions', { ...ask, prediction: { type: 'guess', content: 'x' } });
    expect(wrong.status).toBe(400);
    expect(wrong.json.error?.param).toMatch(/^prediction/);
  });

  it('cancels a non-streamed generation at the pool when its client goes away, and sends a whole one that runs long as valid JSON', async () => {
    // Past the heartbeat the reply has begun: 200, JSON, spaces first (a body that came well after its headers was one of those).
    const long = await fetch(`${stack.edgeUrl}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.devKey}` },
      body: JSON.stringify({ model, prompt: 'Once', max_tokens: 400, n: 8, temperature: 1, seed: 3, speculation: 'off' }),
    });
    const headersAt = performance.now();
    const text = await long.text();
    const bodyAfterMs = performance.now() - headersAt;
    expect(long.status).toBe(200);
    expect(long.headers.get('content-type')).toBe('application/json');
    const parsed = JSON.parse(text) as { choices: unknown[]; usage: { completion_tokens: number } };
    expect(parsed.choices).toHaveLength(8);
    if (bodyAfterMs > 250) expect(text.startsWith(' ')).toBe(true);

    // The tiny model can finish before the client's leaving is noticed (four
    // replies of eight choices keep it busy for a while); such an attempt proves nothing and is repeated.
    let cancelled = false;
    for (let attempt = 0; attempt < 5 && !cancelled; attempt++) {
      const before = await finishedCounts(stack.poolUrl);
      const controller = new AbortController();
      const replies = [0, 1, 2, 3].map((i) =>
        fetch(`${stack.edgeUrl}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.devKey}` },
          body: JSON.stringify({ model, prompt: 'Once', max_tokens: 500, n: 8, temperature: 1, seed: 11 + 4 * attempt + i, speculation: 'off' }),
          signal: controller.signal,
        }).then((r) => r.text()),
      );
      await new Promise((r) => setTimeout(r, 300));
      controller.abort();
      await Promise.allSettled(replies);
      const after = await finishedAfter(stack.poolUrl, before, 32, 100);
      expect(after.total).toBe(before.total + 32);
      cancelled = after.cancelled > before.cancelled;
    }
    expect(cancelled).toBe(true);
  });

  it('a key whose clients leave mid-request gets its in-flight slot back', async () => {
    // Streams cut at every stage: while the edge reads the body, while it opens
    // the generation at the pool, once tokens flow. The runtime cancels outright
    // a request whose client left before its response, and none of its code
    // runs again: that slot comes back with the lease (3 s here), the others at once.
    const { request } = await import('node:http');
    const cutOff = (path: string, body: object, afterMs: number): Promise<void> =>
      new Promise((resolve) => {
        const r = request(`${stack.edgeUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${ONE_SLOT_KEY}`, 'content-type': 'application/json' } });
        r.on('error', () => resolve());
        r.on('response', (res) => res.resume());
        r.end(JSON.stringify(body));
        setTimeout(() => {
          r.destroy();
          resolve();
        }, afterMs);
      });
    for (const afterMs of [0, 1, 2, 3, 5, 8, 12, 20, 40]) {
      await cutOff('/v1/completions', { model, prompt: 'Once', max_tokens: 400, temperature: 1, stream: true }, afterMs);
      await cutOff('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'Once' }], max_tokens: 400, temperature: 1, stream: true, n: 2, stream_options: { smooth: true } }, afterMs);
    }
    const probe = { model, prompt: 'Lily', max_tokens: 2, temperature: 0 };
    let status = 0;
    for (let i = 0; i < 40 && status !== 200; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 200));
      status = (await post('/v1/completions', probe, ONE_SLOT_KEY)).status;
    }
    expect(status).toBe(200);
    // And the slot goes on being given back: a plain request after it is served too.
    expect((await post('/v1/completions', probe, ONE_SLOT_KEY)).status).toBe(200);
  });

  it('refuses a body that never arrives whole (408) within SSSD_BODY_TIMEOUT_SECONDS, and gives its key the slot back', async () => {
    const edge = new URL(stack.edgeUrl);
    // Headers promise 500 bytes and 20 come, then nothing; or a chunked body's first chunk, then nothing.
    for (const [framing, start] of [
      ['Content-Length: 500', '{"model": "stories26'],
      ['Transfer-Encoding: chunked', '14\r\n{"model": "stories26\r\n'],
    ]) {
      const socket = connect(Number(edge.port), edge.hostname);
      let answer = '';
      socket.on('data', (d: Buffer) => (answer += d.toString()));
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      socket.on('error', () => undefined);
      const started = performance.now();
      socket.write(`POST /v1/completions HTTP/1.1\r\nHost: ${edge.host}\r\nAuthorization: Bearer ${ONE_SLOT_KEY}\r\nContent-Type: application/json\r\n${framing}\r\n\r\n${start}`);
      // The headers, then the body (it may come in a later packet).
      let headersAt = 0;
      for (let i = 0; i < 100 && !/\r\n\r\n[\s\S]*\}/.test(answer); i++) {
        await new Promise((r) => setTimeout(r, 100));
        if (headersAt === 0 && answer.includes('\r\n\r\n')) headersAt = performance.now();
      }
      const seconds = ((headersAt || performance.now()) - started) / 1000;
      expect(answer, framing).toMatch(/^HTTP\/1\.1 408 /);
      expect(answer).toMatch(/did not arrive whole within 3 s/);
      expect(seconds).toBeGreaterThan(1.5);
      expect(seconds).toBeLessThan(8);
      socket.destroy();
      await closed;
    }
    // The key's one slot is free again.
    expect((await post('/v1/completions', { model, prompt: 'Lily', max_tokens: 2, temperature: 0 }, ONE_SLOT_KEY)).status).toBe(200);
    // A length past the limit, its body begun and stalled: a 413 within the drain's 3 s, not an answer held until the
    // body comes, never for one that stalls (review h159: none in 200 s).
    const socket = connect(Number(edge.port), edge.hostname);
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    socket.on('error', () => undefined);
    const started = performance.now();
    socket.write(`POST /v1/completions HTTP/1.1\r\nHost: ${edge.host}\r\nAuthorization: Bearer ${ONE_SLOT_KEY}\r\nContent-Type: application/json\r\nContent-Length: ${200_000_000}\r\n\r\n{"model"`);
    for (let i = 0; i < 100 && !/\r\n\r\n[\s\S]*\}/.test(answer); i++) await new Promise((r) => setTimeout(r, 100));
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer).toContain('request_too_large');
    expect((performance.now() - started) / 1000).toBeLessThan(8);
    socket.destroy();
    expect((await post('/v1/completions', { model, prompt: 'Lily', max_tokens: 2, temperature: 0 }, ONE_SLOT_KEY)).status).toBe(200);
  });

  it("takes a chunked upload's slot and rate token before reading its body, and refuses one past its key's limits unread", async () => {
    // A chunked body (no Content-Length: HTTP/2, `curl -T -`, a browser's streaming fetch) was read whole before its
    // key's limits were checked: uploads from a key of 2 slots and 20 a minute took neither, while hundreds of
    // megabytes of them sat in the isolate (review h213).
    const upload = (path: string, key: string, first: string): { finish: (rest: string) => void; drop: () => void; answered: Promise<{ status: number; text: string }> } => {
      const r = http.request(`${stack.edgeUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } });
      const answered = new Promise<{ status: number; text: string }>((resolve, reject) => {
        r.on('response', (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        });
        r.on('error', reject);
      });
      // No length given: Node sends the body chunked, this first chunk at once.
      r.write(first);
      return { finish: (rest) => r.end(rest), drop: () => r.destroy(), answered };
    };
    const past = 'a'.repeat(100 * 1024); // past SSSD_MAX_BODY_BYTES (64 KiB) here: counted, it is a 413
    // The key's one slot, held by an upload that stalls after its first chunk (its 408 comes at 3 s here).
    const stalled = upload('/v1/completions', CHUNKED_KEY, `{"model":"${model}","prompt":"`);
    await new Promise((r) => setTimeout(r, 300));
    // Another upload of the key, refused for that slot as soon as its headers come: its body, far past the limit, is
    // not read (read first, it was a 413); workerd under wrangler dev sends the 429 once the body is in.
    const refused = upload('/v1/completions', CHUNKED_KEY, `{"model":"${model}","prompt":"`);
    const whole = await post('/v1/completions', { model, prompt: 'Lily', max_tokens: 2, temperature: 0 }, CHUNKED_KEY);
    refused.finish(`${past}"}`);
    // The stalled upload holds the slot, and took a rate token: 5 a minute, 4 left (a 429 for a slot spends none).
    expect(whole.status).toBe(429);
    expect(whole.json.error?.message).toMatch(/at most 1 at once for this key, held by 1 request body still uploading/);
    expect(whole.headers.get('x-ratelimit-remaining-requests')).toBe('4');
    const second = await refused.answered;
    expect(second.status).toBe(429);
    expect(second.text).toContain('request body still uploading');
    // Its 408 gives the slot back.
    expect((await stalled.answered).status).toBe(408);
    stalled.drop();
    expect((await post('/v1/completions', { model, prompt: 'Lily', max_tokens: 2, temperature: 0 }, CHUNKED_KEY)).status).toBe(200);
    // A store's route takes no slot, but its rate token first: a key past its rate is refused without its body read.
    expect((await fetch(`${stack.edgeUrl}/v1/conversations/conv_0`, { headers: { authorization: `Bearer ${RATE_SPENT_KEY}` } })).status).toBe(404);
    const stored = upload('/v1/conversations', RATE_SPENT_KEY, '{"metadata":{"topic":"');
    await new Promise((r) => setTimeout(r, 100));
    stored.finish(`${past}"}}`);
    const rated = await stored.answered;
    expect(rated.status).toBe(429);
    expect(rated.text).toContain('Rate limit reached: 1 requests per minute');
  });

  it('refuses a body nested past 1,024 levels before parsing it, brackets in its strings not counted', async () => {
    // 1 MB of nested arrays took ~0.3 s of the isolate's thread in JSON.parse (review h213); within this stack's 64 KiB here.
    const deep = await post('/v1/completions', `{"model":"${model}","prompt":"Once","max_tokens":2,"x":${'['.repeat(30_000)}${']'.repeat(30_000)}}`);
    expect(deep.status).toBe(400);
    expect(deep.json.error).toMatchObject({ code: 'invalid_value', message: expect.stringMatching(/nests arrays and objects deeper than 1024 levels/) });
    const brackets = await post('/v1/conversations', { items: [{ type: 'message', role: 'user', content: '['.repeat(2_000) }] });
    expect(brackets.status).toBe(200);
  });

  it('keeps its promises under a soak of mixed, broken and cut-off requests (sssd soak --edge)', async () => {
    // The traffic is random and a slow machine sends less of it: soak again (another seed) until the
    // lossless pairs and the broken bodies both came up, every round free of violations.
    const counts: Record<string, number> = {};
    for (let seed = 9; seed < 14 && !(counts['pair same'] > 0 && counts['broken 400'] > 0); seed++) {
      const report = await runEdgeSoak({ edgeUrl: stack.edgeUrl, key: SOAK_KEY, seconds: 3, concurrency: 2, seed, model, maxTokens: 40, leaseSeconds: 3 });
      expect(report.violations).toEqual([]);
      for (const [kind, n] of Object.entries(report.counts)) counts[kind] = (counts[kind] ?? 0) + n;
    }
    expect(counts['pair same']).toBeGreaterThan(0);
    expect(counts['broken 400']).toBeGreaterThan(0);
    // Each round read its users' caches back (GET /v1/user-cache) and found none of their requests lost.
    expect(counts['user caches checked']).toBeGreaterThanOrEqual(5);
  }, 120_000);

  it('answers CORS preflights for browser front ends, the OpenAI SDK\'s own headers included', async () => {
    // What the SDK in a browser (dangerouslyAllowBrowser) asks for.
    const asked = 'authorization, content-type, x-stainless-retry-count, x-stainless-lang, x-stainless-os, x-stainless-timeout';
    const res = await fetch(`${stack.edgeUrl}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': asked },
    });
    expect(res.status).toBeLessThan(300);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    const allowed = (res.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(/\s*,\s*/);
    for (const header of asked.split(', ')) expect(allowed).toContain(header);
    // Every answer names its request, a preflight's too.
    expect(res.headers.get('x-request-id')).toMatch(/^req-[0-9a-f]{24}$/);
    // Chrome's Private Network Access: a public page calling an edge on this machine or the LAN asks first.
    const pna = await fetch(`${stack.edgeUrl}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-private-network': 'true' },
    });
    expect(pna.headers.get('access-control-allow-private-network')).toBe('true');
    expect(res.headers.get('access-control-allow-private-network')).toBeNull();
  });

  it("lets a browser page read a 405's Allow, beside the request id, rate-limit headers and Retry-After", async () => {
    const res = await fetch(`${stack.edgeUrl}/v1/completions`, { headers: { authorization: `Bearer ${KV_KEY}`, origin: 'https://app.example' } });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('POST');
    const exposed = (res.headers.get('access-control-expose-headers') ?? '').toLowerCase().split(/\s*,\s*/);
    for (const h of ['allow', 'x-request-id', 'retry-after']) expect(exposed, h).toContain(h);
    await res.body?.cancel();
  });

  it('serves the development key, which every site knows, to pages of this edge or this machine only; other keys to any origin', async () => {
    const models = (key: string, origin?: string): Promise<Response> =>
      fetch(`${stack.edgeUrl}/v1/models`, { headers: { authorization: `Bearer ${key}`, ...(origin ? { origin } : {}) } });
    for (const origin of ['https://evil.example', 'null', 'http://127.0.0.1.evil.example']) {
      const refused = await models(stack.devKey, origin);
      expect(refused.status, origin).toBe(403);
      // Readable by the page (CORS headers on the refusal), and saying why.
      expect(refused.headers.get('access-control-allow-origin')).toBe('*');
      expect(((await refused.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'origin_not_allowed', message: expect.stringMatching(/every site knows it/) });
    }
    for (const origin of [undefined, stack.edgeUrl, 'http://localhost:5173', 'http://127.0.0.1:3000', 'http://[::1]:8080']) {
      const served = await models(stack.devKey, origin);
      expect(served.status, origin).toBe(200);
      await served.body?.cancel();
    }
    // A page whose name now points at this machine (DNS rebinding) sends its own name as Host too: still refused.
    const { request } = await import('node:http');
    const port = new URL(stack.edgeUrl).port;
    const rebound = await new Promise<number>((resolve, reject) => {
      const req = request(`${stack.edgeUrl}/v1/models`, { headers: { host: `attacker.example:${port}`, origin: `http://attacker.example:${port}`, authorization: `Bearer ${stack.devKey}` } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(rebound).toBe(403);
    const own = await models(KV_KEY, 'https://app.example');
    expect(own.status).toBe(200);
    await own.body?.cancel();
  });

  it('tells a malformed Authorization header from a missing key', async () => {
    const sent = async (authorization?: string): Promise<string> => {
      const res = await fetch(`${stack.edgeUrl}/v1/models`, { headers: authorization ? { authorization } : {} });
      expect(res.status).toBe(401);
      return ((await res.json()) as { error: { message: string } }).error.message;
    };
    expect(await sent()).toMatch(/^Missing API key/);
    expect(await sent('Basic dXNlcjpwYXNz')).toMatch(/^Malformed Authorization header/);
    expect(await sent('Bearer a b')).toMatch(/^Malformed Authorization header/);
  });
});


// A second edge on the same pool that never waits for the user's cache (as
// when KV must fetch it from afar): the generation opens without it, and the
// trie drafted from it follows by push.
/**
 * A second edge on the stack's pool for one describe block, with its own dev key, vars and local KV: started before
 * its tests, stopped (its KV folder removed) after them. Its URL and client are read inside the tests.
 */
function edgeBeside(key: string, vars: Record<string, string>): { readonly url: string; readonly client: OpenAI } {
  let edge: RunningEdge | undefined;
  let dir = '';
  let client: OpenAI | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'sssd-e2e-beside-'));
    edge = await startEdge({ poolUrls: [stack.poolUrl], poolToken: stack.poolToken, devKey: key, persistTo: dir, vars });
    client = new OpenAI({ apiKey: key, baseURL: `${edge.url}/v1`, maxRetries: 0 });
  });
  afterAll(async () => {
    await edge?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return {
    get url(): string {
      return edge!.url;
    },
    get client(): OpenAI {
      return client!;
    },
  };
}

describe('an edge that opens generations before the user cache is read', () => {
  const LATE_KEY = 'e2e-late-cache-key';
  const edge = edgeBeside(LATE_KEY, { SSSD_USER_CACHE_WAIT_MS: '0' });

  it("still writes the user's cache, and drafts their repeated request from it", async () => {
    // A long generation (the end token banned): the trie, pushed after the
    // first tokens, lands while it runs however slow the machine is.
    const body = { prompt: 'Lily went to the park with her mom.', max_tokens: 400, temperature: 0, logit_bias: { '1': -100 }, user: 'erin' };
    // Its cache was read after the generation opened: the write at the end waited for it.
    const first = await streamCompletion(body, edge.client);
    expect(first.usage!.speculation).toMatchObject({ edge_accepted_tokens: 0, edge_trie_bytes: 0 });
    expect(first.usage!.completion_tokens).toBe(400);
    await untilCacheMerged('erin', 1, LATE_KEY, edge.url);
    const again = await streamCompletion(body, edge.client);
    expect(again.text).toBe(first.text);
    const spec = again.usage!.speculation;
    // The history the trie holds drafts much of the rest (129-223 of 400
    // tokens by hand, 16-19 steps against 30).
    expect(spec.edge_trie_bytes).toBeGreaterThan(0);
    expect(spec.edge_accepted_tokens).toBeGreaterThan(20);
    expect(spec.steps).toBeLessThan(first.usage!.speculation.steps);
  });
});

// Each fresh trie an edge pushes is a subrequest, which Workers bound per
// request: past SSSD_EDGE_TRIE_PUSHES a generation pushes none, and the pool
// drafts on from its own sources. At 0, an edge that never waits for the
// user's cache (whose trie the test above sees pushed every time) sends none.
describe('an edge that caps the fresh tries a generation pushes', () => {
  const CAPPED_KEY = 'e2e-capped-pushes-key';
  const edge = edgeBeside(CAPPED_KEY, { SSSD_USER_CACHE_WAIT_MS: '0', SSSD_EDGE_TRIE_PUSHES: '0' });

  it('pushes none past the cap, and the reply is the same', async () => {
    const body = { prompt: 'Lily went to the park with her mom.', max_tokens: 400, temperature: 0, logit_bias: { '1': -100 }, user: 'capped' };
    const first = await streamCompletion(body, edge.client);
    await untilCacheMerged('capped', 1, CAPPED_KEY, edge.url);
    const pushes = async (): Promise<number> => {
      const text = await (await fetch(`${stack.poolUrl}/metrics`)).text();
      return ['applied', 'ignored', 'ended', 'unknown', 'invalid'].reduce((sum, result) => sum + seriesValue(text, 'sssd_pool_trie_pushes_total', `result="${result}"`), 0);
    };
    const before = await pushes();
    const again = await streamCompletion(body, edge.client);
    expect(again.text).toBe(first.text);
    expect(again.usage!.speculation).toMatchObject({ edge_trie_bytes: 0, edge_accepted_tokens: 0 });
    // A push is not awaited: one would reach the pool soon after the reply's end.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await pushes()).toBe(before);
    // The user's cache is still written: only the pushes are capped.
    await untilCacheMerged('capped', 2, CAPPED_KEY, edge.url);
  });

  it('has no bench route unless SSSD_BENCH_ROUTES asks: a 404 for every method (review h153: a GET was a 405 naming POST)', async () => {
    for (const method of ['GET', 'POST', 'DELETE']) {
      const res = await fetch(`${edge.url}/bench/edge-cpu`, { method, headers: { authorization: `Bearer ${CAPPED_KEY}`, 'content-type': 'application/json' }, ...(method === 'POST' ? { body: '{"prompt":"x"}' } : {}) });
      expect(res.status, method).toBe(404);
      expect(((await res.json()) as { error: { message: string } }).error.message, method).toContain('SSSD_BENCH_ROUTES=1');
    }
  });
});
