/**
 * vLLM's `POST /tokenize` and `POST /detokenize`: the served model's
 * tokenizer, run at the edge with no pool pass. A client counts a prompt's
 * tokens against `max_model_len` before it sends it, or reads the ids the
 * model sees (a chat's as the chat template renders it), with the same
 * bodies and replies as vLLM's servers.
 */
import { z } from 'zod';
import type { EncodeOptions } from '../shared/tokenizer/tokenizer';
import { badRequest } from './api-error';
import { CHAT_PROMPT_ENCODING, renderChatPrompt } from './chat-template';
import { tokenString } from './openai-format';
import { chatMessageSchema, parseBody } from './request-schema';
import { acceptsModelName, unknownModel, type ServedModel } from './served-model';

/**
 * Characters one /tokenize takes: encoding runs on the isolate's one thread,
 * which every request on it waits through (1 MiB took ~0.45 s), so a text far
 * past any context is refused rather than counted. 256K characters is ~0.1 s
 * and, at a few characters a token, hundreds of times the served contexts.
 */
export const MAX_TOKENIZE_CHARACTERS = 262_144;
/** Ids one /detokenize takes (decoding is cheap; the bound keeps a reply's size near its body's). */
const MAX_DETOKENIZE_TOKENS = 262_144;

const modelField = z.string().min(1).max(256).nullish();

const common = {
  model: modelField,
  /** vLLM's: each id's text beside the ids. */
  return_token_strs: z.boolean().nullish(),
};

const completionForm = z.object({
  ...common,
  prompt: z.string(),
  /** BOS first, as a completion's prompt has it (vLLM's default true). */
  add_special_tokens: z.boolean().nullish(),
});

const chatForm = z.object({
  ...common,
  messages: z.array(chatMessageSchema).min(1, 'messages must not be empty'),
  // The template here always ends in the assistant's turn, as a chat completion's prompt does: other values would
  // count a prompt that no chat request can send.
  add_generation_prompt: z.literal(true, { error: 'only true is served (the chat template ends in the assistant turn)' }).nullish(),
  continue_final_message: z.literal(false, { error: 'only false is served' }).nullish(),
  /** The chat template places BOS itself (docs/chat-template.md); either value gives the chat completion's ids. */
  add_special_tokens: z.boolean().nullish(),
  /** Taken as chat takes them: the template renders no tools, so they add no tokens. */
  tools: z.array(z.unknown()).nullish(),
});

const detokenizeForm = z.object({
  model: modelField,
  tokens: z.array(z.number().int().min(0)).max(MAX_DETOKENIZE_TOKENS, `tokens holds at most ${MAX_DETOKENIZE_TOKENS} ids`),
});

export interface TokenizeReply {
  count: number;
  max_model_len: number;
  tokens: number[];
  token_strs: string[] | null;
}

/** What a /tokenize body asks: its text (a chat's rendered as a chat completion's prompt is), how it is tokenized (BOS, special spellings), which model, and whether the ids' texts come back. */
interface TokenizeAsk {
  text: (model: ServedModel) => string;
  param: 'prompt' | 'messages';
  encoding: EncodeOptions;
  model: string | null | undefined;
  strs: boolean;
}

/** The body's form: a chat's when it has `messages` (as vLLM tells them apart), else a completion prompt's. */
function parseTokenizeBody(body: unknown): TokenizeAsk {
  if (typeof body === 'object' && body !== null && 'messages' in body) {
    const chat = parseBody(chatForm, body);
    // As a chat completion's prompt is made (chat-template.ts's encodeChatPrompt): the template's text, BOS first, special spellings plain.
    return { text: (model) => renderChatPrompt(chat.messages, model.info.model.chatTemplate), param: 'messages', encoding: CHAT_PROMPT_ENCODING, model: chat.model, strs: chat.return_token_strs === true };
  }
  const prompt = parseBody(completionForm, body);
  // As a completion's text prompt: special spellings are special ids (docs/edge.md).
  return { text: () => prompt.prompt, param: 'prompt', encoding: { bos: prompt.add_special_tokens !== false }, model: prompt.model, strs: prompt.return_token_strs === true };
}

function checkModel(name: string | null | undefined, model: ServedModel): void {
  if (name !== null && name !== undefined && !acceptsModelName(model, name)) throw unknownModel(model, name);
}

export function tokenize(body: unknown, model: ServedModel): TokenizeReply {
  const ask = parseTokenizeBody(body);
  checkModel(ask.model, model);
  const text = ask.text(model);
  if (text.length > MAX_TOKENIZE_CHARACTERS) {
    throw badRequest(`${ask.param}: ${text.length} characters to tokenize; at most ${MAX_TOKENIZE_CHARACTERS} are taken at once (send the text in parts).`, ask.param, 'invalid_value');
  }
  const tokenizer = model.tokenizer;
  const tokens = tokenizer.encode(text, ask.encoding);
  return {
    count: tokens.length,
    max_model_len: model.info.model.contextLength,
    tokens,
    token_strs: ask.strs ? tokens.map((id) => tokenString(tokenizer, id)) : null,
  };
}

export function detokenize(body: unknown, model: ServedModel): { prompt: string } {
  const form = parseBody(detokenizeForm, body);
  checkModel(form.model, model);
  const vocabSize = model.tokenizer.vocabSize;
  const bad = form.tokens.findIndex((id) => id >= vocabSize);
  if (bad >= 0) throw badRequest(`tokens[${bad}]: token id ${form.tokens[bad]} is outside the vocabulary (size ${vocabSize}).`, `tokens.${bad}`, 'invalid_value');
  return { prompt: model.tokenizer.decode(form.tokens) };
}
