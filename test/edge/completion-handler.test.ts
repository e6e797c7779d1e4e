import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { echoText, refuseTooLongToCut, type ParsedRequest } from '../../edge/completion-handler';
import type { ChatRequest, CompletionRequest } from '../../edge/request-schema';
import { MAX_TOKENIZE_CHARACTERS } from '../../edge/tokenize-route';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import { models } from '../support/shared-data';
import { refusalOrNull } from '../support/refusal';

describe('the echoed prompt', () => {
  const baby = loadTokenizer(new Uint8Array(readFileSync(models.babyllama105.tokenizer)), 'llama2c');
  const completion = (prompt: string): ParsedRequest => ({ kind: 'completion', body: { model: 'default', prompt } as CompletionRequest });

  it('is the prompt as given, unless its listed tokens do not join to it: then as the model saw it, so text_offset indexes it', () => {
    // babyllama105 has no newline nor emoji: each is <unk>, whose text is not the character.
    const prompt = 'Hi 😀\nthere';
    const ids = baby.encode(prompt, { bos: true });
    expect(echoText(completion(prompt), ids, baby, false)).toBe(prompt);
    const seen = echoText(completion(prompt), ids, baby, true);
    const decoder = baby.createDecoder();
    expect(ids.map((id) => decoder.push(id)).join('')).toBe(seen);
    expect(seen).not.toBe(prompt);
    // A prompt the tokenizer round-trips comes back as given either way.
    expect(echoText(completion('Hi there'), baby.encode('Hi there', { bos: true }), baby, true)).toBe('Hi there');
  });
});

describe('a prompt that truncate_prompt_tokens cuts', () => {
  // Tokenized whole, on the isolate's one thread that every request waits through: as far as /tokenize takes (a 1 MiB
  // prompt cut to 10 tokens held the other tenants' requests ~1.3 s).
  it('is taken up to /tokenize\'s bound, and past it is a 400 naming the prompt or the messages', () => {
    const completion = (prompt: string): ParsedRequest => ({ kind: 'completion', body: { model: 'default', prompt, truncate_prompt_tokens: 10 } as CompletionRequest });
    const chat = (content: string): ParsedRequest => ({ kind: 'chat', body: { model: 'default', messages: [{ role: 'system', content: 'x' }, { role: 'user', content }], truncate_prompt_tokens: 10 } as ChatRequest });
    const refusal = (parsed: ParsedRequest): unknown => refusalOrNull(() => refuseTooLongToCut(parsed));
    expect(refusal(completion('a'.repeat(MAX_TOKENIZE_CHARACTERS)))).toBeNull();
    expect(refusal(completion('a'.repeat(MAX_TOKENIZE_CHARACTERS + 1)))).toMatchObject({ status: 400, param: 'prompt', code: 'context_length_exceeded', message: expect.stringContaining(`at most ${MAX_TOKENIZE_CHARACTERS}`) });
    expect(refusal(chat('a'.repeat(MAX_TOKENIZE_CHARACTERS - 1)))).toBeNull();
    expect(refusal(chat('a'.repeat(MAX_TOKENIZE_CHARACTERS)))).toMatchObject({ param: 'messages' });
  });
});
