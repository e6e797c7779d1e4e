/**
 * JSON text in which an object may keep an order of its own. JavaScript
 * lists an object's integer-like keys ("0", "2", "12") first, ascending,
 * whatever order they were set in, and JSON.stringify follows; legacy
 * completions' `top_logprobs` (most likely first, as OpenAI and vLLM write
 * them) and vLLM's `prompt_logprobs` (the prompt token first, then by rank)
 * are ordered objects whose keys may be so (a token "2", an id). A record
 * given its order by `withKeyOrder` is still a plain record to the code that
 * reads it (and to JSON.stringify, in JavaScript's order); `jsonText` writes
 * it in its own order, and anything else as JSON.stringify would.
 */

/** Non-enumerable, so neither JSON.stringify, Object.keys nor a deep equality sees it. */
const KEY_ORDER = Symbol('keyOrder');

/** `record`, which jsonText writes with its keys in `order` (each of its own keys once, no other). */
export function withKeyOrder<V>(record: Record<string, V>, order: readonly string[]): Record<string, V> {
  Object.defineProperty(record, KEY_ORDER, { value: order });
  return record;
}

/** The order withKeyOrder gave `record`, if any. */
export function keyOrderOf(record: object): readonly string[] | undefined {
  return (record as { [KEY_ORDER]?: readonly string[] })[KEY_ORDER];
}

/**
 * JSON.stringify(value), but for the records withKeyOrder ordered: theirs in
 * their order. Slower than JSON.stringify (about 1.5x to 2x), so used only
 * where such records may be (openai-format.ts responseJson).
 */
export function jsonText(value: unknown): string {
  const text = written(value, '');
  if (text === undefined) throw new TypeError('jsonText: the value has no JSON text (undefined, a function or a symbol)');
  return text;
}

/** One value's text as JSON.stringify's SerializeJSONProperty makes it; undefined where it is left out. */
function written(value: unknown, key: string): string | undefined {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      // String() spells a finite number as JSON does (-0 as 0 too).
      return Number.isFinite(value) ? String(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      throw new TypeError('jsonText: a BigInt has no JSON text');
    case 'object': {
      const toJSON = (value as { toJSON?: unknown }).toJSON;
      if (typeof toJSON === 'function') return written(toJSON.call(value, key), key);
      if (Array.isArray(value)) {
        // No record inside (token_logprobs, text_offset, tokens): JSON.stringify's own text, faster.
        if (value.every(notObject)) return JSON.stringify(value);
        let out = '[';
        for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + (written(value[i], String(i)) ?? 'null');
        return out + ']';
      }
      const record = value as Record<string, unknown>;
      let out = '{';
      let first = true;
      for (const k of keyOrderOf(record) ?? Object.keys(record)) {
        const v = written(record[k], k);
        if (v === undefined) continue;
        out += (first ? '' : ',') + JSON.stringify(k) + ':' + v;
        first = false;
      }
      return out + '}';
    }
    default:
      return undefined;
  }
}

function notObject(value: unknown): boolean {
  return value === null || typeof value !== 'object';
}
