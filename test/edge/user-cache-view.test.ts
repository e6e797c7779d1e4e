import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { USER_CACHE_VIEW_MAX_TOKENS, viewUserCache } from '../../edge/user-cache-view';
import { mergeIntoUserCache } from '../../shared/drafting/user-cache';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import type { Tokenizer } from '../../shared/tokenizer/tokenizer';
import { models } from '../support/shared-data';

let tokenizer: Tokenizer;
beforeAll(() => {
  tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)), 'llama2c');
});

describe('what GET /v1/user-cache shows of a user', () => {
  it("gives each kept request's ids and text, oldest first, with the table's size and the requests merged", () => {
    const first = tokenizer.encode('Tom had a red ball.', { bos: true });
    const second = tokenizer.encode('Sue went to the park.', { bos: true });
    const bytes = mergeIntoUserCache(mergeIntoUserCache(null, first, { vocabSize: 512 }), second, { vocabSize: 512 });
    const view = viewUserCache('alice', bytes, tokenizer);
    expect(view).toMatchObject({ object: 'user_cache', user: 'alice', stored: true, bytes: bytes.byteLength, readable: true, requests_merged: 2 });
    expect(view.contexts).toBeGreaterThan(first.length);
    expect(view.history.map((h) => h.token_ids)).toEqual([Array.from(first), Array.from(second)]);
    expect(view.history.map((h) => h.text?.trim())).toEqual(['Tom had a red ball.', 'Sue went to the park.']);
  });

  it('says when nothing is kept, and when what is kept cannot be read (damaged, or another vocabulary)', () => {
    expect(viewUserCache(null, null, tokenizer)).toEqual({ object: 'user_cache', user: null, enabled: true, stored: false, bytes: 0, readable: false, requests_merged: 0, contexts: 0, history_tokens: 0, history: [] });
    const bytes = mergeIntoUserCache(null, [1, 403, 407, 261, 378], { vocabSize: 512 });
    const damaged = bytes.slice();
    damaged[damaged.length - 1] ^= 0xff;
    expect(viewUserCache('bob', damaged, tokenizer)).toMatchObject({ stored: true, bytes: bytes.byteLength, readable: false, history: [] });
    const foreign = mergeIntoUserCache(null, [1, 403, 407, 261, 378], { vocabSize: 32000 });
    expect(viewUserCache('bob', foreign, tokenizer)).toMatchObject({ stored: true, readable: false, contexts: 0 });
  });

  it('shows a value whose requests were a token each (no n-gram entry), and ids past the vocabulary as ids without text', () => {
    const single = mergeIntoUserCache(mergeIntoUserCache(null, [1], { vocabSize: 512 }), [1], { vocabSize: 512 });
    expect(viewUserCache('carol', single, tokenizer)).toMatchObject({ readable: true, requests_merged: 2, contexts: 0, history_tokens: 2, history: [{ token_ids: [1] }, { token_ids: [1] }] });
    // Written with no vocabulary named (an older writer): its ids are not checked against this one's.
    const wide = mergeIntoUserCache(null, [1, 600, 601, 602]);
    const view = viewUserCache('carol', wide, tokenizer);
    expect(view.readable).toBe(true);
    expect(view.history).toEqual([{ token_ids: [1, 600, 601, 602], text: null }]);
  });

  it(`shows the latest ${USER_CACHE_VIEW_MAX_TOKENS} tokens of a longer history, newest requests whole, and counts them all`, () => {
    const opts = { vocabSize: 512, historyTokens: 100_000, maxBytes: 16 * 1024 * 1024 };
    const request = (k: number): number[] => Array.from({ length: 30_000 }, (_, i) => 3 + ((i * 7 + k) % 500));
    let bytes: Uint8Array | null = null;
    for (let k = 0; k < 3; k++) bytes = mergeIntoUserCache(bytes, request(k), opts);
    const view = viewUserCache('dana', bytes, tokenizer);
    expect(view.history_tokens).toBe(90_000);
    expect(view.history.map((h) => h.token_ids.length)).toEqual([USER_CACHE_VIEW_MAX_TOKENS - 60_000, 30_000, 30_000]);
    expect(view.history[0].token_ids).toEqual(request(0).slice(30_000 - (USER_CACHE_VIEW_MAX_TOKENS - 60_000)));
    expect(view.history[2].token_ids).toEqual(request(2));
  });
});
