import { describe, expect, it } from 'vitest';
import { fittedConversation } from '../../edge/conversation-truncation';
import type { ChatMessage } from '../../edge/request-schema';

const user = (content: string): ChatMessage => ({ role: 'user', content });
const assistant = (content: string | null): ChatMessage => ({ role: 'assistant', content });
const system = (content: string): ChatMessage => ({ role: 'system', content });
const tool = (content: string): ChatMessage => ({ role: 'tool', content, tool_call_id: 'call_1' }) as ChatMessage;

/** A prompt's "size": its contents' characters (what the edge measures in tokens). */
const size = (messages: readonly ChatMessage[]): number => messages.reduce((n, m) => n + (typeof m.content === 'string' ? m.content.length : 0), 0);
const within = (limit: number) => (candidate: ChatMessage[]) => (size(candidate) <= limit ? size(candidate) : null);
const contents = (messages: readonly ChatMessage[]) => messages.map((m) => `${m.role}:${typeof m.content === 'string' ? m.content : ''}`);

describe("truncation: 'auto' (the oldest turns dropped to fit)", () => {
  const conversation = [system('SSSS'), user('aaaaaaaaaa'), assistant('bbbbbbbbbb'), user('cccccccccc'), assistant('dddddddddd'), user('eeeee')];

  it('keeps a conversation that fits whole, asking once', () => {
    let asked = 0;
    const fitted = fittedConversation(conversation, (c) => (asked++, within(100)(c)));
    expect(fitted).toMatchObject({ dropped: 0, fitted: size(conversation) });
    expect(fitted.messages).toEqual(conversation);
    expect(asked).toBe(1);
  });

  it('drops the fewest oldest turns that make it fit, keeping the system messages and the last message', () => {
    // 49 characters in all; 40 fit with one turn dropped (39), 30 with two (29), 9 with all four.
    expect(contents(fittedConversation(conversation, within(40)).messages)).toEqual(['system:SSSS', 'assistant:bbbbbbbbbb', 'user:cccccccccc', 'assistant:dddddddddd', 'user:eeeee']);
    expect(fittedConversation(conversation, within(30))).toMatchObject({ dropped: 2, fitted: 29 });
    expect(contents(fittedConversation(conversation, within(9)).messages)).toEqual(['system:SSSS', 'user:eeeee']);
  });

  it('drops a tool result with the call it answers, never alone', () => {
    const withTools = [user('aaaa'), assistant(null), tool('rrrrrrrrrr'), tool('ssssssssss'), user('qq')];
    // Turns: the user's, then the call with its two results. Dropping the first turn (4) is not enough for 10.
    const fitted = fittedConversation(withTools, within(10));
    expect(contents(fitted.messages)).toEqual(['user:qq']);
    expect(fitted.dropped).toBe(2);
    expect(contents(fittedConversation(withTools, within(22)).messages)).toEqual(['assistant:', 'tool:rrrrrrrrrr', 'tool:ssssssssss', 'user:qq']);
  });

  it('keeps the call that the last message answers, with its other results, where that message is a tool result', () => {
    const answering = [user('aaaa'), assistant('bbbb'), user('cccc'), assistant(null), tool('rr'), tool('ss')];
    // Everything droppable dropped: the call and both its results stay, not a lone result.
    const fitted = fittedConversation(answering, within(4));
    expect(contents(fitted.messages)).toEqual(['assistant:', 'tool:rr', 'tool:ss']);
    expect(fitted.dropped).toBe(3);
    expect(contents(fittedConversation(answering, within(8)).messages)).toEqual(['user:cccc', 'assistant:', 'tool:rr', 'tool:ss']);
  });

  it('answers null with the shortest conversation where even that does not fit (the caller refuses it as too long)', () => {
    const fitted = fittedConversation(conversation, within(8));
    expect(fitted.fitted).toBeNull();
    expect(contents(fitted.messages)).toEqual(['system:SSSS', 'user:eeeee']);
    expect(fittedConversation([user('a long last message')], within(3))).toMatchObject({ fitted: null, dropped: 0 });
  });

  it('tries a logarithmic number of conversations, not one per turn', () => {
    const long: ChatMessage[] = [];
    for (let i = 0; i < 1000; i++) long.push(i % 2 === 0 ? user('uuuuuuuuuu') : assistant('aaaaaaaaaa'));
    long.push(user('last'));
    let asked = 0;
    const fitted = fittedConversation(long, (c) => (asked++, within(104)(c)));
    expect(fitted.dropped).toBe(990);
    expect(fitted.fitted).toBe(104);
    expect(asked).toBeLessThanOrEqual(12);
  });
});
