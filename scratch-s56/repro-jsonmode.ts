// The pool's own mask path (TextLanguage + TextMasks, per-request bounds 10M work / 20k states) over a JSON-mode reply.
import { readFileSync } from 'node:fs';
import { TextLanguage, TextMasks } from '../gpu-pool/verify/text-masks';
import { TokenTexts } from '../gpu-pool/verify/token-texts';
import { loadTokenizer } from '../shared/tokenizer/load-tokenizer';
import { compileGrammar } from '../shared/structured/grammar-automaton';
import { jsonObjectGrammar } from '../shared/structured/json-schema-grammar';
const tok = loadTokenizer(new Uint8Array(readFileSync('/tmp/shared/models/stories260K/tok512.bin')));
const text = readFileSync(process.argv[2] ?? '/tmp/h90/x/minfail.json', 'utf8');
JSON.parse(text);
const a = compileGrammar(jsonObjectGrammar());
const m = new TextMasks(new TextLanguage(a, TokenTexts.of(tok), [2]), false);
const ids = tok.encode(text, { bos: false }).slice(1);
const out = new Float32Array(tok.vocabSize), kept = new Float32Array(tok.vocabSize);
const t0 = performance.now();
try { for (let i = 0; i < ids.length; i++) { m.mask(out, m.state, kept); m.observe(ids[i]); } console.log('whole reply followed', ids.length, 'tokens, work', a.workDone); }
catch (e: any) { console.log(`ended after ${(performance.now() - t0).toFixed(0)} ms at output byte ${tok.decode(ids.slice(0, 0)).length}..: ${e.message}`); }
