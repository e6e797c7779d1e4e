/**
 * The whitespace option of a JSON schema's regex: a regex of the subset that
 * can match only JSON's whitespace (space, \t, \n, \r; JSON.parse refuses \v
 * and \f), pasted between tokens as it is, so no anchor either.
 */

import { jsonStringPattern, PatternError } from './json-string-pattern';
import { type RegexNode, RegexSyntaxError, parseRegex } from './regex-syntax';

/** A whitespace option the JSON layout cannot use (a RangeError: a bad option, not a bad schema). */
export class WhitespaceError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = 'WhitespaceError';
  }
}

const JSON_WHITESPACE = new Set([0x09, 0x0a, 0x0d, 0x20]);

function onlyJsonWhitespace(node: RegexNode): boolean {
  switch (node.kind) {
    case 'empty': return true;
    case 'chars': {
      for (let i = 0; i < node.set.length; i += 2) {
        for (let cp = node.set[i]; cp <= node.set[i + 1]; cp++) if (!JSON_WHITESPACE.has(cp)) return false;
      }
      return true;
    }
    case 'repeat':
    case 'jsonLength': return onlyJsonWhitespace(node.item);
    case 'anyTail': return false;
    default: return node.items.every(onlyJsonWhitespace);
  }
}

/** Throws a WhitespaceError unless `ws` is a regex of the subset, unanchored, matching only JSON whitespace. */
export function checkWhitespace(ws: string): void {
  // jsonStringPattern drops a leading ^ and a trailing $, which would then be pasted raw.
  if (ws.startsWith('^') || /(^|[^\\])(\\\\)*\$$/.test(ws)) throw new WhitespaceError('whitespace must not be anchored with ^ or $');
  let tree: RegexNode;
  try {
    jsonStringPattern(ws);
    tree = parseRegex(ws);
  } catch (e) {
    if (e instanceof PatternError || e instanceof RegexSyntaxError) throw new WhitespaceError(`whitespace must be a regex of the subset: ${e.message}`);
    throw e;
  }
  if (!onlyJsonWhitespace(tree)) throw new WhitespaceError('whitespace may match only space, \\t, \\n and \\r (the whitespace JSON allows)');
}
