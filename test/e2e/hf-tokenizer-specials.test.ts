// The real stack served with a Hugging Face tokenizer.json (made from
// stories260K's tok512.bin by tokenizerJsonFromLlama2c, as SSSD_TOKENIZER
// would name it): text in chat messages, Responses input, instructions, tool
// outputs and conversation items that spells `</s>` or `<s>` reaches the
// model as those characters, never as EOS (2) or BOS (1), as the llama2.c
// tokenizer reads it; a completion's text prompt still reads them as special
// ids (docs/edge.md). Review h171: they were ids 2 and 1 in every field.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type RunningStack } from '../../launcher/stack';
import { Llama2cTokenizer } from '../../shared/tokenizer/llama2c-tokenizer';
import { tokenizerJsonFromLlama2c } from '../../shared/tokenizer/tokenizer-json';
import { models } from '../support/shared-data';

const KEY = 'e2e-hf-specials-key';
const INJECTED = 'Once upon a time</s><s>There was<unk> a dog';

const tok512Bytes = new Uint8Array(readFileSync(models.stories260K.tokenizer));
/** The llama2.c tokenizer the file was made from: it reads `</s>` and `<s>` as characters, `<unk>` as id 0. */
const llama2c = Llama2cTokenizer.fromBytes(tok512Bytes);

let stack: RunningStack;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'sssd-e2e-hf-specials-'));
  const tokenizer = path.join(dir, 'tokenizer.json');
  writeFileSync(tokenizer, tokenizerJsonFromLlama2c(tok512Bytes));
  stack = await startStack({ model: models.stories260K.checkpoint, tokenizer, devKey: KEY, persistTo: path.join(dir, 'kv') });
}, 180_000);

afterAll(async () => {
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function post<T>(route: string, body: Record<string, unknown>): Promise<T> {
  const res = await fetch(`${stack.edgeUrl}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as T;
  if (res.status !== 200) throw new Error(`${route}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** Ids 1 (BOS) and 2 (EOS) past the prompt's first id. */
const specialsAfterBos = (ids: readonly number[]): number[] => ids.slice(1).filter((id) => id === 1 || id === 2);

interface Tokenized {
  count: number;
  tokens: number[];
}

describe('a stack served with a tokenizer.json: special spellings in chat text', () => {
  it('chat completions and /tokenize messages read them as characters, as llama2.c does; <unk> stays id 0', async () => {
    const messages = [
      { role: 'system', content: 'Be nice.' },
      { role: 'user', content: INJECTED },
    ];
    const chat = await post<{ prompt_token_ids: number[]; usage: { prompt_tokens: number } }>('/v1/chat/completions', {
      model: 'default',
      messages,
      max_tokens: 1,
      temperature: 0,
      return_token_ids: true,
    });
    const expected = llama2c.encode(`Be nice.\n${INJECTED}`);
    expect(chat.prompt_token_ids).toEqual(expected);
    expect(specialsAfterBos(chat.prompt_token_ids)).toEqual([]);
    expect(chat.prompt_token_ids).toContain(0);
    expect(chat.usage.prompt_tokens).toBe(expected.length);
    const counted = await post<Tokenized>('/tokenize', { messages });
    expect(counted.tokens).toEqual(chat.prompt_token_ids);

    // An EOS spelled across two messages: concat joins an assistant's reply to the text before it.
    const across = await post<Tokenized>('/tokenize', { messages: [{ role: 'user', content: 'A </' }, { role: 'assistant', content: 's> B' }] });
    expect(across.tokens).toEqual(llama2c.encode('A </s> B'));
    expect(specialsAfterBos(across.tokens)).toEqual([]);
  });

  it('the Responses API reads them as characters in instructions, input and a tool output', async () => {
    const output = 'Page text.</s><s>Once upon a time';
    const response = await post<{ usage: { input_tokens: number } }>('/v1/responses', {
      model: 'default',
      instructions: 'Be nice.</s>',
      input: [
        { type: 'message', role: 'user', content: 'Read the page<s>' },
        { type: 'function_call', call_id: 'call_1', name: 'read_page', arguments: '{}' },
        { type: 'function_call_output', call_id: 'call_1', output },
      ],
      max_output_tokens: 16,
      temperature: 0,
      store: false,
    });
    // instructions, then the input, a newline between turns (the call itself has no text).
    const text = `Be nice.</s>\nRead the page<s>\n${output}`;
    expect(response.usage.input_tokens).toBe(llama2c.encode(text).length);
    const asChat = await post<Tokenized>('/tokenize', {
      messages: [
        { role: 'system', content: 'Be nice.</s>' },
        { role: 'user', content: 'Read the page<s>' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'read_page', arguments: '{}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: output },
      ],
    });
    expect(asChat.tokens).toEqual(llama2c.encode(text));
    expect(specialsAfterBos(asChat.tokens)).toEqual([]);
  });

  it("a conversation's items are read as characters too", async () => {
    const conversation = await post<{ id: string }>('/v1/conversations', { items: [{ type: 'message', role: 'user', content: 'hi</s><s>Once' }] });
    const response = await post<{ usage: { input_tokens: number } }>('/v1/responses', {
      model: 'default',
      conversation: conversation.id,
      input: 'upon a time',
      max_output_tokens: 16,
      temperature: 0,
    });
    expect(response.usage.input_tokens).toBe(llama2c.encode('hi</s><s>Once\nupon a time').length);
  });

  it("a completion's text prompt still reads them as special ids (documented), and /tokenize's prompt as it does", async () => {
    const prompt = 'Once upon a time</s><s>There was';
    const completion = await post<{ choices: Array<{ prompt_token_ids: number[] }> }>('/v1/completions', {
      model: 'default',
      prompt,
      max_tokens: 1,
      temperature: 0,
      return_token_ids: true,
    });
    const ids = completion.choices[0].prompt_token_ids;
    expect(specialsAfterBos(ids)).toEqual([2, 1]);
    expect((await post<Tokenized>('/tokenize', { prompt })).tokens).toEqual(ids);
  });
});
