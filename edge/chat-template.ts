/**
 * Chat messages → prompt text, per the pool's `chatTemplate` (docs/chat-template.md).
 * 'concat' (story models without a chat format): the messages' text contents in
 * order, joined by a newline, no role markers; a lone user message is its text.
 */
import type { PoolInfo } from '../shared/protocol';
import type { ChatMessage } from './request-schema';

export type ChatTemplate = PoolInfo['model']['chatTemplate'];

function messageText(message: ChatMessage): string {
  const content = message.content;
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  return content.map((part) => part.text).join('');
}

export function renderChatPrompt(messages: readonly ChatMessage[], template: ChatTemplate): string {
  switch (template) {
    case 'concat':
      return messages
        .map(messageText)
        .filter((text) => text.length > 0)
        .join('\n');
  }
}
