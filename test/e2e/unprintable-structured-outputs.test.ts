// Structured outputs on babyllama105, against the real stack (its pool and
// `wrangler dev`): its tokenizer (105 pieces, no byte fallback) prints no
// `{ } # = @ _ ^`, newline or tab. A choice or branch that needs one is never
// started, so the reply completes with what can be printed; a constraint
// that only such characters could satisfy is a 400 before any token.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type RunningStack } from '../../launcher/stack';
import { metricValue } from '../gpu-pool/server/pool-process';
import { models } from '../support/shared-data';

const KEY = 'e2e-unprintable-key';
const PROMPT = 'Once upon a time,';

let stack: RunningStack;
let persistTo: string;

beforeAll(async () => {
  persistTo = mkdtempSync(path.join(tmpdir(), 'sssd-e2e-unprintable-'));
  stack = await startStack({ model: models.babyllama105.checkpoint, tokenizer: models.babyllama105.tokenizer, devKey: KEY, persistTo });
}, 180_000);

afterAll(async () => {
  await stack?.stop();
  if (persistTo) rmSync(persistTo, { recursive: true, force: true });
});

interface ApiErrorBody {
  error?: { message: string; code: string | null; param?: string | null };
}

async function post(route: string, body: Record<string, unknown>): Promise<{ status: number; json: ApiErrorBody & Record<string, unknown> }> {
  const res = await fetch(`${stack.edgeUrl}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as ApiErrorBody & Record<string, unknown> };
}

/** A streamed completion: its HTTP status, the text its chunks carry, and any error event. */
async function stream(body: Record<string, unknown>): Promise<{ status: number; text: string; error: string | null }> {
  const res = await fetch(`${stack.edgeUrl}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ ...body, stream: true }),
  });
  if (res.status !== 200) return { status: res.status, text: '', error: ((await res.json()) as ApiErrorBody).error?.message ?? null };
  let text = '';
  let error: string | null = null;
  for (const line of (await res.text()).split('\n')) {
    if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
    const event = JSON.parse(line.slice(6)) as { choices?: Array<{ text: string }>; error?: { message: string } };
    if (event.error) error = event.error.message;
    for (const choice of event.choices ?? []) text += choice.text;
  }
  return { status: res.status, text, error };
}

const completion = (extra: Record<string, unknown>) => ({ model: 'default', prompt: PROMPT, temperature: 0, max_tokens: 20, ...extra });
const textOf = (json: Record<string, unknown>) => (json.choices as Array<{ text: string; finish_reason: string }>)[0];

describe('structured outputs over a tokenizer that cannot print every character', () => {
  it("complete with the choice or branch that can be printed, whole or streamed, with speculation and without", async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ choice: ['Tuesday', 'a{b}'] }, 'Tuesday'],
      [{ choice: ['zzz', 'there{'] }, 'zzz'],
      [{ regex: '(Tuesday|there=1)' }, 'Tuesday'],
    ];
    for (const [structured, reply] of cases) {
      for (const speculation of ['off', 'auto']) {
        const whole = await post('/v1/completions', completion({ structured_outputs: structured, speculation }));
        expect(whole.status, JSON.stringify(whole.json)).toBe(200);
        expect(textOf(whole.json)).toMatchObject({ text: reply, finish_reason: 'stop' });
        expect(await stream(completion({ structured_outputs: structured, speculation }))).toEqual({ status: 200, text: reply, error: null });
      }
    }
  }, 120_000);

  it("serve a JSON schema's array of objects as the empty array it allows", async () => {
    const schema = { type: 'array', items: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] } };
    const chat = await post('/v1/chat/completions', { model: 'default', messages: [{ role: 'user', content: 'Name some dogs.' }], temperature: 0, max_tokens: 20, response_format: { type: 'json_schema', json_schema: { name: 'dogs', schema } } });
    expect(chat.status, JSON.stringify(chat.json)).toBe(200);
    const message = (chat.json.choices as Array<{ message: { content: string }; finish_reason: string }>)[0];
    expect(JSON.parse(message.message.content)).toEqual([]);
    expect(message.finish_reason).toBe('stop');
  }, 60_000);

  it('refuse with a 400 before any token what only an unprintable character could satisfy, naming the field and the character', async () => {
    const generated = await metricValue({ url: stack.poolUrl }, 'vllm:generation_tokens_total');
    // Named by the field the request sent it in, not the pool's regex (a schema, tools and response_format reach it as one).
    const refused = (json: ApiErrorBody, field: string, char: string, param: string) => {
      expect(json.error?.code).toBe('pool_rejected');
      expect(json.error?.param).toBe(param);
      expect(json.error?.message).toContain(`${field}: `);
      expect(json.error?.message).toContain("can be written with this model's tokenizer: each needs a character that none of its tokens prints");
      expect(json.error?.message).toContain(JSON.stringify(char));
    };
    const choices = await post('/v1/completions', completion({ structured_outputs: { choice: ['a{b}', 'x=1'] } }));
    expect(choices.status).toBe(400);
    refused(choices.json, 'choices', '{', 'structured_outputs.choice');
    expect(choices.json.error?.message).toContain('"=" in "x=1"');
    const streamed = await stream(completion({ structured_outputs: { choice: ['a{b}', 'x=1'] } }));
    expect(streamed.status).toBe(400);
    expect(streamed.text).toBe('');
    const regex = await post('/v1/completions', completion({ structured_outputs: { regex: 'there=[0-9]' }, speculation: 'off' }));
    expect(regex.status).toBe(400);
    refused(regex.json, 'regex', '=', 'structured_outputs.regex');
    const grammar = await post('/v1/completions', completion({ structured_outputs: { grammar: 'root ::= "#" [a-z]+' } }));
    expect(grammar.status).toBe(400);
    refused(grammar.json, 'grammar', '#', 'structured_outputs.grammar');

    // A JSON object, and tool calls (an array of objects) on chat and on the Responses API: each needs '{'.
    const messages = [{ role: 'user', content: 'What day is it?' }];
    const schema = { type: 'object', properties: { day: { type: 'string' } }, required: ['day'] };
    const object = await post('/v1/chat/completions', { model: 'default', messages, max_tokens: 20, response_format: { type: 'json_schema', json_schema: { name: 'day', schema } } });
    expect(object.status).toBe(400);
    refused(object.json, 'regex', '{', 'response_format.json_schema.schema');
    const tools = [{ type: 'function', function: { name: 'today', description: 'The day of the week', parameters: { type: 'object', properties: {} } } }];
    const chatTools = await post('/v1/chat/completions', { model: 'default', messages, max_tokens: 20, tools, tool_choice: 'required' });
    expect(chatTools.status).toBe(400);
    refused(chatTools.json, 'regex', '{', 'tools');
    const responses = await post('/v1/responses', { model: 'default', input: 'What day is it?', max_output_tokens: 20, store: false, tools: [{ type: 'function', name: 'today', parameters: { type: 'object', properties: {} } }], tool_choice: 'required' });
    expect(responses.status).toBe(400);
    refused(responses.json, 'regex', '{', 'tools');
    // Not one token was generated for any of them.
    expect(await metricValue({ url: stack.poolUrl }, 'vllm:generation_tokens_total')).toBe(generated);
  }, 60_000);
});
