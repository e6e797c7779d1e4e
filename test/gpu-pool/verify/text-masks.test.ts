import { describe, expect, it } from 'vitest';
import { DEAD, NOT_BUILT, START, TextLanguage, TextMasks } from '../../../gpu-pool/verify/text-masks';
import { AutomatonLimitError, compileRegex } from '../../../shared/structured/regex-automaton';
import { compileGrammar } from '../../../shared/structured/grammar-automaton';
import type { TextAutomaton } from '../../../shared/structured/text-automaton';
import { TokenTexts, type TextsTokenizer } from '../../../gpu-pool/verify/token-texts';
import { ChoiceTrie } from '../../../shared/structured/choice-trie';
import { hasLogitAdjustments, LogitAdjustments } from '../../../gpu-pool/verify/logit-adjustments';
import { PieceDecoder, pieceBytes, SILENT_PIECE, TEXT_PIECE, type PieceTable } from '../../../shared/tokenizer/incremental-decoder';
import { loadTokenizer } from '../../../shared/tokenizer/load-tokenizer';
import { readFileSync } from 'node:fs';
import { models } from '../../support/shared-data';

/** A Llama-style vocabulary: [text or byte or null (prints nothing)] by id. */
const PIECES: Array<string | number | null> = [
  null, // 0: end
  null, // 1: BOS
  ' yes', // 2
  'yes', // 3
  'ye', // 4
  's', // 5
  'no', // 6
  'ab', // 7
  'abc', // 8
  'c', // 9
  'x', // 10
  'y', // 11
  'caf', // 12
  'é', // 13
  0xc3, // 14: byte piece
  0xa9, // 15: byte piece (é = C3 A9)
  'a', // 16
  ' ', // 17
  'abx', // 18
];
const END = 0;
const BOS = 1;

function tokenizer(): TextsTokenizer {
  const texts = PIECES.map((p) => (typeof p === 'string' ? p : ''));
  const table: PieceTable = {
    texts,
    textsAfterBos: texts.map((t) => (t.startsWith(' ') ? t.slice(1) : t)),
    kinds: Int16Array.from(PIECES, (p) => (typeof p === 'number' ? p : p === null ? SILENT_PIECE : TEXT_PIECE)),
    bosId: BOS,
  };
  return { vocabSize: PIECES.length, bosId: BOS, createDecoder: (opts) => new PieceDecoder(table, opts), tokenBytes: (id) => pieceBytes(table, id) };
}

const texts = TokenTexts.of(tokenizer());

/** The ids allowed where the output is `ids` (plus a node's path, empty). */
function allowedAfter(masks: TextMasks, ids: number[]): number[] {
  return Array.from(masks.allowedAt(masks.stateAfter(ids)));
}

describe('choice trie', () => {
  it('holds every prefix of the choices once, a whole choice marked, by UTF-8 bytes', () => {
    const trie = new ChoiceTrie(['ab', 'abc', 'é']);
    // '', a, ab, abc, C3, C3 A9.
    expect(trie.nodes).toBe(6);
    const ab = trie.follow(0, new TextEncoder().encode('ab'), 0, 2);
    expect(trie.whole[ab]).toBe(1);
    expect(trie.whole[trie.follow(0, Uint8Array.of(0x61), 0, 1)]).toBe(0);
    expect(trie.follow(ab, Uint8Array.of(0x78), 0, 1)).toBe(DEAD);
    expect(trie.whole[trie.follow(0, Uint8Array.of(0xc3, 0xa9), 0, 2)]).toBe(1);
  });
});

/** "(yes)*" by hand: a language that comes back to its start state after each "yes". */
const yesLoop: TextAutomaton = {
  follow(state, bytes, start, end) {
    const want = [0x79, 0x65, 0x73];
    for (let i = start; i < end && state !== DEAD; i++) state = bytes[i] === want[state] ? (state + 1) % 3 : DEAD;
    return state;
  },
  accepting: (state) => state === 0,
  nextBytes: (state) => (state === DEAD ? [] : [[0x79, 0x65, 0x73][state]]),
};

describe('text masks over any language', () => {
  it("print only the output's first token as the first after BOS, though the language comes back to its start state", () => {
    const masks = new TextMasks(new TextLanguage(yesLoop, texts, [END]), true);
    // ' yes' after BOS prints 'yes'; 'ye' starts it too ('y' would, but no token here prints 'e' or 'es' after it); and the empty text is whole.
    expect(allowedAfter(masks, [])).toEqual([END, 2, 3, 4]);
    // After 'yes' the language is at its start again, but ' yes' now prints its space.
    expect(allowedAfter(masks, [2])).toEqual([END, 3, 4]);
    expect(allowedAfter(masks, [3, 4])).toEqual([5]);
    expect(masks.stateAfter([3, 2])).toBe(DEAD);
  });

  it('share a language between generations: the ids at a state are computed once, whatever each output is', () => {
    let follows = 0;
    const counted: TextAutomaton = { ...yesLoop, follow: (...args) => (follows++, yesLoop.follow(...args)) };
    const language = new TextLanguage(counted, texts, [END]);
    const first = new TextMasks(language, false);
    first.allowedAt(first.stateAfter([3]));
    const walked = follows;
    const second = new TextMasks(language, false);
    // Its own output walked (one follow a token), the state's ids already known.
    expect(Array.from(second.allowedAt(second.stateAfter([4, 5])))).toEqual([END, 3, 4]);
    expect(follows - walked).toBe(2);
  });

  it('allow a token only where tokens go on from it to a whole sentence, a character printed only inside longer tokens included', () => {
    // 'b' is printed only inside 'ab', 'abc' and 'abx': a text cut to the printable characters is not always tokens' texts.
    expect(texts.printsEachAlone).toBe(false);
    const masks = (pattern: string) => new TextMasks(new TextLanguage(compileRegex(pattern, {}, texts.printable), texts, [END]), false);
    // After 'a' only 'b' goes on, and no token prints it: 'a' is masked, as a text no token finishes.
    expect(allowedAfter(masks('ab[cx]'), [])).toEqual([7, 8, 18]);
    // After 'a' here 'y' goes on too (a loop of them, then 'c'): 'a' is allowed.
    expect(allowedAfter(masks('a(?:b|y)+c'), [])).toEqual([7, 8, 16]);
    expect(allowedAfter(masks('a(?:b|y)+c'), [16])).toEqual([11]);
    expect(allowedAfter(masks('a(?:b|y)+c'), [16, 11, 11])).toEqual([9, 11]);
    // 'e' is printed only after 'y' ('ye', 'yes'): after 'x' no tokens finish 'x', 'c's, then 'eb'. Proving it visits a
    // state per count of 'c's: within the search's bound (1,000 states) 'x' is masked; past it, taken to finish.
    expect(allowedAfter(masks('x[c]{0,500}eb'), [])).toEqual([]);
    expect(allowedAfter(masks('x[c]{0,750}[c]{0,750}eb'), [])).toEqual([10]);
  });

  it('mask the same ids whether the allowed or the banned ones are written', () => {
    const anyText: TextAutomaton = { follow: (state) => state, accepting: () => true, nextBytes: () => Array.from({ length: 256 }, (_, b) => b) };
    const kept = new Float32Array(PIECES.length);
    // Few ids allowed (written as allowed), and most of them (the rest written as banned).
    for (const [automaton, ids] of [[yesLoop, []], [yesLoop, [4]], [yesLoop, [3, 4]], [anyText, []], [anyText, [7, 9]]] as const) {
      const masks = new TextMasks(new TextLanguage(automaton, texts, [END]), false);
      const state = masks.stateAfter(ids);
      const out = Float32Array.from(PIECES, (_, i) => i + 1);
      masks.mask(out, state, kept);
      const finite = Array.from(out.keys()).filter((i) => out[i] !== -Infinity);
      expect(finite).toEqual(Array.from(masks.allowedAt(state)));
      for (const i of finite) expect(out[i]).toBe(i + 1);
    }
  });
});

describe('a request\'s bounds on its language\'s automaton', () => {
  const walk = (masks: TextMasks, ids: number[]): void => {
    for (const id of ids) {
      masks.allowedAt(masks.state);
      masks.observe(id);
    }
  };
  const text = [16, 9, 7, 3, 16, 9];

  it('are charged with what its own calls build, not what another request sharing the language built', () => {
    const language = new TextLanguage(compileRegex('(?:[a-z ]?){200}x'), texts, [END]);
    const automaton = language.automaton as unknown as { workDone: number; stateCount: number };
    const first = new TextMasks(language, false);
    walk(first, text);
    const built = automaton.workDone;
    expect(built).toBeGreaterThan(1_000);
    // The same text again: every state built already, nothing charged to it, though it may build nothing itself.
    const second = new TextMasks(language, false, { work: 0, states: 0 });
    walk(second, text);
    expect(second.state).toBe(first.state);
    // Alone on a fresh language, a request bounded at half that work ends (the pool ends it bad_request).
    const alone = new TextMasks(new TextLanguage(compileRegex('(?:[a-z ]?){200}x'), texts, [END]), false, { work: Math.floor(built / 2), states: 100_000 });
    expect(() => walk(alone, text)).toThrow(AutomatonLimitError);
    expect(() => walk(alone, text)).toThrow(/the regex automaton grew past its limit/);
  });

  it("stop a call as it builds past them, not after it: a state's ids follow every token, which once ran to the automaton's own bound (4 times the request's)", () => {
    // A small first configuration (the edge's check passes it); each byte after it builds a closure of ~190,000 pairs.
    const y = `y ::= "" | ${Array.from({ length: 1000 }, (_, i) => `"k${i}"`).join(' | ')}`;
    const automaton = compileGrammar(`root ::= . x\nx ::= ${Array.from({ length: 95 }, () => 'y').join(' ')} "z"\n${y}`);
    const masks = new TextMasks(new TextLanguage(automaton, texts, [END]), false);
    expect(() => masks.allowedAt(masks.state)).toThrow(/the grammar automaton grew past its limit \(10000000 steps of building\)/);
    // Stopped at the request's bound (REQUEST_MASK_BOUNDS.work, 10M), past it by one step's read at most, not at the automaton's 40M.
    expect(automaton.workDone).toBeLessThan(20_000_000);
    // The budget is the call's alone: a later request on the same language starts with its own.
    const next = new TextMasks(new TextLanguage(automaton, texts, [END]), false, { work: 1_000, states: 100_000 });
    expect(() => next.allowedAt(next.state)).toThrow(/\(1000 steps of building\)/);
  });

  it("name what grew past them in the error the client reads: a grammar's as a grammar's", () => {
    const grammar = new TextMasks(new TextLanguage(compileGrammar('root ::= [a-z ] root | "x"'), texts, [END]), false, { work: 10, states: 100_000 });
    expect(() => walk(grammar, text)).toThrow(/the grammar automaton grew past its limit \(10 steps of building\)/);
  });

  it('are not spent by cutting drafts, which builds apart (over the states already built alone, once its own budget is spent)', () => {
    const fresh = () => new TextLanguage(compileRegex('(?:[a-z ]?){200}x'), texts, [END]);
    const measured = fresh();
    new TextMasks(measured, false).allowedAt(START);
    const cost = (measured.automaton as unknown as { workDone: number }).workDone;
    const language = fresh();
    const automaton = language.automaton as unknown as { workDone: number };
    const masks = new TextMasks(language, false, { work: cost, states: 100_000 });
    masks.allowedAt(masks.state);
    // A draft two tokens on: built, and not charged (the next charged call, building nothing, is still within the bound).
    const built = automaton.workDone;
    const two = masks.afterForDraft(masks.afterForDraft(masks.state, 16), 9);
    expect(two).toBeGreaterThanOrEqual(0);
    expect(automaton.workDone).toBeGreaterThan(built);
    expect(() => masks.allowedAt(masks.state)).not.toThrow();
    // Over the built states alone: what is not built is NOT_BUILT, and nothing is built.
    const other = new TextMasks(fresh(), false);
    other.allowedAt(other.state);
    expect(other.afterBuilt(other.afterBuilt(other.state, 16), 9)).toBe(NOT_BUILT);
  });
});

describe('choice masks', () => {
  it('allow the tokens whose text stays inside a choice, and the end token only once the text is a whole one', () => {
    const masks = TextMasks.ofChoices(['yes', 'no'], texts, [END], false);
    // ' yes' prints its space mid-text: no choice starts with one. 'y' would start 'yes', but no token prints 'e' or 'es'.
    expect(allowedAfter(masks, [])).toEqual([3, 4, 6]);
    expect(allowedAfter(masks, [4])).toEqual([5]);
    expect(allowedAfter(masks, [4, 5])).toEqual([END]);
    expect(allowedAfter(masks, [6])).toEqual([END]);
  });

  it("follow the decoder's first token after BOS: its leading space is not printed", () => {
    const afterBos = TextMasks.ofChoices(['yes'], texts, [END], true);
    expect(allowedAfter(afterBos, [])).toEqual([2, 3, 4]);
    // Only the first token: ' yes' later would print its space.
    const spaced = TextMasks.ofChoices(['yes yes'], texts, [END], true);
    expect(allowedAfter(spaced, [3])).toEqual([2, 17]);
    expect(allowedAfter(spaced, [2])).toEqual([2, 17]);
    // The one-space piece after BOS prints nothing: never allowed.
    const space = TextMasks.ofChoices([' yes'], texts, [END], true);
    expect(allowedAfter(space, [])).toEqual([]);
    expect(allowedAfter(TextMasks.ofChoices([' yes'], texts, [END], false), [])).toEqual([2, 17]);
  });

  it('take a choice that is a prefix of another: the end token and the longer one both allowed there', () => {
    const masks = TextMasks.ofChoices(['ab', 'abc'], texts, [END, 10], false);
    // 'a' is no way in: no token here goes on with 'b' after it, so it would be a text nothing finishes.
    expect(allowedAfter(masks, [])).toEqual([7, 8]);
    // After 'ab': 'c' goes on, and the end ids (the end token, a stop token id) end it as 'ab'.
    expect(allowedAfter(masks, [7])).toEqual([END, 9, 10]);
    expect(allowedAfter(masks, [8])).toEqual([END, 10]);
    expect(allowedAfter(masks, [16])).toEqual([]);
  });

  it('let one token span the prefix two choices share', () => {
    const masks = TextMasks.ofChoices(['abx', 'aby'], texts, [END], false);
    expect(allowedAfter(masks, [])).toEqual([7, 18]);
    expect(allowedAfter(masks, [7])).toEqual([10, 11]);
    expect(allowedAfter(masks, [18])).toEqual([END]);
  });

  it('follow multi-byte characters, whole or as byte pieces, and never split one for a text piece', () => {
    const masks = TextMasks.ofChoices(['café'], texts, [END], false);
    expect(allowedAfter(masks, [12])).toEqual([13, 14]);
    // After the first byte of é only its second: a text piece there would print U+FFFD.
    expect(allowedAfter(masks, [12, 14])).toEqual([15]);
    expect(allowedAfter(masks, [12, 14, 15])).toEqual([END]);
    expect(allowedAfter(masks, [12, 13])).toEqual([END]);
    expect(masks.stateAfter([12, 10])).toBe(DEAD);
    expect(masks.allowedAt(DEAD)).toEqual(Int32Array.of(END));
  });

  it('score a node from the output observed and its draft path, in the logit adjustments; min_tokens yields to a whole output', () => {
    const ends = { ids: [END], minTokens: 0, text: TextMasks.ofChoices(['yes', 'no'], texts, [END], false) };
    const none = { frequencyPenalty: 0, presencePenalty: 0, repetitionPenalty: 1 };
    expect(hasLogitAdjustments(none, ends)).toBe(true);
    expect(hasLogitAdjustments(none, { ids: [END], minTokens: 0 })).toBe(false);
    const adjustments = new LogitAdjustments(none, PIECES.length, [BOS], ends);
    const logits = Float32Array.from(PIECES, (_, i) => i / 10);
    const finite = (out: Float32Array) => Array.from(out.keys()).filter((i) => out[i] !== -Infinity);
    expect(finite(adjustments.apply(logits, [], [], 0))).toEqual([3, 4, 6]);
    // A row: root, then 'ye' (row 1) and under it 's' (row 2); the node under 's' is scored as after 'yes'.
    const rowTokens = [0, 4, 5];
    expect(finite(adjustments.apply(logits, rowTokens, [1, 2], 2))).toEqual([END]);
    expect(finite(adjustments.apply(logits, rowTokens, [1], 1))).toEqual([5]);
    // The values kept are the logits' own.
    expect(adjustments.apply(logits, rowTokens, [1], 1)[5]).toBeCloseTo(0.5, 6);
    adjustments.observe(4);
    expect(finite(adjustments.apply(logits, [0, 5], [1], 1))).toEqual([END]);
    // min_tokens holds the end id back past a whole choice where the text may go on ('no', then 'x' of 'nox')...
    const held = new LogitAdjustments(none, PIECES.length, [BOS], { ids: [END], minTokens: 5, text: TextMasks.ofChoices(['no', 'nox'], texts, [END], false) });
    held.observe(6);
    expect(finite(held.apply(logits, [], [], 0))).toEqual([10]);
    // ...and yields where nothing but the end may follow (a tool call's closed array): the output's end wins, not a
    // generation with no token left.
    expect(finite(held.apply(logits, [0, 10], [1], 1))).toEqual([END]);
    const done = new LogitAdjustments(none, PIECES.length, [BOS], { ids: [END], minTokens: 5, text: TextMasks.ofChoices(['no'], texts, [END], false) });
    done.observe(6);
    expect(finite(done.apply(logits, [], [], 0))).toEqual([END]);
    // Where the language lets more text follow and the request's own list masks it, min_tokens holds: nothing is left
    // (the request's 400), not an end the language would not have come to yet (review h106).
    const listed = new LogitAdjustments(none, PIECES.length, [BOS], { ids: [END], minTokens: 5, allowed: [END, 6], text: TextMasks.ofChoices(['no', 'nox'], texts, [END], false) });
    listed.observe(6);
    expect(finite(listed.apply(logits, [], [], 0))).toEqual([]);
    // Without a structured output, min_tokens masks the end ids whatever else is masked (allowed_token_ids: the request's own).
    const only = new LogitAdjustments(none, PIECES.length, [BOS], { ids: [END], minTokens: 5, allowed: [END] });
    expect(finite(only.apply(logits, [], [], 0))).toEqual([]);
  });

  it("lift the mask past a regex's (?any-tail): every id there, those that print nothing or no whole character included", () => {
    const masks = new TextMasks(new TextLanguage(compileRegex('x(?any-tail)'), texts, [END]), false);
    // Before it: the pattern's first character, as any mask holds it.
    expect(allowedAfter(masks, [])).toEqual([10]);
    const everything = PIECES.map((_, id) => id);
    expect(allowedAfter(masks, [10])).toEqual(everything);
    // A lone byte piece, a token that prints nothing, the end: each keeps every id allowed.
    for (const id of [14, BOS, 15, 2]) expect(allowedAfter(masks, [10, id])).toEqual(everything);
    const scores = Float32Array.from(PIECES, (_, i) => i / 10);
    const out = scores.slice();
    masks.mask(out, masks.stateAfter([10, 14, BOS]), new Float32Array(PIECES.length));
    expect(out).toEqual(scores);
  });

  it("agree with the real tokenizer's text: every allowed path decodes to a prefix of a choice", () => {
    const real = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)));
    const realTexts = TokenTexts.of(real);
    const choices = ['Once upon a time', 'The end', 'Tim', 'Timmy 😀'];
    for (const afterBos of [true, false]) {
      const masks = TextMasks.ofChoices(choices, realTexts, real.eosIds, afterBos);
      // Greedy walks taking the smallest, then the largest id allowed at each state: each decodes into a choice.
      for (const pick of [(a: Int32Array) => a[0], (a: Int32Array) => a[a.length - 1]]) {
        const ids: number[] = [];
        for (let step = 0; step < 40; step++) {
          const allowed = masks.allowedAt(masks.stateAfter(ids));
          expect(allowed.length).toBeGreaterThan(0);
          const id = pick(allowed);
          if (real.eosIds.includes(id)) break;
          ids.push(id);
        }
        const text = real.decode(afterBos ? [real.bosId, ...ids] : [403, ...ids]).slice(afterBos ? 0 : real.decode([403]).length);
        expect(choices, `${afterBos} ${JSON.stringify(ids)} → ${JSON.stringify(text)}`).toContain(text);
      }
    }
  });
});
