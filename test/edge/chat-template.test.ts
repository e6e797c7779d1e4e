import { describe, expect, it } from 'vitest';
import { renderChatPrompt } from '../../edge/chat-template';
import { chatMessageSchema, type ChatMessage } from '../../edge/request-schema';

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
