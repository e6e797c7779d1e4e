import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { TokenTextAssembler, type SourcedText } from '../../edge/token-text';
import type { TokenSource } from '../../shared/protocol';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import type { Tokenizer } from '../../shared/tokenizer/tokenizer';
import { byteLevelTokenizer } from '../support/byte-level-tokenizer';
import { models } from '../support/shared-data';

let tokenizer: Tokenizer;
beforeAll(() => {
  tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)), 'llama2c');
});

const cycle: TokenSource[] = ['edge', 'context', 'datastore', 'model'];

function run(promptIds: number[], outputIds: number[], stops: string[], burst: number): { segments: SourcedText[]; stopped: boolean } {
  const a = new TokenTextAssembler(tokenizer.createDecoder({ previousId: promptIds[promptIds.length - 1] }), stops, new Set(tokenizer.eosIds));
  const segments: SourcedText[] = [];
  for (let i = 0; i < outputIds.length; i += burst) {
    const ids = outputIds.slice(i, i + burst);
    const out = a.push(ids, ids.map((_, j) => cycle[(i + j) % cycle.length]));
    segments.push(...out.segments);
    if (out.stopped) return { segments, stopped: true };
  }
  segments.push(...a.finish());
  return { segments, stopped: false };
}

describe('TokenTextAssembler', () => {
  const prompt = 'Once upon a time';
  const story = ' there was a little girl named Lily. She liked to play outside. One day, she saw a big dog. The end.';

  it("hands each token's log-probability out with the segment that releases its text, and none of a stopped text", () => {
    const promptIds = tokenizer.encode(prompt);
    const outputIds = tokenizer.encode(prompt + story).slice(promptIds.length);
    const lp = (id: number, i: number) => ({ id, logprob: -i, top: [[id, -i]] as Array<[number, number]> });
    for (const [stops, burst] of [[[], 1], [[], 5], [['Lily'], 3], [['big dog'], 1]] as Array<[string[], number]>) {
      const a = new TokenTextAssembler(tokenizer.createDecoder({ previousId: promptIds[promptIds.length - 1] }), stops, new Set(tokenizer.eosIds));
      const segments: SourcedText[] = [];
      let stopped = false;
      for (let i = 0; i < outputIds.length && !stopped; i += burst) {
        const ids = outputIds.slice(i, i + burst);
        const out = a.push(ids, ids.map(() => 'model'), ids.map((id, j) => lp(id, i + j)));
        segments.push(...out.segments);
        stopped = out.stopped;
      }
      if (!stopped) segments.push(...a.finish());
      const text = segments.map((s) => s.text).join('');
      const tokens = segments.flatMap((s) => s.tokens ?? []);
      // In order, each once, and every token's own text inside what was sent.
      expect(tokens.map((t) => t.logprob)).toEqual(tokens.map((_, i) => -i));
      expect(tokens.map((t) => tokenizer.decode([t.id])).join('')).toBe(text.slice(0, tokens.map((t) => tokenizer.decode([t.id])).join('').length));
      if (stops.length === 0) {
        expect(tokens).toHaveLength(outputIds.length);
        expect(tokens.map((t) => tokenizer.decode([t.id])).join('')).toBe(text);
      } else {
        // Tokens of the stop string and after are never handed out.
        expect(text).not.toContain(stops[0]);
        expect(tokens.length).toBeLessThan(outputIds.length);
      }
    }
  });

  it("lists the token of a character left unfinished at the end, so the tokens' texts join to the text", () => {
    const promptIds = tokenizer.encode(prompt);
    const storyIds = tokenizer.encode(prompt + story).slice(promptIds.length);
    const lp = (id: number) => ({ id, logprob: -1, top: null });
    // A lone first byte of a two-byte character (max_tokens reached inside a character): the decoder's flush gives U+FFFD for it.
    const stray = Array.from({ length: tokenizer.vocabSize }, (_, id) => id).find((id) => {
      const bytes = tokenizer.tokenBytes(id);
      return bytes.length === 1 && bytes[0] === 0xc3;
    });
    expect(stray).toBeDefined();
    // Bytes that never make a character, then one left unfinished at the end: each a U+FFFD.
    const f0 = Array.from({ length: tokenizer.vocabSize }, (_, id) => id).find((id) => {
      const bytes = tokenizer.tokenBytes(id);
      return bytes.length === 1 && bytes[0] === 0xf0;
    });
    expect(f0).toBeDefined();
    for (const [burst, outputIds] of [
      [1, [...storyIds.slice(0, 6), stray!]],
      [5, [...storyIds.slice(0, 6), stray!]],
      // The first token's '' went out with the first U+FFFD, and the last U+FFFD (from the flush) had no token left to join.
      [1, [f0!, f0!, f0!, f0!, f0!, f0!]],
      [4, [...storyIds.slice(0, 2), f0!, stray!, f0!, f0!]],
    ] as Array<[number, number[]]>) {
      const a = new TokenTextAssembler(tokenizer.createDecoder({ previousId: promptIds[promptIds.length - 1] }), [], new Set(tokenizer.eosIds));
      const segments: SourcedText[] = [];
      for (let i = 0; i < outputIds.length; i += burst) {
        const ids = outputIds.slice(i, i + burst);
        segments.push(...a.push(ids, ids.map(() => 'model'), ids.map(lp)).segments);
      }
      segments.push(...a.finish());
      const text = segments.map((s) => s.text).join('');
      const tokens = segments.flatMap((s) => s.tokens ?? []);
      expect(text.endsWith('\uFFFD')).toBe(true);
      expect(tokens).toHaveLength(outputIds.length);
      expect(tokens.map((t) => t.text).join('')).toBe(text);
    }
  });

  it('lists the end token that ends a reply, with no text, so the entries number the tokens counted', () => {
    const promptIds = tokenizer.encode(prompt);
    const storyIds = tokenizer.encode(prompt + story).slice(promptIds.length);
    const eos = tokenizer.eosIds[0];
    const lp = (id: number, i: number) => ({ id, logprob: -i, top: null });
    for (const [burst, outputIds] of [
      [1, [...storyIds.slice(0, 6), eos]],
      [4, [...storyIds.slice(0, 6), eos]],
      // Right after the first byte of a character (cut there by the end): the U+FFFD is the byte's, the end token's ''.
      [3, [...storyIds.slice(0, 2), 0xc3 + 3, eos]],
      [1, [eos]],
    ] as Array<[number, number[]]>) {
      const a = new TokenTextAssembler(tokenizer.createDecoder({ previousId: promptIds[promptIds.length - 1] }), [], new Set(tokenizer.eosIds));
      const segments: SourcedText[] = [];
      for (let i = 0; i < outputIds.length; i += burst) {
        const ids = outputIds.slice(i, i + burst);
        segments.push(...a.push(ids, ids.map(() => 'model'), ids.map((id, j) => lp(id, i + j))).segments);
      }
      segments.push(...a.finish());
      const tokens = segments.flatMap((s) => s.tokens ?? []);
      expect(tokens.map((t) => t.id)).toEqual(outputIds);
      expect(tokens.map((t) => t.logprob)).toEqual(outputIds.map((_, i) => -i));
      expect(tokens.at(-1)!.text).toBe('');
      expect(tokens.map((t) => t.text).join('')).toBe(segments.map((s) => s.text).join(''));
    }
  });

  it('hands out every token of a byte-level vocabulary, special tokens and unfinished characters included', () => {
    const byteLevel = byteLevelTokenizer();
    const lp = (id: number) => ({ id, logprob: -1, top: null });
    for (const ids of [
      [104, 105, 257],
      [104, 0xf0, 0x9f, 257],
      [0xe4, 257, 0xb8, 0xad, 104],
    ]) {
      const a = new TokenTextAssembler(byteLevel.createDecoder(), []);
      const segments = [...a.push(ids, ids.map(() => 'model'), ids.map(lp)).segments, ...a.finish()];
      const tokens = segments.flatMap((s) => s.tokens ?? []);
      expect(tokens.map((t) => t.id), ids.join(',')).toEqual(ids);
      expect(tokens.map((t) => t.text).join('')).toBe(segments.map((s) => s.text).join(''));
    }
  });

  it('streams exactly the text a whole decode gives, in any burst size', () => {
    const promptIds = tokenizer.encode(prompt);
    const all = tokenizer.encode(prompt + story);
    const outputIds = all.slice(promptIds.length);
    const expected = tokenizer.decode(all).slice(tokenizer.decode(promptIds).length);
    for (const burst of [1, 3, 7]) {
      const { segments } = run(promptIds, outputIds, [], burst);
      expect(segments.map((s) => s.text).join('')).toBe(expected);
    }
  });

  it('keeps each token text with the source of its token', () => {
    const promptIds = tokenizer.encode(prompt);
    const outputIds = tokenizer.encode(prompt + story).slice(promptIds.length);
    const { segments } = run(promptIds, outputIds, [], 4);
    expect(segments.length).toBe(outputIds.length);
    segments.forEach((s, i) => expect(s.source).toBe(cycle[i % cycle.length]));
  });

  it('cuts at a stop string that spans tokens and bursts, sending nothing of it', () => {
    const promptIds = tokenizer.encode(prompt);
    const outputIds = tokenizer.encode(prompt + story).slice(promptIds.length);
    for (const burst of [1, 2, 5]) {
      const { segments, stopped } = run(promptIds, outputIds, ['play outside', 'zebra'], burst);
      expect(stopped).toBe(true);
      expect(segments.map((s) => s.text).join('')).toBe(' there was a little girl named Lily. She liked to ');
    }
  });

  it("looks for stop strings only after the first min_tokens tokens, and sends the stop string itself when asked (vLLM)", () => {
    const promptIds = tokenizer.encode(prompt);
    const outputIds = tokenizer.encode(prompt + story).slice(promptIds.length);
    const text = (opts: { includeStop?: boolean; minTokens?: number }, stops: string[], burst: number) => {
      const a = new TokenTextAssembler(tokenizer.createDecoder({ previousId: promptIds[promptIds.length - 1] }), stops, new Set(tokenizer.eosIds), opts);
      let out = '';
      for (let i = 0; i < outputIds.length; i += burst) {
        const ids = outputIds.slice(i, i + burst);
        const pushed = a.push(ids, ids.map(() => 'model'));
        out += pushed.segments.map((seg) => seg.text).join('');
        if (pushed.stopped) return { out, stopped: true };
      }
      return { out: out + a.finish().map((seg) => seg.text).join(''), stopped: false };
    };
    for (const burst of [1, 3]) {
      expect(text({ includeStop: true }, ['play outside'], burst)).toEqual({ out: ' there was a little girl named Lily. She liked to play outside', stopped: true });
      // " there" is the first token's text: a stop on "there" ends the reply at once, unless the first token is past min_tokens' reach.
      expect(text({}, ['there'], burst)).toEqual({ out: ' ', stopped: true });
      expect(text({ minTokens: 1 }, ['there', 'dog'], burst)).toEqual({ out: ' there was a little girl named Lily. She liked to play outside. One day, she saw a big ', stopped: true });
    }
  });

  describe('with min_tokens, a stop string that starts in the first min_tokens tokens\' text (vLLM)', () => {
    // The first 4 tokens: " there", " was", " a", " little"; then " g", "ir", "l" (" there was a little girl").
    const text = (opts: { includeStop?: boolean; minTokens?: number }, stops: string[], burst: number) => {
      const promptIds = tokenizer.encode(prompt);
      const outputIds = tokenizer.encode(prompt + story).slice(promptIds.length);
      const a = new TokenTextAssembler(tokenizer.createDecoder({ previousId: promptIds[promptIds.length - 1] }), stops, new Set(tokenizer.eosIds), opts);
      let out = '';
      let tokens = 0;
      const take = (segments: SourcedText[]) => {
        out += segments.map((seg) => seg.text).join('');
        for (const seg of segments) tokens += seg.tokens?.length ?? 0;
      };
      for (let i = 0; i < outputIds.length; i += burst) {
        const ids = outputIds.slice(i, i + burst);
        const pushed = a.push(ids, ids.map(() => 'model'), ids.map((id, j) => ({ id, logprob: -(i + j), top: null })));
        take(pushed.segments);
        if (pushed.stopped) return { out, stopped: true, reason: a.stopString, tokens };
      }
      take(a.finish());
      return { out, stopped: false, reason: a.stopString, tokens };
    };
    const bursts = [1, 3, 8];

    it('is found where it ends after them, cut at its start (the token it starts inside not listed)', () => {
      for (const burst of bursts) {
        // Ends in the first token past min_tokens (" g").
        expect(text({ minTokens: 4 }, ['tle g'], burst)).toEqual({ out: ' there was a lit', stopped: true, reason: 'tle g', tokens: 3 });
        // Ends three tokens past them.
        expect(text({ minTokens: 4 }, ['little girl'], burst)).toEqual({ out: ' there was a ', stopped: true, reason: 'little girl', tokens: 3 });
        // Ends in the last of them ("l" is token 7): not a stop, there or later.
        expect(text({ minTokens: 7 }, ['little girl'], burst)).toMatchObject({ out: ' there was a little girl named Lily. She liked to play outside. One day, she saw a big dog. The end.', stopped: false, reason: null });
      }
    });

    it('is not found wholly inside them, even while held as the start of a longer one', () => {
      for (const burst of bursts) {
        expect(text({ minTokens: 4 }, ['little', 'dog'], burst)).toMatchObject({ out: ' there was a little girl named Lily. She liked to play outside. One day, she saw a big ', stopped: true, reason: 'dog' });
        // "little" is held after token 4 as the start of "little girl"; "tle" inside it is no stop.
        expect(text({ minTokens: 4 }, ['tle', 'little girl'], burst)).toEqual({ out: ' there was a ', stopped: true, reason: 'little girl', tokens: 3 });
      }
    });

    it('is sent whole with the text before it when asked (include_stop_str_in_output), nothing after', () => {
      for (const burst of bursts) {
        expect(text({ minTokens: 4, includeStop: true }, ['little girl'], burst)).toMatchObject({ out: ' there was a little girl', stopped: true, reason: 'little girl' });
        expect(text({ minTokens: 4, includeStop: true }, ['tle g'], burst)).toMatchObject({ out: ' there was a little g', stopped: true, reason: 'tle g' });
      }
    });
  });

  it('emits multi-byte characters only once complete', () => {
    const text = ' the café was naïve 😀 ok';
    const promptIds = tokenizer.encode(prompt);
    const outputIds = tokenizer.encode(prompt + text).slice(promptIds.length);
    const { segments } = run(promptIds, outputIds, [], 1);
    for (const s of segments) expect(s.text).not.toContain('\uFFFD');
    expect(segments.map((s) => s.text).join('')).toBe(text);
  });
});
