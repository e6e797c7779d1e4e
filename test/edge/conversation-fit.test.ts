import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { charactersWithin } from '../../edge/context-bound';
import { itemTextLength, refuseUnreadableItems } from '../../edge/conversation-fit';
import type { InputItem } from '../../edge/responses-request';
import type { ServedModel } from '../../edge/served-model';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import { refusalOf } from '../support/refusal';
import { models } from '../support/shared-data';

// What the check reads of the served model: its context, and the longest piece of the real tokenizer.
const tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)), 'llama2c');
let longest = 1;
for (let id = 0; id < tokenizer.vocabSize; id++) longest = Math.max(longest, tokenizer.tokenBytes(id).length);
const model = { info: { model: { name: 'stories260K', contextLength: 512, chatTemplate: 'concat' } }, tokenizer, maxTokenBytes: () => longest } as unknown as ServedModel;
const bound = charactersWithin(512, model);

const user = (content: string): InputItem => ({ type: 'message', role: 'user', content });
const system = (content: string): InputItem => ({ type: 'message', role: 'system', content });

describe('refuseUnreadableItems', () => {
  it('takes items up to the bound, and a conversation past the context as a whole (truncation "auto" serves it)', () => {
    expect(bound).toBe(512 * longest * 4);
    expect(() => refuseUnreadableItems([user('x'.repeat(bound)), user('y'.repeat(bound))], [user('z'.repeat(bound))], model)).not.toThrow();
  });

  it('refuses an item that can never fit the context, naming it and the bound', () => {
    const err = refusalOf(() => refuseUnreadableItems([user('ok'), user('A'.repeat(1_000_000))], [], model));
    expect(err.status).toBe(400);
    expect(err.param).toBe('items.1');
    expect(err.code).toBe('context_length_exceeded');
    expect(err.message).toContain('1000000 characters');
    expect(err.message).toContain(`512 tokens; an item of more than ${bound} characters cannot`);
  });

  it('counts every text an item stores: parts, a call and its output', () => {
    expect(itemTextLength({ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'ab' }, { type: 'refusal', refusal: 'cde' }] })).toBe(5);
    expect(itemTextLength({ type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}' })).toBe(5);
    expect(itemTextLength({ type: 'function_call_output', call_id: 'c1', output: 'out' })).toBe(5);
    const call: InputItem = { type: 'function_call', call_id: 'c1', name: 'f', arguments: 'x'.repeat(bound + 1) };
    expect(refusalOf(() => refuseUnreadableItems([call], [], model)).param).toBe('items.0');
  });

  it('refuses system and developer messages that together cannot fit, as truncation never drops them', () => {
    const half = Math.floor(bound / 2) + 1;
    const err = refusalOf(() => refuseUnreadableItems([{ type: 'message', role: 'developer', content: 'd'.repeat(half) }], [system('s'.repeat(half))], model));
    expect(err.param).toBe('items');
    expect(err.code).toBe('context_length_exceeded');
    expect(err.message).toContain('truncation never drops them');
    // Users' turns beside them are dropped by truncation: taken.
    expect(() => refuseUnreadableItems([user('u'.repeat(half))], [system('s'.repeat(half)), user('v'.repeat(half))], model)).not.toThrow();
  });
});
