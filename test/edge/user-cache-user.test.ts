import { describe, expect, it } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { completionRequestSchema } from '../../edge/request-schema';
import { userCacheUser } from '../../edge/user-cache-user';
import { refusalOrNull } from '../support/refusal';

const refusal = (search: string, body = ''): ApiError | null => refusalOrNull(() => userCacheUser(search, body));

describe('the user a /v1/user-cache request names (DELETE forgets, GET shows)', () => {
  it('is ?user=NAME, form-decoded, or the unnamed user with none (or an empty one)', () => {
    expect(userCacheUser('?user=alice', '')).toBe('alice');
    expect(userCacheUser('?user=a%2Bb+c', '')).toBe('a+b c');
    expect(userCacheUser('?user=%F0%9F%98%80', '')).toBe('😀');
    expect(userCacheUser('', '')).toBeNull();
    expect(userCacheUser('?user=', '')).toBeNull();
    expect(userCacheUser('?user', '')).toBeNull();
  });

  it('takes every name the completion routes take: 256 characters, emoji counted as one each as there', () => {
    const emoji = '🙂'.repeat(256);
    expect(completionRequestSchema.safeParse({ model: 'default', prompt: 'x', user: emoji }).success).toBe(true);
    expect(userCacheUser(`?user=${encodeURIComponent(emoji)}`, '')).toBe(emoji);
    expect(userCacheUser('', JSON.stringify({ user: emoji }))).toBe(emoji);
    expect(refusal(`?user=${encodeURIComponent(emoji + '🙂')}`)?.message).toBe('user is at most 256 characters.');
    expect(refusal(`?user=${'a'.repeat(257)}`)?.message).toBe('user is at most 256 characters.');
  });

  it('takes a JSON body {"user"}: a name with a lone surrogate, which no URL can carry, can be forgotten too', () => {
    expect(userCacheUser('', '{"user": "\\ud800"}')).toBe('\ud800');
    expect(userCacheUser('', '{"user": null}')).toBeNull();
  });

  it('quotes a long unknown parameter cut between characters, never in half of an emoji (review h142)', () => {
    const err = refusal(`?${'a'.repeat(99)}%F0%9F%98%80=x`);
    expect(err?.param).toBe(`${'a'.repeat(99)}…`);
    expect(err?.message).not.toMatch(/[\ud800-\udfff]/);
  });

  it('refuses what it would have guessed at: other parameters, user twice, both places, bad encoding, other bodies', () => {
    for (const [search, body, param] of [
      ['?user_id=alice', '', 'user_id'],
      ['?user=a&user=b', '', 'user'],
      ['?user=a', '{"user": "a"}', 'user'],
      ['?user=%FF', '', 'user'],
      ['?user=%ED%A0%80', '', 'user'],
      ['?user=%', '', 'user'],
      // A parameter's name that is not UTF-8 names none.
      ['?%FF=a', '', null],
      ['', '{"user": "a", "all": true}', 'user'],
      ['', '{"user": 7}', 'user'],
      ['', `{"user": "${'x'.repeat(257)}"}`, 'user'],
      [`?user=${'x'.repeat(257)}`, '', 'user'],
    ] as const) {
      const err = refusal(search, body);
      expect(err?.status, `${search} ${body}`).toBe(400);
      expect(err!.toBody().error.param).toBe(param);
    }
    expect(refusal('', '{"user": ')!.toBody().error.code).toBe('invalid_json');
  });
});
