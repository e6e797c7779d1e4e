// vLLM's prompt_logprobs at the edge: which requests ask for them, their shape
// from the pool's prompt scores, and where a whole response carries them.
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { ApiError } from '../../edge/api-error';
import type { CompletionUsage } from '../../edge/completion-run';
import { responseJson, tokenDisplay, wholeResponse, type ResponseMeta } from '../../edge/openai-format';
import { promptLogprobsAsked, promptLogprobsOf, type PromptLogprobs } from '../../edge/prompt-logprobs';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import type { Tokenizer } from '../../shared/tokenizer/tokenizer';
import { models } from '../support/shared-data';
import { refusalOrNull } from '../support/refusal';

let tokenizer: Tokenizer;

beforeAll(() => {
  tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)), 'llama2c');
});

const refusal = (body: { prompt_logprobs?: number | null; stream?: boolean | null }): ApiError | null => refusalOrNull(() => promptLogprobsAsked(body, 512));

describe('prompt_logprobs asked', () => {
  it('takes 0..20, none when left out or null; refuses -1 (the whole vocabulary, past the 20 allowed) and a count above 0 with stream, as vLLM', () => {
    expect(promptLogprobsAsked({}, 512)).toBeNull();
    expect(promptLogprobsAsked({ prompt_logprobs: null }, 512)).toBeNull();
    expect(promptLogprobsAsked({ prompt_logprobs: 0 }, 512)).toBe(0);
    expect(promptLogprobsAsked({ prompt_logprobs: 20, stream: false }, 512)).toBe(20);
    // vLLM takes 0 with stream and streams nothing of it: the pool is not asked.
    expect(promptLogprobsAsked({ prompt_logprobs: 0, stream: true }, 512)).toBeNull();
    for (const body of [{ prompt_logprobs: -1 }, { prompt_logprobs: 1, stream: true }, { prompt_logprobs: -1, stream: true }]) {
      const err = refusal(body);
      expect(err, JSON.stringify(body)).toBeInstanceOf(ApiError);
      expect(err!.toBody().error).toMatchObject({ type: 'invalid_request_error', param: 'prompt_logprobs', code: 'invalid_value' });
    }
    expect(refusal({ prompt_logprobs: -1 })!.message).toMatch(/512/);
    expect(refusal({ prompt_logprobs: 2, stream: true })!.message).toMatch(/stream/);
  });
});

describe("prompt_logprobs' shape", () => {
  it('null for the first token, then per token its own entry and the k most likely, each {logprob, rank, decoded_token} keyed by id', () => {
    const ids = tokenizer.encode('Tom saw a dog', { bos: true });
    expect(ids.length).toBeGreaterThanOrEqual(4);
    const logprobs = ids.slice(1).map((_, i) => -1 - i);
    // Position 1: the token is the most likely; 2: the second; 3 on: not among the top 2 the pool sent (3 each: k + 1 of another ask).
    const top = ids.slice(1).map((id, i): Array<[number, number]> => {
      const others = [300, 301, 302].filter((o) => o !== id);
      if (i === 0) return [[id, logprobs[i]], [others[0], -5], [others[1], -6]];
      if (i === 1) return [[others[0], -0.5], [id, logprobs[i]], [others[1], -7]];
      return [[others[0], -0.1], [others[1], -0.2], [others[2], -0.3]];
    });
    const list = promptLogprobsOf(ids, logprobs, top, 2, tokenizer);
    expect(list).toHaveLength(ids.length);
    expect(list[0]).toBeNull();
    const at = (i: number) => list[i]!;
    expect(at(1)[ids[1]]).toEqual({ logprob: logprobs[0], rank: 1, decoded_token: tokenDisplay(tokenizer, ids[1]) });
    expect(Object.keys(at(1))).toHaveLength(2);
    expect(at(2)[ids[2]]).toMatchObject({ logprob: logprobs[1], rank: 2 });
    expect(Object.keys(at(2))).toHaveLength(2);
    // From a pool without ranks, outside the top k: its rank is not known (vLLM counts it in the whole vocabulary); the k are listed by rank.
    expect(at(3)[ids[3]]).toEqual({ logprob: logprobs[2], rank: null, decoded_token: tokenDisplay(tokenizer, ids[3]) });
    expect(Object.keys(at(3))).toHaveLength(3);
    expect(at(3)[String(top[2][0][0])]).toEqual({ logprob: -0.1, rank: 1, decoded_token: tokenDisplay(tokenizer, top[2][0][0]) });
    expect(at(3)[String(top[2][1][0])]).toMatchObject({ logprob: -0.2, rank: 2 });
    // The pool sent more than k (the echo asked for more): a token past the k listed still has its rank.
    const wider = promptLogprobsOf(ids, logprobs, top, 1, tokenizer);
    expect(wider[2]![ids[2]]).toMatchObject({ logprob: logprobs[1], rank: 2 });
    expect(Object.keys(wider[2]!)).toHaveLength(2);
  });

  it("takes each prompt token's rank in the whole vocabulary from the pool where it sends them, outside the top k and with 0 alike", () => {
    const ids = [1, 300, 301, 302];
    const top: Array<Array<[number, number]>> = [[[300, -0.1], [9, -3]], [[8, -0.2], [7, -0.3]], [[6, -0.4], [5, -0.5]]];
    const list = promptLogprobsOf(ids, [-0.1, -4, -9], top, 2, tokenizer, [1, 17, 230]);
    expect([1, 2, 3].map((i) => list[i]![ids[i]].rank)).toEqual([1, 17, 230]);
    expect(list[2]![8]).toMatchObject({ logprob: -0.2, rank: 1 });
    const own = promptLogprobsOf(ids, [-0.1, -4, -9], undefined, 0, tokenizer, [1, 17, 230]);
    expect([1, 2, 3].map((i) => own[i]![ids[i]].rank)).toEqual([1, 17, 230]);
  });

  it("with 0 alternatives, each token's own alone; -inf clamped to -9999 as vLLM's clamp_prompt_logprobs", () => {
    const ids = [1, 300, 301];
    const list = promptLogprobsOf(ids, [-Infinity, -2], undefined, 0, tokenizer);
    expect(list[1]).toEqual({ 300: { logprob: -9999, rank: null, decoded_token: tokenDisplay(tokenizer, 300) } });
    expect(list[2]).toEqual({ 301: { logprob: -2, rank: null, decoded_token: tokenDisplay(tokenizer, 301) } });
    expect(JSON.parse(JSON.stringify(list))).toEqual(list);
  });

  it('names special ids by their names as vLLM does (<s>, </s>), not the nothing they print: a chat prompt has BOS inside, and the story-ending BOS is a likely alternative', () => {
    const ids = [1, 300, 1, 301];
    const top: Array<Array<[number, number]>> = [[[300, -0.1]], [[1, -0.2], [2, -5]], [[301, -0.3]]];
    const list = promptLogprobsOf(ids, [-0.1, -0.2, -0.3], top, 2, tokenizer);
    expect(list[2]![1]).toEqual({ logprob: -0.2, rank: 1, decoded_token: '<s>' });
    expect(list[2]![2]).toEqual({ logprob: -5, rank: 2, decoded_token: '</s>' });
    expect(list[1]![300].decoded_token).toBe(tokenDisplay(tokenizer, 300));
  });
});

describe("prompt_logprobs' order in the JSON text", () => {
  it("the prompt token first, then the others by rank, as vLLM's dict has them, where JavaScript would order the ids; one there takes its first place", () => {
    const ids = [1, 400, 300];
    const top: Array<Array<[number, number]>> = [
      [[350, -0.5], [20, -1], [400, -2]],
      [[300, -0.1], [7, -3], [350, -4]],
    ];
    const list = promptLogprobsOf(ids, [-2, -0.1], top, 3, tokenizer, [3, 1]);
    const meta: ResponseMeta = { id: 'x', created: 1, model: 'm', fingerprint: 'fp_0123456789', kind: 'chat', promptLogprobs: true };
    const usage = { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } as CompletionUsage;
    const text = responseJson(meta, wholeResponse(meta, [{ text: 'a', finishReason: 'length', stopReason: null, tokens: [] }], usage, list));
    const keys = (json: string): string[] => Array.from(json.matchAll(/"(\d+)":\{"logprob"/g), (m) => m[1]);
    expect(keys(text)).toEqual(['400', '350', '20', '300', '7', '350']);
    // The prompt token among the top takes that entry (its rank by place), as a Python dict assigned twice.
    expect(text).toContain(`"400":{"logprob":-2,"rank":3,"decoded_token":${JSON.stringify(tokenDisplay(tokenizer, 400))}}`);
    // JSON.stringify alone would not.
    expect(keys(JSON.stringify(list))).toEqual(['20', '350', '400', '7', '300', '350']);
  });
});

describe('prompt_logprobs in a whole response', () => {
  const usage = { prompt_tokens: 2, completion_tokens: 1, total_tokens: 3 } as CompletionUsage;
  const list: PromptLogprobs = [null, { 300: { logprob: -1, rank: 1, decoded_token: 'x' } }];
  const choices = [0, 1].map(() => ({ text: 'a', finishReason: 'length', stopReason: null, tokens: [] }));
  const meta = (kind: 'completion' | 'chat', asked: boolean): ResponseMeta => ({ id: 'x', created: 1, model: 'm', fingerprint: 'fp_0123456789', kind, ...(asked ? { promptLogprobs: true } : {}) });

  it('completions: in every choice (n share the prompt); chat: once, beside usage; left out when not asked', () => {
    const completion = wholeResponse(meta('completion', true), choices, usage, list) as { choices: Array<Record<string, unknown>> } & Record<string, unknown>;
    expect(completion.choices.map((c) => c.prompt_logprobs)).toEqual([list, list]);
    expect(completion).not.toHaveProperty('prompt_logprobs');
    const chat = wholeResponse(meta('chat', true), choices, usage, list) as { choices: Array<Record<string, unknown>> } & Record<string, unknown>;
    expect(chat.prompt_logprobs).toEqual(list);
    for (const c of chat.choices) expect(c).not.toHaveProperty('prompt_logprobs');
    const plain = wholeResponse(meta('completion', false), choices, usage, null) as { choices: Array<Record<string, unknown>> };
    for (const c of plain.choices) expect(c).not.toHaveProperty('prompt_logprobs');
  });
});
