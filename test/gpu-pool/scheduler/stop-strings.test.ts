/**
 * The pool's stop strings (gpu-pool/scheduler/stop-strings.ts): the token a
 * generation ends at is the one whose text the edge finds a stop string
 * ending in (edge/token-text.ts), never an earlier one, min_tokens, the end
 * ids' silence, characters split over byte tokens and resumed output
 * included.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { StopStrings } from '../../../gpu-pool/scheduler/stop-strings';
import { TokenTextAssembler } from '../../../edge/token-text';
import { seededRandom } from '../../../shared/seeded-random';
import { loadTokenizer } from '../../../shared/tokenizer/load-tokenizer';
import type { Tokenizer } from '../../../shared/tokenizer/tokenizer';
import { models } from '../../support/shared-data';

const tokenizer: Tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)), 'llama2c');
const eos: ReadonlySet<number> = new Set(tokenizer.eosIds);

/** The index of the output token the pool ends at (null: none), `resumed` of them followed as earlier output. */
function poolStop(previousId: number, ids: readonly number[], stops: string[], minTokens = 0, resumed = 0): number | null {
  const watch = new StopStrings(stops, tokenizer.createDecoder({ previousId }), eos, minTokens);
  watch.follow(ids.slice(0, resumed));
  for (let i = resumed; i < ids.length; i++) if (watch.push(ids[i])) return i;
  return null;
}

/** The index of the output token the edge finds a stop string in, pushed token by token as the pool's steps come (null: none while streaming). */
function edgeStop(previousId: number, ids: readonly number[], stops: string[], minTokens = 0): number | null {
  const assembler = new TokenTextAssembler(tokenizer.createDecoder({ previousId }), stops, eos, { minTokens });
  for (let i = 0; i < ids.length; i++) if (assembler.push([ids[i]], ['model']).stopped) return i;
  return null;
}

const BOS = 1;

/** The text of output ids after BOS, as the edge prints it (the first piece without its leading space). */
function printed(ids: readonly number[]): string {
  const decoder = tokenizer.createDecoder({ previousId: BOS });
  return ids.map((id) => (eos.has(id) ? '' : decoder.push(id))).join('') + decoder.flush();
}

describe('StopStrings', () => {
  const story = tokenizer.encode('Once upon a time, there was a little girl named Lily. She saw a big dog and a little dog.', { bos: true });
  const output = story.slice(1);

  it('ends at the token whose text completes a stop string, one split over tokens included; the earliest of several; never in the prompt', () => {
    const text = printed(output);
    // The token whose text reaches the stop's last character.
    const at = (stop: string): number => {
      const end = text.indexOf(stop) + stop.length;
      for (let i = 0; i < output.length; i++) if (printed(output.slice(0, i + 1)).length >= end) return i;
      throw new Error(`no ${stop}`);
    };
    expect(poolStop(BOS, output, ['girl'])).toBe(at('girl'));
    // Across a token boundary ('Lil' + 'y', or however the tokenizer cuts it).
    expect(poolStop(BOS, output, ['ly. Sh'])).toBe(at('ly. Sh'));
    expect(poolStop(BOS, output, ['big dog', 'Lily'])).toBe(at('Lily'));
    // A stop string the prompt holds is not looked for there: only the output's text counts.
    const prompt = tokenizer.encode('Once upon a time', { bos: true });
    const rest = tokenizer.encode('Once upon a time, the sun shone. Once upon a time again.', { bos: true }).slice(prompt.length);
    expect(poolStop(prompt.at(-1)!, rest, ['Once upon'])).toBe(edgeStop(prompt.at(-1)!, rest, ['Once upon']));
    expect(poolStop(prompt.at(-1)!, rest, ['Once upon'])).not.toBeNull();
    expect(poolStop(BOS, output, ['elephant'])).toBeNull();
  });

  it('finds a stop string whose start overlaps a false start (its border), as a plain search does', () => {
    const ids = tokenizer.encode('aaab abab ababac', { bos: true });
    for (const stop of ['aab', 'ababac', 'abac', 'b a']) {
      expect(poolStop(BOS, ids.slice(1), [stop]), stop).toBe(edgeStop(BOS, ids.slice(1), [stop]));
      expect(poolStop(BOS, ids.slice(1), [stop]), stop).not.toBeNull();
    }
  });

  it('does not count a stop string that ends within the first minTokens tokens, but one that starts there and ends after', () => {
    const first = poolStop(BOS, output, ['little']);
    expect(first).not.toBeNull();
    // The first "little" ends within the first minTokens tokens: the next one counts.
    expect(poolStop(BOS, output, ['little'], first! + 1)).toBe(edgeStop(BOS, output, ['little'], first! + 1));
    expect(poolStop(BOS, output, ['little'], first! + 1)).toBeGreaterThan(first!);
    // "e girl" starts in one token and ends in a later one: with every token before the last held back, it still counts.
    const girl = poolStop(BOS, output, ['e girl']);
    expect(printed(output.slice(0, girl!))).toMatch(/e gir$/);
    expect(poolStop(BOS, output, ['e girl'], girl!)).toBe(girl);
    expect(edgeStop(BOS, output, ['e girl'], girl!)).toBe(girl);
    expect(poolStop(BOS, output, ['e girl'], girl! + 1)).toBeNull();
    // One found whole in the held-back text may overlap the next: "aa" in "aaa", the third 'a' after minTokens 2.
    const a = 3 + 'a'.charCodeAt(0); // The byte token of 'a'.
    expect(edgeStop(BOS, [a, a, a], ['aa'], 2)).toBe(2);
    expect(poolStop(BOS, [a, a, a], ['aa'], 2)).toBe(2);
    expect(poolStop(BOS, [a, a, a, a], ['aaa'], 3)).toBe(3);
  });

  it('reads the end ids as no text (a stop string spans them), and a character split over byte tokens once it is whole', () => {
    const [end] = tokenizer.eosIds;
    const withEnd = [...output.slice(0, 5), end, ...output.slice(5)];
    const stop = printed(output.slice(0, 7)).slice(printed(output.slice(0, 3)).length);
    expect(poolStop(BOS, withEnd, [stop])).toBe(edgeStop(BOS, withEnd, [stop]));
    expect(poolStop(BOS, withEnd, [stop])).not.toBeNull();
    // An emoji the tokenizer spells in four byte tokens: its stop ends at the fourth.
    const emoji = tokenizer.encode('I see 😀 now', { bos: true }).slice(1);
    const stopAt = poolStop(BOS, emoji, ['😀']);
    expect(stopAt).toBe(edgeStop(BOS, emoji, ['😀']));
    expect(printed(emoji.slice(0, stopAt! + 1))).toBe('I see 😀');
    expect(printed(emoji.slice(0, stopAt!))).toBe('I see \uFFFD');
  });

  it('goes on from the text of a resumed generation\'s earlier output, a stop string started there included', () => {
    const at = poolStop(BOS, output, ['named Lily']);
    expect(at).not.toBeNull();
    // Resumed two tokens before the stop string's end: "named" was written by the pool that failed.
    expect(poolStop(BOS, output, ['named Lily'], 0, at! - 1)).toBe(at);
    // Resumed output counts towards minTokens as the edge counts it.
    expect(poolStop(BOS, output, ['named Lily'], at! + 1, at! - 1)).toBe(edgeStop(BOS, output, ['named Lily'], at! + 1));
  });

  it('ends at the token the edge finds the stop string in, never another, over random outputs, stops, min_tokens and resumes', () => {
    const random = seededRandom(20261207);
    const vocab = tokenizer.vocabSize;
    let stopped = 0;
    for (let trial = 0; trial < 400; trial++) {
      // Mostly text pieces, some byte tokens (characters whole, broken or invalid) and end ids.
      const ids = Array.from({ length: 5 + Math.floor(random() * 40) }, () => {
        const r = random();
        if (r < 0.05) return tokenizer.eosIds[0];
        if (r < 0.2) return 3 + Math.floor(random() * 256);
        return 259 + Math.floor(random() * (vocab - 259));
      });
      const previousId = random() < 0.5 ? BOS : ids[0];
      const decoder = tokenizer.createDecoder({ previousId });
      const text = ids.map((id) => (eos.has(id) ? '' : decoder.push(id))).join('');
      // Stop strings cut from the output's own text (so they occur), and one that may not.
      const stops = Array.from({ length: 1 + Math.floor(random() * 3) }, () => {
        const from = Math.floor(random() * Math.max(1, text.length - 1));
        return text.slice(from, from + 1 + Math.floor(random() * 6)) || 'x';
      });
      if (random() < 0.3) stops.push('zq');
      const minTokens = random() < 0.4 ? Math.floor(random() * 10) : 0;
      const edge = edgeStop(previousId, ids, stops, minTokens);
      const resumed = Math.floor(random() * ((edge ?? ids.length - 1) + 1));
      const label = JSON.stringify({ ids, previousId, stops, minTokens, resumed });
      expect(poolStop(previousId, ids, stops, minTokens), label).toBe(edge);
      // Resumed before the edge's stop: the pool that goes on ends where the edge does.
      expect(poolStop(previousId, ids, stops, minTokens, resumed), label).toBe(edge);
      if (edge !== null) stopped++;
    }
    // The stops were found in most trials: the comparison is of stops, not of none.
    expect(stopped).toBeGreaterThan(200);
  });

  it('follows only the tail of a long resumed output, and ends at the token the edge does, min_tokens counted over the whole (review h122)', () => {
    const long = tokenizer.encode(Array.from({ length: 30 }, (_, i) => `Day ${i}: Tom saw a big red ball and a little dog.`).join(' '), { bos: true });
    const ids = long.slice(1);
    const random = seededRandom(7);
    for (let trial = 0; trial < 40; trial++) {
      // A stop string cut from the text, found by the edge past token 200; resumed a few tokens before its end.
      const at = 200 + Math.floor(random() * (ids.length - 260));
      const text = printed(ids.slice(0, at + 1));
      const stop = text.slice(text.length - 3 - Math.floor(random() * 12));
      const edge = edgeStop(BOS, ids, [stop]);
      expect(edge).not.toBeNull();
      const resumed = Math.max(1, edge! - Math.floor(random() * 3));
      const prompt = [BOS, ...ids.slice(0, resumed)];
      const watch = StopStrings.forGeneration([stop], tokenizer, eos, 0, prompt, resumed);
      let pool: number | null = null;
      for (let i = resumed; i < ids.length && pool === null; i++) if (watch.push(ids[i])) pool = i;
      expect(pool, `stop ${JSON.stringify(stop)} resumed at ${resumed}`).toBe(edge);
      // min_tokens counts the tokens not decoded too: the stop's token just past it ends there, just within it not.
      const past = StopStrings.forGeneration([stop], tokenizer, eos, edge!, prompt, resumed);
      let end: number | null = null;
      for (let i = resumed; i < ids.length && end === null; i++) if (past.push(ids[i])) end = i;
      expect(end).toBe(edge);
      const held = StopStrings.forGeneration([stop], tokenizer, eos, edge! + 1, prompt, resumed);
      for (let i = resumed; i <= edge!; i++) expect(held.push(ids[i])).toBe(false);
    }
  });
});
