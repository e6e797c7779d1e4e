/**
 * A request body's strings are whole characters: a JSON string escaping half
 * of one (`"\ud800"` with no pair) is refused with a 400 naming its field, as
 * strict JSON readers refuse it (I-JSON, RFC 7493; Anthropic's API). Taken,
 * the model read U+FFFD in its place (UTF-8 has no such character) while
 * stored chat completions, responses and conversations kept it as sent; and
 * a body's bytes that are not UTF-8 are refused already (index.ts).
 */
import { ApiError } from './api-error';
import { clipped } from './request-schema';

/**
 * Top-level fields that are the caller's names, not text: kept as sent (a
 * `user` with a lone surrogate has a user cache of its own, and can be
 * forgotten by the user-cache route's JSON body: user-cache-store.ts).
 */
const NAME_FIELDS: ReadonlySet<string> = new Set(['user', 'safety_identifier', 'prompt_cache_key']);

/** With the `u` flag, a pair is one code point: only a lone half matches. */
const LONE_SURROGATE = /\p{Cs}/u;
/** Text with no `\uD...` escape holds no surrogate: the body's bytes are strict UTF-8, which has none. */
const SURROGATE_ESCAPE = /\\u[dD]/;

/** A value in the body and where it is: its parent's node and its key there (null at the root). */
interface Node {
  value: unknown;
  parent: Node | null;
  key: string | number | null;
}

/** Where a lone surrogate was found: the string at `node`, or one of its keys (`inKey`). */
interface Found {
  node: Node;
  inKey: boolean;
  unit: number;
}

function pathOf(node: Node): string {
  const keys: Array<string | number> = [];
  for (let at: Node | null = node; at !== null && at.key !== null; at = at.parent) keys.push(at.key);
  return keys.reverse().map(String).join('.');
}

function loneUnit(text: string): number | null {
  const match = LONE_SURROGATE.exec(text);
  return match === null ? null : match[0].charCodeAt(0);
}

/** The first lone surrogate in document order, or null; iterative, so a deeply nested body cannot overflow the stack. */
function firstLoneSurrogate(body: unknown): Found | null {
  const stack: Node[] = [{ value: body, parent: null, key: null }];
  while (stack.length > 0) {
    const node = stack.pop() as Node;
    const { value } = node;
    if (typeof value === 'string') {
      const unit = loneUnit(value);
      if (unit !== null) return { node, inKey: false, unit };
    } else if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push({ value: value[i], parent: node, key: i });
    } else if (typeof value === 'object' && value !== null) {
      const keys = Object.keys(value);
      for (const key of keys) {
        const unit = loneUnit(key);
        if (unit !== null) return { node, inKey: true, unit };
      }
      for (let i = keys.length - 1; i >= 0; i--) {
        if (node.parent === null && NAME_FIELDS.has(keys[i])) continue;
        stack.push({ value: (value as Record<string, unknown>)[keys[i]], parent: node, key: keys[i] });
      }
    }
  }
  return null;
}

/**
 * Throws a 400 naming the first field of `body` (parsed from `text`) holding
 * a lone surrogate, in a string or in an object's key (then the object is
 * named: the key itself could not be quoted in valid UTF-8).
 */
export function refuseLoneSurrogates(text: string, body: unknown): void {
  if (!SURROGATE_ESCAPE.test(text)) return;
  const found = firstLoneSurrogate(body);
  if (found === null) return;
  const path = pathOf(found.node);
  const param = path === '' ? null : clipped(path, 100);
  const where = found.inKey ? `A key of ${param ?? 'the request body'}` : (param ?? 'The request body');
  const half = `U+${found.unit.toString(16).toUpperCase()}`;
  const message = `${where} holds a lone surrogate (${half}, half of a character), which is not text: send the whole character (a pair of \\u escapes for one past U+FFFF), or U+FFFD in place of one that is lost.`;
  throw new ApiError(400, message, 'invalid_request_error', 'invalid_value', param);
}
