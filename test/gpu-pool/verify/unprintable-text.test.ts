// Structured outputs over a vocabulary that cannot print every character:
// babyllama105's tok105 (105 pieces, no byte fallback, no `{ } # = @ _ ^`,
// newline or tab). The masks must never let the text reach a state from
// which no tokens go on to a whole sentence; a constraint none of whose
// sentences the tokens can print is refused when it is compiled.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { START, TextLanguage, TextMasks } from '../../../gpu-pool/verify/text-masks';
import { TokenTexts } from '../../../gpu-pool/verify/token-texts';
import { compileGrammar, GrammarSyntaxError } from '../../../shared/structured/grammar-automaton';
import { jsonSchemaRegex } from '../../../shared/structured/json-schema-regex';
import { compileRegex, RegexSyntaxError } from '../../../shared/structured/regex-automaton';
import { UnprintableTextError } from '../../../shared/structured/unprintable-text-error';
import { hasCodePoint } from '../../../shared/structured/code-point-set';
import { loadTokenizer } from '../../../shared/tokenizer/load-tokenizer';
import { PieceDecoder, pieceBytes, SILENT_PIECE, TEXT_PIECE, type PieceTable } from '../../../shared/tokenizer/incremental-decoder';
import { models } from '../../support/shared-data';
import { refusalOf } from '../../support/refusal';

const tok105 = loadTokenizer(new Uint8Array(readFileSync(models.babyllama105.tokenizer)), 'llama2c');
const texts = TokenTexts.of(tok105);
const END = tok105.eosIds[0];
/** A token that prints ',' (the prompt's last: the output's first token prints its leading space). */
const COMMA = tok105.encode(',', { bos: false }).at(-1)!;

function idOf(text: string): number {
  const ids = tok105.encode(text, { bos: false }).filter((id) => id !== 3 || text.startsWith(' '));
  expect(ids, text).toHaveLength(1);
  return ids[0];
}

function textOf(ids: readonly number[], afterBos: boolean): string {
  const decoder = tok105.createDecoder(afterBos ? undefined : { previousId: COMMA });
  if (afterBos) decoder.push(tok105.bosId);
  return ids.map((id) => decoder.push(id)).join('');
}

/**
 * Every state the masks let the output reach (breadth first over the allowed
 * ids, at most `limit` states): none leaves nothing allowed, and the texts
 * where the end is allowed, as many as `limit` lets it find.
 */
function walkEverything(masks: TextMasks, afterBos: boolean, limit = 2_000): { states: number; stuck: string[]; whole: string[] } {
  const seen = new Set<number>();
  const stuck: string[] = [];
  const whole: string[] = [];
  const todo: number[][] = [[]];
  while (todo.length > 0 && seen.size < limit) {
    const ids = todo.shift()!;
    const state = ids.length === 0 ? START : masks.stateAfter(ids);
    if (seen.has(state)) continue;
    seen.add(state);
    const allowed = Array.from(masks.allowedAt(state));
    if (allowed.length === 0) stuck.push(textOf(ids, afterBos));
    for (const id of allowed) {
      if (id === END) whole.push(textOf(ids, afterBos));
      else todo.push([...ids, id]);
    }
  }
  return { states: seen.size, stuck, whole };
}

/** A compile's refusal: an UnprintableTextError, or the syntax error of the pattern or grammar. */
const refusal = (compile: () => unknown): Error => refusalOf(compile, Error);

describe("tok105's printable characters", () => {
  it('are those its pieces print, each printed alone; a byte-fallback vocabulary prints every one', () => {
    for (const char of ['{', '}', '#', '=', '@', '_', '^', '\n', '\t', 'à']) expect(hasCodePoint(texts.printable!, char.codePointAt(0)!), JSON.stringify(char)).toBe(false);
    for (const char of ['T', 'a', ' ', '"', ':', ',', '[', ']', '—', 'é', '€']) expect(hasCodePoint(texts.printable!, char.codePointAt(0)!), JSON.stringify(char)).toBe(true);
    expect(texts.printsEachAlone).toBe(true);
    const tok512 = TokenTexts.of(loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)), 'llama2c'));
    expect(tok512.printable).toBeNull();
    expect(tok512.printsEachAlone).toBe(true);
  });
});

describe('choices the tokenizer cannot print whole', () => {
  it("never start a choice whose next character no token prints: the reply can only be 'Tuesday'", () => {
    for (const afterBos of [false, true]) {
      const masks = TextMasks.ofChoices(['Tuesday', 'a{b}'], texts, [END], afterBos);
      expect(Array.from(masks.allowedAt(START))).toEqual([idOf('T')]);
      const walk = walkEverything(masks, afterBos);
      expect(walk.stuck).toEqual([]);
      expect(walk.whole).toEqual(['Tuesday']);
    }
    const there = TextMasks.ofChoices(['zzz', 'there{'], texts, [END], false);
    expect(Array.from(there.allowedAt(START))).toEqual([idOf('z')]);
    expect(walkEverything(there, false).whole).toEqual(['zzz']);
  });

  it('keep every choice it can print, prefixes of each other included', () => {
    const masks = TextMasks.ofChoices(['the', 'there', 'the=', 'thé'], texts, [END], false);
    const walk = walkEverything(masks, false);
    expect(walk.stuck).toEqual([]);
    expect(walk.whole.sort()).toEqual(['the', 'there', 'thé']);
  });

  it('are refused, naming what each needs, where none is printable', () => {
    const err = refusal(() => TextMasks.ofChoices(['a{b}', 'x=1', '\tz'], texts, [END], false));
    expect(err).toBeInstanceOf(UnprintableTextError);
    expect(err.message).toBe(`none of the choices can be written with this model's tokenizer: each needs a character that none of its tokens prints ("{" in "a{b}", "=" in "x=1", "\\t" in "\\tz")`);
  });
});

describe('regexes the tokenizer cannot print every match of', () => {
  const language = (pattern: string) => new TextMasks(new TextLanguage(compileRegex(pattern, {}, texts.printable), texts, [END]), false);

  it("never take a branch whose next character no token prints: '(Tuesday|there=1)' can only be 'Tuesday'", () => {
    const masks = language('(Tuesday|there=1)');
    expect(Array.from(masks.allowedAt(START))).toEqual([idOf('T')]);
    const walk = walkEverything(masks, false);
    expect(walk.stuck).toEqual([]);
    expect(walk.whole).toEqual(['Tuesday']);
    // The same pattern for every character (a byte-fallback vocabulary's automaton) let 't' in: a dead end after 'there'.
    const unrestricted = new TextMasks(new TextLanguage(compileRegex('(Tuesday|there=1)'), texts, [END]), false);
    expect(walkEverything(unrestricted, false).stuck).toEqual(['there']);
  });

  it("cut a JSON schema's array of objects to what is printable: an empty array where the schema allows one, a refusal where it does not", () => {
    const items = { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] };
    const walk = walkEverything(language(jsonSchemaRegex({ type: 'array', items })), false);
    expect(walk.stuck).toEqual([]);
    expect(walk.whole).toEqual(['[]']);
    for (const schema of [{ type: 'array', items, minItems: 1 }, items]) {
      const err = refusal(() => compileRegex(jsonSchemaRegex(schema), {}, texts.printable));
      expect(err).toBeInstanceOf(UnprintableTextError);
      expect(err.message).toBe(`no match of the regex can be written with this model's tokenizer: each needs a character that none of its tokens prints ("{")`);
    }
  });

  it('follow long printable matches to their end: strings of any printable character, and numbers', () => {
    const schema = { type: 'array', items: { type: 'string', maxLength: 3 }, minItems: 1, maxItems: 2 };
    const walk = walkEverything(language(jsonSchemaRegex(schema)), false, 400);
    expect(walk.stuck).toEqual([]);
    expect(walk.whole.length).toBeGreaterThan(0);
    for (const text of walk.whole) expect(JSON.parse(text)).toBeInstanceOf(Array);
  });

  it('still refuse a pattern that matches nothing, or is no pattern, as such: the tokenizer is not blamed', () => {
    expect(refusal(() => compileRegex('[^\\s\\S]', {}, texts.printable))).toBeInstanceOf(RegexSyntaxError);
    expect(refusal(() => compileRegex('(a{', {}, texts.printable))).toBeInstanceOf(RegexSyntaxError);
    expect(refusal(() => compileRegex('(?json-length{2}:[=#]*)', {}, texts.printable)).message).toContain('("#")');
  });
});

describe('grammars the tokenizer cannot print every sentence of', () => {
  it('never take a rule whose next character no token prints', () => {
    const masks = new TextMasks(new TextLanguage(compileGrammar('root ::= day | set\nday ::= "Tuesday"\nset ::= "there" "=" [0-9]', {}, texts.printable), texts, [END]), false);
    expect(Array.from(masks.allowedAt(START))).toEqual([idOf('T')]);
    const walk = walkEverything(masks, false);
    expect(walk.stuck).toEqual([]);
    expect(walk.whole).toEqual(['Tuesday']);
  });

  it("are refused where no sentence is printable (json.gbnf's root is an object: '{'), and checked as written before that", () => {
    const json = 'root ::= "{" ws "}"\nws ::= [ \\t\\n]*';
    const err = refusal(() => compileGrammar(json, {}, texts.printable));
    expect(err).toBeInstanceOf(UnprintableTextError);
    expect(err.message).toBe(`no sentence of the grammar can be written with this model's tokenizer: each needs a character that none of its tokens prints ("{")`);
    // A rule without end, or left recursion, is the grammar's own fault, whatever the tokenizer prints.
    expect(refusal(() => compileGrammar('root ::= "{" x\nx ::= "=" x', {}, texts.printable))).toBeInstanceOf(GrammarSyntaxError);
    expect(refusal(() => compileGrammar('root ::= x "="\nx ::= root', {}, texts.printable))).toBeInstanceOf(GrammarSyntaxError);
  });
});

describe('the search for tokens that finish a state', () => {
  it("spends one budget on all of a state's candidates: 300 that lead past its bound cost one bound's work, not 300 (review h162)", () => {
    // 'e' is printed only inside 'ye', so the search runs; 'x', 'xc', 'xcc', ... each lead to a state whose way to a
    // sentence lies past the search's bound.
    const pieces: Array<string | null> = [null, null, 'c', 'ye', 'b', 'y'];
    for (let k = 0; k < 300; k++) pieces.push('x' + 'c'.repeat(k));
    const table: PieceTable = { texts: pieces.map((p) => p ?? ''), textsAfterBos: pieces.map((p) => p ?? ''), kinds: Int16Array.from(pieces, (p) => (p === null ? SILENT_PIECE : TEXT_PIECE)), bosId: 1 };
    const handTexts = TokenTexts.of({ vocabSize: pieces.length, bosId: 1, createDecoder: (o) => new PieceDecoder(table, o), tokenBytes: (id) => pieceBytes(table, id) });
    expect(handTexts.printsEachAlone).toBe(false);
    const inner = compileRegex('x[c]{0,750}[c]{0,750}eb', {}, handTexts.printable);
    let follows = 0;
    // The regex's automaton, its follows counted.
    const counted = Object.create(inner) as typeof inner;
    counted.follow = (state, bytes, start, end) => {
      follows++;
      return inner.follow(state, bytes, start, end);
    };
    const masks = new TextMasks(new TextLanguage(counted, handTexts, [0]), false);
    masks.allowedAt(START);
    // The state's own candidates (300) and one search budget (50,000); before, each candidate searched to the bound.
    expect(follows).toBeLessThan(60_000);
  });
});
