/**
 * What a structured output costs the pool as the vocabulary grows: the
 * tokens' texts built at start-up (gpu-pool/verify/token-texts.ts), and the
 * allowed ids of each state an output reaches (text-masks.ts's idsAt: every
 * id whose first byte goes on from the state is followed through the
 * automaton once per state). The served models have 512 ids or fewer; a
 * larger vocabulary is made from stories260K's pieces, the corpus's words
 * (with and without the leading space) and then the pieces inside them by
 * frequency, as a llama2.c tokenizer file, so the texts are the language's own.
 * 105 is babyllama105's tokenizer (no byte fallback: the automata are cut to
 * the characters it prints, and what needs another is refused); with
 * --no-fallback a wider one leaves out stories260K's byte pieces and its
 * one-letter pieces, so letters are printed only inside longer pieces and the
 * masks search for a way to finish each state they allow (text-masks.ts,
 * finishable).
 * Usage: npx tsx launcher/bench-structured.ts [--vocab 512,32000] [--states N] [--rounds N] [--no-fallback]
 * Needs the development data beside the repository (../shared, or SSSD_SHARED_DIR).
 */
import { readFileSync } from 'node:fs';
import { TextLanguage } from '../gpu-pool/verify/text-masks';
import { TokenTexts } from '../gpu-pool/verify/token-texts';
import { quantile } from '../gpu-pool/bench/latency-stats';
import { compileGrammar } from '../shared/structured/grammar-automaton';
import { jsonSchemaRegex } from '../shared/structured/json-schema-regex';
import { compileRegex } from '../shared/structured/regex-automaton';
import type { CodePointSet } from '../shared/structured/code-point-set';
import { UnprintableTextError } from '../shared/structured/unprintable-text-error';
import { DEAD, type TextAutomaton } from '../shared/structured/text-automaton';
import { loadTokenizer } from '../shared/tokenizer/load-tokenizer';
import type { Tokenizer } from '../shared/tokenizer/tokenizer';
import { CliError } from '../gpu-pool/cli/cli-error';
import { numberFlag, parseBenchFlags, runBenchmark } from './bench-flags';
import { sharedFile } from './stack';

/** llama.cpp's json.gbnf, as vLLM users send it. */
const JSON_GRAMMAR = String.raw`root ::= object
value ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\n" [ \t]{0,20}`;

/** The README's schema, as a client's json_schema response format sends it. */
const STORY_SCHEMA = {
  type: 'object',
  properties: { title: { type: 'string', maxLength: 40 }, hero: { type: 'string', maxLength: 20 }, age: { type: 'integer', minimum: 0, maximum: 20 }, story: { type: 'string' } },
  required: ['title', 'hero', 'age', 'story'],
};

/** Each compiled as the pool compiles it: cut to the characters the tokenizer prints (null: all). */
const LANGUAGES: ReadonlyArray<[string, (printable: CodePointSet | null) => TextAutomaton]> = [
  ['regex: a sentence of at most 300 letters', (printable) => compileRegex('[A-Za-z ,]{1,300}\\.', {}, printable)],
  ['JSON schema (4 properties)', (printable) => compileRegex(jsonSchemaRegex(STORY_SCHEMA), {}, printable)],
  ['grammar: json.gbnf', (printable) => compileGrammar(JSON_GRAMMAR, {}, printable)],
];

/**
 * A llama2.c tokenizer file of `size` ids: stories260K's pieces (its byte
 * pieces and one-letter pieces left out with `noFallback`), then the
 * corpus's words (▁word, then word) and their inner pieces by frequency.
 */
function widerTokenizer(size: number, noFallback: boolean): Uint8Array {
  const base = loadTokenizer(new Uint8Array(readFileSync(sharedFile('models/stories260K/tok512.bin'))));
  const pieces: string[] = [];
  const decoder = new TextDecoder();
  for (let id = 0; id < base.vocabSize; id++) {
    const piece = pieceOf(base, id, decoder);
    if (!(noFallback && ((id >= 3 && id < 259) || /^▁?[A-Za-z]$/.test(piece)))) pieces.push(piece);
  }
  const seen = new Set(pieces);
  const counts = new Map<string, number>();
  for (const line of readFileSync(sharedFile('workloads/datastore-corpus.jsonl'), 'utf8').split('\n')) {
    if (!line) continue;
    for (const word of (JSON.parse(line) as { text: string }).text.split(/\s+/)) if (word) counts.set(word, (counts.get(word) ?? 0) + 1);
  }
  // Whole words first, then the pieces inside them (a trained vocabulary's subwords), by how often they occur.
  const words = [...counts].sort((a, b) => b[1] - a[1]);
  const subwords = new Map<string, number>();
  for (const [word, count] of words) {
    const spelled = `▁${word}`;
    for (let from = 0; from < spelled.length; from++) {
      for (let to = from + 2; to <= Math.min(spelled.length, from + 8); to++) {
        const piece = spelled.slice(from, to);
        subwords.set(piece, (subwords.get(piece) ?? 0) + count);
      }
    }
  }
  const candidates = [...words.map(([word]) => `▁${word}`), ...words.map(([word]) => word), ...[...subwords].sort((a, b) => b[1] - a[1]).map(([piece]) => piece)];
  for (const piece of candidates) {
    if (pieces.length >= size) break;
    if (!seen.has(piece)) {
      seen.add(piece);
      pieces.push(piece);
    }
  }
  if (pieces.length < size) throw new CliError(`--vocab ${size}: the corpus gives pieces for ${pieces.length} ids only`);
  return llama2cFile(pieces);
}

/** An id's piece as llama2.c's file spells it: byte pieces as <0xXX>, others as their text. */
function pieceOf(tokenizer: Tokenizer, id: number, decoder: TextDecoder): string {
  if (id === 0) return '<unk>';
  if (id === tokenizer.bosId) return '<s>';
  if (tokenizer.eosIds.includes(id)) return '</s>';
  if (id >= 3 && id < 259) return `<0x${(id - 3).toString(16).toUpperCase().padStart(2, '0')}>`;
  return decoder.decode(tokenizer.tokenBytes(id)).replaceAll(' ', '▁');
}

function llama2cFile(pieces: readonly string[]): Uint8Array {
  const encoder = new TextEncoder();
  const encoded = pieces.map((piece) => encoder.encode(piece));
  const out = new Uint8Array(4 + encoded.reduce((sum, bytes) => sum + 8 + bytes.length, 0));
  const view = new DataView(out.buffer);
  view.setInt32(0, encoded.reduce((longest, bytes) => Math.max(longest, bytes.length), 0), true);
  let at = 4;
  encoded.forEach((bytes, id) => {
    // Scores: earlier pieces merge first, as in a trained vocabulary.
    view.setFloat32(at, -id, true);
    view.setInt32(at + 4, bytes.length, true);
    out.set(bytes, at + 8);
    at += 8 + bytes.length;
  });
  return out;
}

/**
 * Walks `states` new states of the language, each step a seeded pick among
 * the ids allowed (the end ids left out), timing idsAt where the state is new
 * (a state seen before is the language's cache, free).
 */
function walkStates(language: TextLanguage, endIds: ReadonlySet<number>, states: number, seed: number): { times: number[]; end: string } {
  const times: number[] = [];
  const seen = new Set<number>();
  let state = 0;
  let x = seed;
  for (let step = 0; times.length < states && step < states * 20; step++) {
    const fresh = !seen.has(state);
    const t0 = performance.now();
    const { allowed } = language.idsAt(state, false);
    if (fresh) times.push(performance.now() - t0);
    seen.add(state);
    const choices = Array.from(allowed).filter((id) => !endIds.has(id));
    if (choices.length === 0) return { times, end: 'a whole sentence' };
    x = (Math.imul(x, 1103515245) + 12345) & 0x7fffffff;
    state = language.next(state, choices[x % choices.length], false);
    if (state === DEAD) throw new Error('an allowed id left the language');
  }
  return { times, end: `${states} new states` };
}

await runBenchmark(async () => {
  const values = parseBenchFlags(
    {
      vocab: { type: 'string', default: '512,32000' },
      states: { type: 'string', default: '100' },
      rounds: { type: 'string', default: '5' },
      'no-fallback': { type: 'boolean', default: false },
    },
    process.argv.slice(2),
    'npm run bench:structured -- [options]\nA structured output\'s cost by vocabulary size: the tokens\' texts at start-up, and the allowed ids of each new state.',
  );
  const sizes = values.vocab.split(',').map((v) => (v === '105' ? 105 : numberFlag('vocab', v, { integer: true, min: 512, max: 262_144 })));
  const noFallback = values['no-fallback'];
  const states = numberFlag('states', values.states, { integer: true, min: 1, max: 100_000 });
  const rounds = numberFlag('rounds', values.rounds, { integer: true, min: 1 });
  for (const size of sizes) {
    const served = size === 105 ? 'models/babyllama105/tok105.bin' : size === 512 ? 'models/stories260K/tok512.bin' : null;
    const tokenizer = loadTokenizer(served !== null ? new Uint8Array(readFileSync(sharedFile(served))) : widerTokenizer(size, noFallback));
    const builds: number[] = [];
    let texts: TokenTexts | null = null;
    for (let r = 0; r < rounds; r++) {
      const t0 = performance.now();
      texts = TokenTexts.of(tokenizer);
      builds.push(performance.now() - t0);
    }
    const cut = texts!.printable === null ? 'every character printable' : `automata cut to the printable characters${texts!.printsEachAlone ? '' : ', some printed only inside longer pieces'}`;
    console.log(`${tokenizer.vocabSize} ids: the tokens' texts built in ${quantile(builds, 0.5).toFixed(1)} ms (median of ${rounds}; ${cut})`);
    for (const [name, compile] of LANGUAGES) {
      const all: number[] = [];
      let end = '';
      let refused: string | null = null;
      for (let r = 0; r < rounds && refused === null; r++) {
        let automaton: TextAutomaton;
        try {
          automaton = compile(texts!.printable);
        } catch (err) {
          if (!(err instanceof UnprintableTextError)) throw err;
          refused = err.message;
          break;
        }
        const walked = walkStates(new TextLanguage(automaton, texts!, tokenizer.eosIds), new Set(tokenizer.eosIds), states, 7 + r);
        // A loop, not a spread: a long walk's times are past what a call's arguments may hold.
        for (const t of walked.times) all.push(t);
        end = walked.end;
      }
      if (refused !== null) {
        console.log(`  ${name}: refused (${refused})`);
        continue;
      }
      console.log(`  ${name}: a new state's allowed ids ${quantile(all, 0.5).toFixed(2)} ms median, p90 ${quantile(all, 0.9).toFixed(2)}, max ${quantile(all, 1).toFixed(2)} (${all.length} states over ${rounds} walks, each to ${end})`);
    }
  }
});
