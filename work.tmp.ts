import { readFileSync } from 'node:fs';
import { loadTokenizer } from './shared/tokenizer/load-tokenizer';
import { TokenTexts } from './gpu-pool/verify/token-texts';
import { TextLanguage, TextMasks } from './gpu-pool/verify/text-masks';
import { compileRegex } from './shared/structured/regex-automaton';
import { jsonObjectRegex, jsonSchemaRegex } from './shared/structured/json-schema-regex';
const tok = loadTokenizer(new Uint8Array(readFileSync('../shared/models/stories260K/tok512.bin')));
const texts = TokenTexts.of(tok);
const pats: Array<[string, string]> = [
  ['h72', '(?:[a-z ]{0,203}){1,60}'],
  ['h73a', '(?:[a-z ]?){1000}(?:[a-z ]?){1000}(?:[a-z ]?){1000}'],
  ['h73b', '(?:(?:(?:[a-z ]?){10}){10}){100}'],
  ['json_object', jsonObjectRegex()],
  ['story', jsonSchemaRegex(JSON.parse(readFileSync('/tmp/story-schema.json', 'utf8')))],
  ['words', '(\\w+ ){1,900}'],
];
for (const [name, p] of pats) {
  const t0 = performance.now();
  let auto;
  try { auto = compileRegex(p); } catch (e) { console.log(name, 'compile', (e as Error).message.slice(0, 90)); continue; }
  const t1 = performance.now();
  const m = new TextMasks(new TextLanguage(auto, texts, tok.eosIds), false);
  let worst = 0, n = 0, err = '';
  try {
    for (let step = 0; step < 300; step++) {
      const s = performance.now();
      const a = m.allowedAt(m.state);
      worst = Math.max(worst, performance.now() - s);
      const pick = a.filter((x) => !tok.eosIds.includes(x));
      if (!pick.length) break;
      m.observe(pick[(step * 7919) % pick.length]); n++;
    }
  } catch (e) { err = (e as Error).message.slice(0, 80); }
  console.log(name, 'compile', (t1 - t0).toFixed(0), 'ms; total', (performance.now() - t1).toFixed(0), 'ms; worst step', worst.toFixed(0), 'ms;', n, 'tokens; used', auto.used.toFixed(3), err);
}
