import { describe, expect, it } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { refuseLoneSurrogates } from '../../edge/lone-surrogates';
import { refusalOrNull } from '../support/refusal';

/** The refusal of a body sent as `text`, or null where it is taken. */
const refusal = (text: string): ApiError | null => refusalOrNull(() => refuseLoneSurrogates(text, JSON.parse(text)));

describe('lone surrogates in a request body', () => {
  it('refuses half of a character anywhere in the text, naming its field; a whole one (a pair) is taken', () => {
    const cases: Array<[string, string]> = [
      ['{"model":"m","messages":[{"role":"user","content":"a\\ud800b"}]}', 'messages.0.content'],
      ['{"messages":[{"role":"user","content":[{"type":"text","text":"ok"},{"type":"text","text":"\\udc00"}]}]}', 'messages.0.content.1.text'],
      ['{"prompt":["fine","x\\uDBFF"]}', 'prompt.1'],
      ['{"input":"\\ude00 trailing half","instructions":"\\ud83d"}', 'input'],
      ['{"items":[{"type":"message","role":"user","content":"ok"},{"type":"message","role":"user","content":"\\ud83d"}]}', 'items.1.content'],
      ['{"metadata":{"k":"\\ud83d"}}', 'metadata.k'],
    ];
    for (const [text, param] of cases) {
      const err = refusal(text);
      expect(err, text).toBeInstanceOf(ApiError);
      expect(err!.toBody().error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_value', param });
      expect(err!.status).toBe(400);
      expect(err!.message).toMatch(/^\S+ holds a lone surrogate \(U\+D[89A-F][0-9A-F]{2}, half of a character\)/);
    }
    for (const text of ['{"messages":[{"role":"user","content":"\\ud83d\\ude00 \\u00e9 😀"}]}', '{"prompt":"\\\\ud800 is spelled out, not escaped"}', '[1,2,{"a":null,"b":true}]']) {
      expect(refusal(text), text).toBeNull();
    }
  });

  it("names the object of a key holding one, without quoting the key (the error's own JSON stays well formed)", () => {
    const err = refusal('{"metadata":{"\\ud800":"v"}}')!;
    expect(err.toBody().error).toMatchObject({ param: 'metadata' });
    expect(err.message).toMatch(/^A key of metadata holds a lone surrogate \(U\+D800/);
    expect(err.message).not.toMatch(/\p{Cs}/u);
    expect(refusal('{"\\udfff":1}')!.message).toMatch(/^A key of the request body/);
    expect(refusal('"\\udfff"')!.toBody().error.param).toBeNull();
  });

  it("takes the caller's names as sent (user, safety_identifier, prompt_cache_key: a user cache of its own), at the top level only", () => {
    expect(refusal('{"user":"\\ud800","safety_identifier":"\\udc01","prompt_cache_key":"\\ud83d","prompt":"x"}')).toBeNull();
    expect(refusal('{"user":"\\ud800","prompt":"x\\ud800"}')!.toBody().error.param).toBe('prompt');
    expect(refusal('{"metadata":{"user":"\\ud800"}}')!.toBody().error.param).toBe('metadata.user');
  });

  it('reports the first in document order, and walks a deeply nested body without overflowing the stack', () => {
    expect(refusal('{"a":["ok",{"b":"\\ud800"}],"c":"\\udc00"}')!.toBody().error.param).toBe('a.1.b');
    const depth = 100_000;
    const deep = `${'['.repeat(depth)}"\\ud800"${']'.repeat(depth)}`;
    const err = refusal(deep)!;
    expect(err).toBeInstanceOf(ApiError);
    // The path is clipped as every quoted param is.
    expect(err.toBody().error.param!.length).toBeLessThanOrEqual(101);
  });
});
