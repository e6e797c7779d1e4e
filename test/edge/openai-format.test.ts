// Log-probabilities in OpenAI's shapes, with the real stories260K tokenizer:
// a character outside its pieces is spelled in byte-fallback ids, each of
// which must keep its own bytes and name.
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { finishChunk, LogprobsFormatter, responseJson, roleChunk, textChunk, tokenDisplay, tokensOf, wholeResponse, type ResponseMeta } from '../../edge/openai-format';
import { TokenTextAssembler, type SourcedText, type TokenLogprob } from '../../edge/token-text';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import type { Tokenizer } from '../../shared/tokenizer/tokenizer';
import { offUsage } from '../support/completion-usage';
import { models } from '../support/shared-data';

let tokenizer: Tokenizer;

beforeAll(() => {
  tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)), 'llama2c');
});

/** Ids through the assembler as the edge streams them, in steps of `step` ids; the sent text and its tokens. */
function streamed(ids: number[], previousId: number, step: number): { text: string; tokens: TokenLogprob[] } {
  const assembler = new TokenTextAssembler(tokenizer.createDecoder({ previousId }), []);
  const segments: SourcedText[] = [];
  for (let i = 0; i < ids.length; i += step) {
    const part = ids.slice(i, i + step);
    // The token itself and another as alternatives.
    const logprobs = part.map((id): TokenLogprob => ({ id, logprob: -0.5, top: [[id, -0.5], [id === ids[0] ? ids[1] : ids[0], -2]] }));
    segments.push(...assembler.push(part, part.map(() => 'model'), logprobs).segments);
  }
  segments.push(...assembler.finish());
  return { text: segments.map((s) => s.text).join(''), tokens: segments.flatMap((s) => s.tokens ?? []) };
}

describe('log-probabilities', () => {
  const TEXT = 'Tom saw 中 and é, 😀 and 𝄞 too.';

  it('legacy: tokens join to the text sent, and text_offset indexes it, across chunks and split characters', () => {
    const ids = tokenizer.encode(TEXT, { bos: false });
    expect(ids.some((id) => tokenizer.tokenBytes(id).length === 1 && tokenizer.tokenBytes(id)[0] >= 0x80)).toBe(true);
    const { text, tokens } = streamed(ids, 0, 3);
    expect(text).toBe(tokenizer.decode(ids));
    const formatter = new LogprobsFormatter('completion', tokenizer, true);
    // Formatted a chunk at a time, offsets running on.
    const parts = [tokens.slice(0, 4), tokens.slice(4)].map((t) => formatter.format(t) as { tokens: string[]; text_offset: number[]; top_logprobs: Array<Record<string, number>> });
    const all = parts.flatMap((p) => p.tokens);
    const offsets = parts.flatMap((p) => p.text_offset);
    expect(all.join('')).toBe(text);
    // Offsets in characters (code points, as Python and vLLM count), so a Python client's text[off:off+len(t)] finds each.
    const chars = Array.from(text);
    all.forEach((t, i) => expect(chars.slice(offsets[i], offsets[i] + Array.from(t).length).join('')).toBe(t));
    // Alternatives keep distinct names, byte ids in OpenAI's bytes: spelling.
    for (const top of parts.flatMap((p) => p.top_logprobs)) expect(Object.keys(top)).toHaveLength(2);
  });

  it("chat: each token's own bytes, which join to the text's UTF-8", () => {
    const ids = tokenizer.encode(TEXT, { bos: false });
    const { text, tokens } = streamed(ids, 0, 1);
    const content = (new LogprobsFormatter('chat', tokenizer, true).format(tokens) as { content: Array<{ token: string; bytes: number[] }> }).content;
    expect(content).toHaveLength(ids.length);
    expect(Buffer.from(content.flatMap((c) => c.bytes)).toString('utf8')).toBe(text);
    const split = content.filter((c) => c.bytes.length === 1 && c.bytes[0] >= 0x80);
    expect(split.length).toBeGreaterThanOrEqual(3);
    for (const c of split) expect(c.token).toBe(`bytes:\\x${c.bytes[0].toString(16)}`);
  });

  it('names a text piece by its text, and an id that prints nothing by the empty string', () => {
    for (const id of tokenizer.encode('Tom saw a dog', { bos: false })) {
      expect(tokenDisplay(tokenizer, id).length).toBeGreaterThan(0);
      expect(tokenDisplay(tokenizer, id)).toBe(tokenizer.decode([id]));
    }
    expect(tokenDisplay(tokenizer, tokenizer.bosId)).toBe('');
  });

  it("legacy: keeps two alternatives that print the same (a text piece and its byte's fallback piece), the less likely by its bytes", () => {
    const comma = tokenizer.encode(',', { bos: false }).at(-1)!;
    const commaByte = 0x2c + 3; // <0x2C>: byte-fallback pieces start at id 3
    expect(tokenizer.tokenBytes(commaByte)).toEqual(new Uint8Array([0x2c]));
    expect(tokenDisplay(tokenizer, commaByte)).toBe(tokenDisplay(tokenizer, comma));
    const formatter = new LogprobsFormatter('completion', tokenizer, true);
    const out = formatter.format([{ id: comma, logprob: -0.1, top: [[comma, -0.1], [commaByte, -3]], text: ',' }]) as { top_logprobs: Array<Record<string, number>> };
    expect(out.top_logprobs[0]).toEqual({ ',': -0.1, 'bytes:\\x2c': -3 });
  });

  it("legacy: after BOS, where the token's text drops its leading space, its alternatives' names do too, so its own key is its tokens entry", () => {
    const [once, the] = [' Once', ' The'].map((w) => tokenizer.encode(w, { bos: false }).at(-1)!);
    expect(tokenDisplay(tokenizer, once)).toBe(' Once');
    // Decoded right after BOS, as an echoed prompt's first token is.
    const { tokens } = streamed([once, the], tokenizer.bosId, 1);
    expect(tokens[0].text).toBe('Once');
    const out = new LogprobsFormatter('completion', tokenizer, true).format([{ ...tokens[0], top: [[once, -0.1], [the, -2]] }]) as { tokens: string[]; top_logprobs: Array<Record<string, number>> };
    expect(out.tokens[0]).toBe('Once');
    expect(out.top_logprobs[0]).toEqual({ Once: -0.1, The: -2 });
    // The chosen keeps its name when another's would be the same (a piece without the space, more likely): that one is named by its bytes.
    const names = Array.from({ length: tokenizer.vocabSize }, (_, id) => tokenDisplay(tokenizer, id));
    const spaced = names.findIndex((n, id) => n.length > 2 && n.startsWith(' ') && names.indexOf(n.slice(1)) !== -1 && id > 258);
    const bare = names.indexOf(names[spaced].slice(1));
    const clash = new LogprobsFormatter('completion', tokenizer, true).format([{ id: spaced, logprob: -0.1, top: [[bare, -0.05], [spaced, -0.1]], text: names[spaced].slice(1) }]) as { top_logprobs: Array<Record<string, number>> };
    expect(clash.top_logprobs[0][names[spaced].slice(1)]).toBe(-0.1);
    expect(Object.keys(clash.top_logprobs[0])).toHaveLength(2);
    // A bare space there prints nothing: its key is '' as its tokens entry is (babyllama105's second token, always).
    const space = names.indexOf(' ');
    const bareSpace = new LogprobsFormatter('completion', tokenizer, true).format([{ id: space, logprob: -0.02, top: [[space, -0.02], [once, -4]], text: '' }]) as { tokens: string[]; top_logprobs: Array<Record<string, number>> };
    expect(bareSpace.tokens[0]).toBe('');
    expect(bareSpace.top_logprobs[0]).toEqual({ '': -0.02, Once: -4 });
    // Later tokens keep their spaces.
    const later = new LogprobsFormatter('completion', tokenizer, true).format([tokens[1]]) as { tokens: string[]; top_logprobs: Array<Record<string, number>> };
    expect(later.tokens[0]).toBe(' The');
    expect(Object.keys(later.top_logprobs[0])).toContain(' The');
  });

  it('legacy: alternatives hold the sampled token when it is not among the top N (up to N + 1, as OpenAI); chat: exactly the top N', () => {
    const [tom, saw, dog] = ['Tom', ' saw', ' dog'].map((w) => tokenizer.encode(w, { bos: false }).at(-1)!);
    expect(new Set([tom, saw, dog]).size).toBe(3);
    const name = (id: number) => tokenDisplay(tokenizer, id);
    const sampled: TokenLogprob = { id: dog, logprob: -4.5, top: [[tom, -0.2], [saw, -1.9]], text: name(dog) };
    const legacy = new LogprobsFormatter('completion', tokenizer, true).format([sampled]) as { top_logprobs: Array<Record<string, number>> };
    expect(legacy.top_logprobs[0]).toEqual({ [name(tom)]: -0.2, [name(saw)]: -1.9, [name(dog)]: -4.5 });
    const inTop = new LogprobsFormatter('completion', tokenizer, true).format([{ ...sampled, id: saw, logprob: -1.9, text: ' saw' }]) as { top_logprobs: Array<Record<string, number>> };
    expect(Object.keys(inTop.top_logprobs[0])).toHaveLength(2);
    const chat = new LogprobsFormatter('chat', tokenizer, true).format([sampled]) as { content: Array<{ top_logprobs: unknown[] }> };
    expect(chat.content[0].top_logprobs).toHaveLength(2);
  });

  it("vLLM's return_tokens_as_token_ids: tokens and alternatives named token_id:<id>, text_offset still indexing the text, chat's bytes the token's own", () => {
    const ids = tokenizer.encode(TEXT, { bos: false });
    const { text, tokens } = streamed(ids, 0, 3);
    const legacy = new LogprobsFormatter('completion', tokenizer, true, true);
    const parts = [tokens.slice(0, 4), tokens.slice(4)].map((t) => legacy.format(t) as { tokens: string[]; text_offset: number[]; top_logprobs: Array<Record<string, number>> });
    const named = parts.flatMap((p) => p.tokens);
    expect(named).toEqual(tokens.map((t) => `token_id:${t.id}`));
    // The ids decode to the text (vLLM's own test of the feature), split characters included.
    expect(tokenizer.decode(named.map((n) => Number(n.slice('token_id:'.length))))).toBe(text);
    // Offsets as without the names: each token's text at its offset.
    const plain = new LogprobsFormatter('completion', tokenizer, true);
    expect(parts.flatMap((p) => p.text_offset)).toEqual([tokens.slice(0, 4), tokens.slice(4)].flatMap((t) => (plain.format(t) as { text_offset: number[] }).text_offset));
    // Alternatives by id, the chosen one's key its tokens entry.
    parts.flatMap((p) => p.top_logprobs).forEach((top, i) => {
      expect(Object.keys(top).every((k) => /^token_id:\d+$/.test(k))).toBe(true);
      expect(top[named[i]]).toBe(-0.5);
    });
    // Where names by text would clash (a piece and its byte's fallback piece), ids never do.
    const comma = tokenizer.encode(',', { bos: false }).at(-1)!;
    const one = legacy.another().format([{ id: comma, logprob: -0.1, top: [[comma, -0.1], [0x2c + 3, -3]], text: ',' }]) as { tokens: string[]; top_logprobs: Array<Record<string, number>> };
    expect(one.tokens).toEqual([`token_id:${comma}`]);
    expect(one.top_logprobs[0]).toEqual({ [`token_id:${comma}`]: -0.1, [`token_id:${0x2c + 3}`]: -3 });
    const chat = (new LogprobsFormatter('chat', tokenizer, true, true).format(tokens) as { content: Array<{ token: string; bytes: number[]; top_logprobs: Array<{ token: string; bytes: number[] }> }> }).content;
    expect(chat.map((c) => c.token)).toEqual(tokens.map((t) => `token_id:${t.id}`));
    expect(Buffer.from(chat.flatMap((c) => c.bytes)).toString('utf8')).toBe(text);
    for (const c of chat) for (const alt of c.top_logprobs) expect(alt.bytes).toEqual(Array.from(tokenizer.tokenBytes(Number(alt.token.slice('token_id:'.length)))));
  });

  it("vLLM's logprob_token_ids: the alternatives are the chosen token, then each listed id once in the list's order, whatever the top-k count; chat and legacy alike", () => {
    const [tom, saw, dog] = ['Tom', ' saw', ' dog'].map((w) => tokenizer.encode(w, { bos: false }).at(-1)!);
    const name = (id: number) => tokenDisplay(tokenizer, id);
    // The pool's topLogprobs hold the listed ids (dog, tom, dog again, saw); the chosen token (saw) is among them, and the count asked was 0.
    const scored: TokenLogprob = { id: saw, logprob: -1.9, top: [[dog, -4.5], [tom, -0.2], [dog, -4.5], [saw, -1.9]], text: ' saw' };
    const chat = new LogprobsFormatter('chat', tokenizer, false, false, true).format([scored]) as { content: Array<{ token: string; top_logprobs: Array<{ token: string; logprob: number }> }> };
    expect(chat.content[0].top_logprobs.map((e) => [e.token, e.logprob])).toEqual([
      [name(saw), -1.9],
      [name(dog), -4.5],
      [name(tom), -0.2],
    ]);
    const legacy = new LogprobsFormatter('completion', tokenizer, true, false, true).format([scored]) as { top_logprobs: Array<Record<string, number>> };
    expect(Object.entries(legacy.top_logprobs[0])).toEqual([
      [name(saw), -1.9],
      [name(dog), -4.5],
      [name(tom), -0.2],
    ]);
    // By id too, and in another choice's formatter (n > 1).
    const byId = new LogprobsFormatter('completion', tokenizer, true, true, true).another().format([{ ...scored, top: [[tom, -0.2]] }]) as { top_logprobs: Array<Record<string, number>> };
    expect(Object.keys(byId.top_logprobs[0])).toEqual([`token_id:${saw}`, `token_id:${tom}`]);
  });

  it("legacy: a piece spelled like an Object's own names (`__proto__`, `constructor`) is an alternative like any other, chosen or not", () => {
    const pieces = ['a', '__proto__', 'b', 'constructor'];
    const named = { tokenBytes: (id: number) => new TextEncoder().encode(pieces[id]), specialName: () => null };
    const format = (id: number) =>
      (new LogprobsFormatter('completion', named, true).format([{ id, logprob: -0.1, text: pieces[id], top: [[0, -0.1], [1, -2], [3, -3]] }]) as { top_logprobs: Array<Record<string, number>> }).top_logprobs[0];
    expect(JSON.stringify(format(0))).toBe('{"a":-0.1,"__proto__":-2,"constructor":-3}');
    expect(Object.keys(format(1))).toEqual(['a', '__proto__', 'constructor']);
    expect(JSON.stringify(format(2))).toBe('{"a":-0.1,"__proto__":-2,"constructor":-3,"b":-0.1}');
  });
});

describe("legacy top_logprobs: their order in the JSON text, and their names", () => {
  const usage = offUsage(3, 1);
  const legacyMeta = (formatter: LogprobsFormatter): ResponseMeta => ({ id: 'x', created: 1, model: 'm', fingerprint: 'fp_0123456789', kind: 'completion', logprobs: formatter });
  // The text piece of that name (a byte piece of one ASCII character has the same name, at a lower id).
  const idOf = (name: string): number => {
    const id = Array.from({ length: tokenizer.vocabSize }, (_, i) => tokenDisplay(tokenizer, i)).lastIndexOf(name);
    expect(id, name).toBeGreaterThan(2);
    return id;
  };

  it('whole and streamed, most likely first, then the chosen token where it was added, though the names are integers (JavaScript would put those first, ascending)', () => {
    const [zero, one, two, five] = ['0', '1', '2', '5'].map(idOf);
    const top: Array<[number, number]> = [[two, -1.58], [five, -1.79], [zero, -1.81]];
    const greedy: TokenLogprob = { id: two, logprob: -1.58, top, text: '2' };
    const formatter = new LogprobsFormatter('completion', tokenizer, true);
    const meta = legacyMeta(formatter);
    const whole = wholeResponse(meta, [{ text: '2', finishReason: 'length', stopReason: null, tokens: [greedy], logprobs: formatter }], usage);
    const ordered = '"top_logprobs":[{"2":-1.58,"5":-1.79,"0":-1.81}]';
    expect(responseJson(meta, whole)).toContain(ordered);
    expect(JSON.stringify(whole)).not.toContain(ordered);
    // A chosen token outside the top N comes last, where OpenAI's and vLLM's put it.
    const sampled: TokenLogprob = { id: one, logprob: -9.31, top, text: '1' };
    const chunk = textChunk(meta, [{ text: '1', source: 'model', tokens: [sampled] }], 0, formatter.another());
    expect(responseJson(meta, chunk)).toContain('"top_logprobs":[{"2":-1.58,"5":-1.79,"0":-1.81,"1":-9.31}]');
    // And by id (return_tokens_as_token_ids), whose names were never integers.
    const byId = new LogprobsFormatter('completion', tokenizer, true, true);
    expect(responseJson(legacyMeta(byId), textChunk(legacyMeta(byId), [{ text: '1', source: 'model', tokens: [sampled] }], 0, byId))).toContain(
      `"top_logprobs":[{"token_id:${two}":-1.58,"token_id:${five}":-1.79,"token_id:${zero}":-1.81,"token_id:${one}":-9.31}]`,
    );
    // Chat's are lists, in order whatever writes them: JSON.stringify's text.
    const chatMeta: ResponseMeta = { id: 'x', created: 1, model: 'm', fingerprint: 'fp_0123456789', kind: 'chat', logprobs: new LogprobsFormatter('chat', tokenizer, true) };
    const chat = textChunk(chatMeta, [{ text: '2', source: 'model', tokens: [greedy] }]);
    expect(responseJson(chatMeta, chat)).toBe(JSON.stringify(chat));
  });

  it("at a character split over byte ids, each token's key is its tokens entry ('' and then the character), which no other alternative takes", () => {
    const ids = [0xe6, 0x97, 0xa5].map((b) => b + 3); // 日 in byte-fallback ids (<0xE6> is id 0xE6 + 3)
    const assembler = new TokenTextAssembler(tokenizer.createDecoder({ previousId: idOf(' the') }), []);
    // Each byte less likely than either special id, as a forced choice is.
    const logprobs = ids.map((id, i): TokenLogprob => ({ id, logprob: -20 - i, top: [[1, -11.9], [2, -12.5]] }));
    const segments = [...assembler.push(ids, ids.map(() => 'model'), logprobs).segments, ...assembler.finish()];
    const out = new LogprobsFormatter('completion', tokenizer, true).format(tokensOf(segments)) as { tokens: string[]; token_logprobs: number[]; top_logprobs: Array<Record<string, number>> };
    expect(out.tokens).toEqual(['', '', '日']);
    out.tokens.forEach((token, i) => {
      expect(out.top_logprobs[i][token]).toBe(out.token_logprobs[i]);
      expect(Object.keys(out.top_logprobs[i]).sort()).toEqual([token, '</s>', '<s>'].sort());
    });
    // A likelier alternative of the chosen token's name (the text piece "," beside the chosen byte piece <0x2C>) is named by its bytes.
    const comma = idOf(',');
    const commaByte = 0x2c + 3;
    expect(comma).not.toBe(commaByte);
    const clash = new LogprobsFormatter('completion', tokenizer, true).format([{ id: commaByte, logprob: -3, top: [[comma, -0.1]], text: ',' }]) as { tokens: string[]; top_logprobs: Array<Record<string, number>> };
    expect(clash.tokens).toEqual([',']);
    expect(Object.entries(clash.top_logprobs[0])).toEqual([
      ['bytes:\\x2c', -0.1],
      [',', -3],
    ]);
  });

  it("names special ids among the alternatives by their names (<s>, </s>), the chosen token keeping its own entry's '' where it is one; chat alike", () => {
    const [bos, eos] = [tokenizer.bosId, 2];
    const the = idOf(' the');
    const ended: TokenLogprob = { id: eos, logprob: -0.2, top: [[eos, -0.2], [the, -2.1], [bos, -8.7], [0, -23.5]], text: '' };
    const legacy = new LogprobsFormatter('completion', tokenizer, true).format([ended]) as { tokens: string[]; top_logprobs: Array<Record<string, number>> };
    expect(legacy.tokens).toEqual(['']);
    expect(Object.entries(legacy.top_logprobs[0])).toEqual([
      ['', -0.2],
      [' the', -2.1],
      ['<s>', -8.7],
      ['<unk>', -23.5],
    ]);
    const other = new LogprobsFormatter('completion', tokenizer, true).format([{ ...ended, id: the, logprob: -2.1, text: ' the' }]) as { top_logprobs: Array<Record<string, number>> };
    expect(Object.keys(other.top_logprobs[0])).toEqual(['</s>', ' the', '<s>', '<unk>']);
    const chat = (new LogprobsFormatter('chat', tokenizer, true).format([ended]) as { content: Array<{ token: string; bytes: number[]; top_logprobs: Array<{ token: string; bytes: number[] }> }> }).content[0];
    expect([chat.token, chat.bytes]).toEqual(['', []]);
    expect(chat.top_logprobs.map((e) => [e.token, e.bytes.length])).toEqual([
      ['', 0],
      [' the', 4],
      ['<s>', 0],
      ['<unk>', 5],
    ]);
    const chatOther = (new LogprobsFormatter('chat', tokenizer, true).format([{ ...ended, id: the, logprob: -2.1, text: ' the' }]) as { content: Array<{ top_logprobs: Array<{ token: string }> }> }).content[0];
    expect(chatOther.top_logprobs.map((e) => e.token)).toEqual(['</s>', ' the', '<s>', '<unk>']);
  });
});

describe("vLLM's return_token_ids", () => {
  const usage = offUsage(3, 2);
  const meta = (kind: 'completion' | 'chat', tokenIds?: boolean): ResponseMeta => ({ id: 'x', created: 1, model: 'm', fingerprint: 'fp_0123456789', kind, ...(tokenIds ? { tokenIds } : {}) });
  const choice = { text: 'Hi.', finishReason: 'stop', stopReason: null, tokens: [], tokenIds: [7, 2] };

  it('whole: each choice carries its token_ids; the prompt_token_ids go in each choice (completions) or at the top (chat), as vLLM places them', () => {
    const completion = wholeResponse(meta('completion', true), [choice, { ...choice, tokenIds: [8] }], usage, null, [1, 5, 6]) as Record<string, unknown>;
    expect(completion.choices).toEqual([
      expect.objectContaining({ index: 0, text: 'Hi.', prompt_token_ids: [1, 5, 6], token_ids: [7, 2] }),
      expect.objectContaining({ index: 1, prompt_token_ids: [1, 5, 6], token_ids: [8] }),
    ]);
    expect(completion).not.toHaveProperty('prompt_token_ids');
    const chat = wholeResponse(meta('chat', true), [choice], usage, null, [1, 5, 6]) as { choices: object[]; prompt_token_ids: number[] };
    expect(chat.prompt_token_ids).toEqual([1, 5, 6]);
    expect(chat.choices[0]).toMatchObject({ token_ids: [7, 2] });
    expect(chat.choices[0]).not.toHaveProperty('prompt_token_ids');
    // Not asked: neither field.
    for (const kind of ['completion', 'chat'] as const) {
      const plain = JSON.stringify(wholeResponse(meta(kind), [choice], usage, null, [1, 5, 6]));
      expect(plain).not.toMatch(/token_ids/);
    }
  });

  it("streamed: a chunk's choice carries the ids since its last; the prompt's come in completions' first choice chunk, or beside chat's role chunk", () => {
    const segments = [{ text: 'Hi', source: 'model' as const }];
    expect(textChunk(meta('completion', true), segments, 0, undefined, undefined, { output: [7], prompt: [1, 5] })).toMatchObject({
      choices: [{ index: 0, text: 'Hi', prompt_token_ids: [1, 5], token_ids: [7] }],
    });
    expect((textChunk(meta('completion', true), segments, 1, undefined, undefined, { output: [] }) as { choices: object[] }).choices[0]).toEqual(expect.objectContaining({ index: 1, token_ids: [] }));
    expect(finishChunk(meta('completion', true), 'stop', 0, null, undefined, { output: [2] })).toMatchObject({ choices: [{ finish_reason: 'stop', token_ids: [2] }] });
    const role = roleChunk(meta('chat', true), 0, undefined, [1, 5]) as { prompt_token_ids: number[]; choices: object[] };
    expect(role.prompt_token_ids).toEqual([1, 5]);
    expect(role.choices[0]).not.toHaveProperty('token_ids');
    const chatText = textChunk(meta('chat', true), segments, 0, undefined, undefined, { output: [7] }) as { choices: object[] };
    expect(chatText.choices[0]).toEqual(expect.objectContaining({ delta: { content: 'Hi' }, token_ids: [7] }));
    expect(chatText).not.toHaveProperty('prompt_token_ids');
    // Not asked: neither field.
    expect(JSON.stringify([roleChunk(meta('chat'), 0), textChunk(meta('completion'), segments, 0), finishChunk(meta('completion'), 'stop')])).not.toMatch(/token_ids/);
  });
});
