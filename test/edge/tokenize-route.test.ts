import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { ServedModel } from '../../edge/served-model';
import { detokenize, MAX_TOKENIZE_CHARACTERS, tokenize } from '../../edge/tokenize-route';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import { tokenizerJsonFromLlama2c } from '../../shared/tokenizer/tokenizer-json';
import { refusalOf } from '../support/refusal';
import { models } from '../support/shared-data';

// What the routes read of the served model: its name, context and template, and the real tokenizer.
const tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)), 'llama2c');
const model = { info: { model: { name: 'stories260K', contextLength: 512, chatTemplate: 'concat' } }, tokenizer } as unknown as ServedModel;

describe('/tokenize and /detokenize', () => {
  it("gives a prompt's ids with BOS unless add_special_tokens is false, and their texts only when asked", () => {
    const withBos = tokenize({ prompt: 'The cat sat.' }, model);
    expect(withBos.tokens[0]).toBe(tokenizer.bosId);
    expect(withBos.token_strs).toBeNull();
    const bare = tokenize({ prompt: 'The cat sat.', add_special_tokens: false, return_token_strs: true }, model);
    expect(bare.tokens).toEqual(withBos.tokens.slice(1));
    expect(bare.count).toBe(bare.tokens.length);
    expect(bare.token_strs!.join('')).toBe(' The cat sat.');
    expect(detokenize({ tokens: withBos.tokens }, model).prompt).toBe('The cat sat.');
  });

  it("names special ids in token_strs as vLLM does (<s>, </s>), where they print nothing in text, with either tokenizer", () => {
    const hf = loadTokenizer(new TextEncoder().encode(tokenizerJsonFromLlama2c(new Uint8Array(readFileSync(models.stories260K.tokenizer)))));
    for (const served of [model, { ...model, tokenizer: hf } as ServedModel]) {
      const withBos = tokenize({ prompt: 'The cat sat.', return_token_strs: true }, served);
      expect(withBos.token_strs![0]).toBe('<s>');
      expect(withBos.token_strs!.slice(1).join('')).toBe(' The cat sat.');
    }
    // A chat's prompt holds BOS (the template places it); a completion prompt spelling </s> has EOS with a Hugging Face tokenizer.json.
    expect(tokenize({ messages: [{ role: 'user', content: 'A dog.' }], return_token_strs: true }, model).token_strs![0]).toBe('<s>');
    const spelled = tokenize({ prompt: 'End.</s>', add_special_tokens: false, return_token_strs: true }, { ...model, tokenizer: hf } as ServedModel);
    expect(spelled.token_strs!.at(-1)).toBe('</s>');
    expect(spelled.tokens.at(-1)).toBe(2);
    // babyllama105's tokenizer names its BOS the same.
    const tok105 = loadTokenizer(new Uint8Array(readFileSync(models.babyllama105.tokenizer)), 'llama2c');
    expect(tokenize({ prompt: 'a cat', return_token_strs: true }, { ...model, tokenizer: tok105 } as ServedModel).token_strs![0]).toBe('<s>');
  });

  it("renders a chat's messages as a chat completion's prompt is, each message on its line after BOS", () => {
    const chat = tokenize({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'A dog.' }] }, model);
    expect(chat.tokens).toEqual(tokenizer.encode('Be brief.\nA dog.', { bos: true }));
  });

  it("reads special spellings in a chat's messages as plain text, and in a prompt as special ids, with a Hugging Face tokenizer.json", () => {
    const hf = loadTokenizer(new TextEncoder().encode(tokenizerJsonFromLlama2c(new Uint8Array(readFileSync(models.stories260K.tokenizer)))));
    const hfModel = { ...model, tokenizer: hf } as ServedModel;
    const messages = [{ role: 'user', content: 'Once upon a time</s><s>There was' }, { role: 'assistant', content: ' a dog<unk> A </' }, { role: 'user', content: 's> B' }];
    const chat = tokenize({ messages, return_token_strs: true }, hfModel);
    expect(chat.tokens.indexOf(hf.bosId, 1)).toBe(-1);
    expect(chat.tokens).not.toContain(2);
    expect(chat.tokens).toContain(0);
    // As the llama2.c tokenizer reads the same text.
    expect(chat.tokens).toEqual(tokenize({ messages }, model).tokens);
    const prompt = tokenize({ prompt: 'Once upon a time</s><s>There was' }, hfModel);
    expect(prompt.tokens.slice(1)).toEqual(expect.arrayContaining([1, 2]));
  });

  it('refuses by field what it cannot do: too long a text, ids outside the vocabulary, another model, a template it does not have', () => {
    const long = refusalOf(() => tokenize({ prompt: 'a'.repeat(MAX_TOKENIZE_CHARACTERS + 1) }, model));
    expect(long).toMatchObject({ status: 400, param: 'prompt' });
    expect(long.message).toMatch(/at most 262144 are taken at once/);
    expect(refusalOf(() => detokenize({ tokens: [5, 512] }, model))).toMatchObject({ status: 400, param: 'tokens.1' });
    expect(refusalOf(() => detokenize({ tokens: [-1] }, model))).toMatchObject({ status: 400, param: 'tokens.0' });
    expect(refusalOf(() => tokenize({ model: 'gpt-4o', prompt: 'x' }, model))).toMatchObject({ status: 404, code: 'model_not_found' });
    expect(refusalOf(() => tokenize({ messages: [{ role: 'user', content: 'x' }], continue_final_message: true }, model))).toMatchObject({ param: 'continue_final_message' });
    expect(refusalOf(() => tokenize({ messages: [] }, model))).toMatchObject({ param: 'messages' });
    expect(refusalOf(() => tokenize({ prompt: 3 }, model))).toMatchObject({ param: 'prompt' });
    expect(tokenize({ model: 'default', prompt: 'x' }, model).count).toBe(tokenizer.encode('x', { bos: true }).length);
  });
});
