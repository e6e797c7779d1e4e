import { describe, expect, it } from 'vitest';
import { renderChatPrompt } from '../../edge/chat-template';
import { chatMessageSchema, chatRequestSchema, parseOpenAiBody, type ChatMessage } from '../../edge/request-schema';
import { refusalOf } from '../support/refusal';

describe("the 'concat' chat template", () => {
  it('joins messages with a newline, no roles; a lone user message is its text', () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'Tell a story.' },
      { role: 'user', content: [{ type: 'text', text: 'Once upon a ' }, { type: 'text', text: 'time' }] },
      { role: 'user', content: null },
      { role: 'user', content: 'The end.' },
    ];
    expect(renderChatPrompt(messages, 'concat')).toBe('Tell a story.\nOnce upon a time\nThe end.');
    expect(renderChatPrompt([{ role: 'user', content: 'Once upon a time' }], 'concat')).toBe('Once upon a time');
  });

  it("takes the roles of replayed OpenAI histories, the deprecated `function` included, rendered as any turn", () => {
    const messages = [
      { role: 'user', content: 'Find a cat.' },
      { role: 'function', name: 'find', content: 'The cat is in the box.' },
    ].map((m) => chatMessageSchema.parse(m));
    expect(renderChatPrompt(messages, 'concat')).toBe('Find a cat.\nThe cat is in the box.');
    expect(chatMessageSchema.safeParse({ role: 'narrator', content: 'x' }).success).toBe(false);
  });

  it("takes an assistant's refusal, as OpenAI's replies carry it (a part, or the field beside null content), as what it said", () => {
    const messages = [
      { role: 'user', content: 'Tell me a secret.' },
      { role: 'assistant', content: [{ type: 'refusal', refusal: ' I cannot.' }] },
      { role: 'user', content: 'Then a story.' },
      { role: 'assistant', content: null, refusal: ' No.' },
    ].map((m) => chatMessageSchema.parse(m));
    expect(renderChatPrompt(messages, 'concat')).toBe('Tell me a secret. I cannot.\nThen a story. No.');
  });

  it('refuses images, audio and files by their type, as a feature this text model lacks, not as a malformed body', () => {
    const refusal = (part: object): Record<string, unknown> =>
      refusalOf(() => parseOpenAiBody(chatRequestSchema, { model: 'm', messages: [{ role: 'user', content: 'Look:' }, { role: 'user', content: [{ type: 'text', text: 'at' }, part] }] }, 'chat')).toBody().error;
    for (const part of [{ type: 'image_url', image_url: { url: 'http://x/y.png' } }, { type: 'input_audio', input_audio: { data: '', format: 'wav' } }, { type: 'file', file: {} }]) {
      expect(refusal(part)).toMatchObject({
        code: 'unsupported_parameter',
        param: 'messages.1.content.1.type',
        message: `messages.1.content.1.type: content parts of type '${part.type}' are not supported by this server: its model reads text only`,
      });
    }
    // A part with no type at all is still a malformed body.
    expect(refusal({ text: 'x' })).toMatchObject({ code: 'invalid_value' });
  });

  it("continues the text before an assistant reply with no newline, as the model wrote it, so the next turn's prompt extends the last one", () => {
    const first: ChatMessage[] = [
      { role: 'system', content: 'Tell a story.' },
      { role: 'user', content: 'Once upon a time' },
    ];
    const reply = ' there was a cat.';
    const next: ChatMessage[] = [...first, { role: 'assistant', content: reply }, { role: 'user', content: 'What did the cat do?' }];
    const prompt = renderChatPrompt(next, 'concat');
    expect(prompt).toBe('Tell a story.\nOnce upon a time there was a cat.\nWhat did the cat do?');
    expect(prompt.startsWith(renderChatPrompt(first, 'concat') + reply)).toBe(true);
    // A conversation that opens with the assistant starts with its text.
    expect(renderChatPrompt([{ role: 'assistant', content: 'Hello.' }, { role: 'user', content: 'Hi' }], 'concat')).toBe('Hello.\nHi');
  });
});
