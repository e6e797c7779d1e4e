/**
 * Chat messages → prompt text, per the pool's `chatTemplate` (docs/chat-template.md).
 * 'concat' (story models without a chat format): the messages' text contents in
 * order, joined by a newline, no role markers; a lone user message is its text.
 * An assistant message continues the text before it with no newline: that is
 * where the model wrote it, so the next turn's prompt starts with the tokens the
 * pool already holds (prompt, then reply) and its prefix cache covers the reply
 * too, not only the turns before it.
 */
import type { PoolInfo } from '../shared/protocol';
import type { EncodeOptions, Tokenizer } from '../shared/tokenizer/tokenizer';
import type { ChatMessage } from './request-schema';

export type ChatTemplate = PoolInfo['model']['chatTemplate'];

function messageText(message: ChatMessage): string {
  const content = message.content;
  // An assistant that refused (OpenAI's reply: null content, a refusal): what it said is the refusal.
  if (content === undefined || content === null) return message.role === 'assistant' ? (message.refusal ?? '') : '';
  if (typeof content === 'string') return content;
  return content.map((part) => (part.type === 'text' ? part.text : part.refusal)).join('');
}

export function renderChatPrompt(messages: readonly ChatMessage[], template: ChatTemplate): string {
  switch (template) {
    case 'concat': {
      let prompt = '';
      for (const message of messages) {
        const text = messageText(message);
        if (text.length === 0) continue;
        if (prompt.length > 0 && message.role !== 'assistant') prompt += '\n';
        prompt += text;
      }
      return prompt;
    }
  }
}

/**
 * How a rendered chat is tokenized (chat completions, the Responses API and
 * conversations, /tokenize's `messages`): BOS first, and the messages' text
 * as plain characters. The template places BOS itself; `</s>` or `<s>` in a
 * message, a tool's output or the instructions (text a user or a web page
 * wrote) ended the document there and began another with a Hugging Face
 * tokenizer (review h171), where OpenAI never reads message text as control
 * tokens.
 */
export const CHAT_PROMPT_ENCODING: Readonly<EncodeOptions> = { bos: true, specialTokens: false };

/** A chat's prompt ids: the template's text, tokenized as CHAT_PROMPT_ENCODING says. */
export function encodeChatPrompt(messages: readonly ChatMessage[], template: ChatTemplate, tokenizer: Tokenizer): number[] {
  return tokenizer.encode(renderChatPrompt(messages, template), CHAT_PROMPT_ENCODING);
}
