import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { viewUserCache } from '../../edge/user-cache-view';
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
    expect(view.history.map((h) => h.text.trim())).toEqual(['Tom had a red ball.', 'Sue went to the park.']);
  });

  it('says when nothing is kept, and when what is kept cannot be read (damaged, or another vocabulary)', () => {
    expect(viewUserCache(null, null, tokenizer)).toEqual({ object: 'user_cache', user: null, stored: false, bytes: 0, readable: false, requests_merged: 0, contexts: 0, history: [] });
    const bytes = mergeIntoUserCache(null, [1, 403, 407, 261, 378], { vocabSize: 512 });
    const damaged = bytes.slice();
    damaged[damaged.length - 1] ^= 0xff;
    expect(viewUserCache('bob', damaged, tokenizer)).toMatchObject({ stored: true, bytes: bytes.byteLength, readable: false, history: [] });
    const foreign = mergeIntoUserCache(null, [1, 403, 407, 261, 378], { vocabSize: 32000 });
    expect(viewUserCache('bob', foreign, tokenizer)).toMatchObject({ stored: true, readable: false, contexts: 0 });
  });
});
