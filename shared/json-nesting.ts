/**
 * How deep a JSON text's arrays and objects nest, found by a scan of its
 * characters before it is parsed: V8's JSON.parse spends ~0.3 s on 1 MB of
 * nested brackets (3.5 s on 6 MB), against ~5-30 ms for as much ordinary
 * JSON, all of it on the one thread a pool's generations or an isolate's
 * requests share (review h213). Nesting alone is what costs: as many
 * brackets 1,024 deep at most parse as fast as flat ones.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;

/**
 * Whether `text`'s arrays and objects nest deeper than `maxDepth` (`[[1]]` is
 * 2 deep). Brackets inside strings are text, an escaped quote (`\"`) ends no
 * string. Stops at the first bracket past the bound; a text that is not JSON
 * is scanned as far as it goes, and left to the parser to refuse.
 */
export function nestsDeeperThan(text: string, maxDepth: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > maxDepth) return true;
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      depth--;
    }
  }
  return false;
}
