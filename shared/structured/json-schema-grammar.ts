/**
 * A JSON Schema, or JSON mode's any object, as a GBNF grammar: the language
 * of json-schema-regex.ts's regex (its layout, whitespace, key order,
 * strings, numbers, formats) with the depth bound lifted. Open values call a
 * recursive `value` rule and a `$ref` met inside itself calls a rule of its
 * own, so an object nests as deep as the text goes (as vLLM's xgrammar and
 * llama.cpp's json-schema-to-grammar follow it).
 *
 * The schema walker is the regex's (jsonSchemaRules): it writes regexes
 * with subroutine calls; here they are parsed to trees, calls of rules that
 * derive nothing dropped (a recursion that never ends, which the regex cut
 * at its depth bound), and printed as GBNF (gbnf-printer.ts).
 */

import { MAX_OUTPUT_GRAMMAR_CHARS } from '../protocol';
import { printGrammar, type PrintedRule } from './gbnf-printer';
import type { GrammarNode } from './grammar-syntax';
import { type JsonSchemaRegexOptions, type JsonSchemaRules, SchemaError, jsonObjectRules, jsonSchemaRules } from './json-schema-regex';
import { parseRegexWithCalls, RegexSyntaxError } from './regex-syntax';

/**
 * The schema asks what GBNF cannot say: a string's length beside its pattern
 * or format (the regex's `(?json-length...)`). The edge sends the regex form
 * for it, as for a grammar past its bounds.
 */
export class GrammarUnwritableError extends SchemaError {
  constructor(what: string) {
    super('', `the schema's grammar cannot hold ${what}`);
    this.name = 'GrammarUnwritableError';
  }
}

/** The schema's grammar is past a grammar's bounds, its length or its groups' nesting (where the regex, with larger ones, may still fit). */
export class GrammarTooLargeError extends SchemaError {
  constructor(what: string) {
    super('', `the schema's grammar ${what}: simplify the schema (fewer optional properties, $refs, enum values, long patterns or counts)`);
    this.name = 'GrammarTooLargeError';
  }
}

export interface JsonSchemaGrammarOptions {
  /** The whitespace allowed between tokens, a regex of the subset (default outlines' `[ ]?`), as the regex's. */
  whitespace?: string;
  /** The longest grammar written, in characters (default MAX_OUTPUT_GRAMMAR_CHARS, what a pool takes). */
  maxLength?: number;
}

/** The GBNF grammar whose sentences are the JSON texts (in the regex's layout, at any depth) valid under `schema`. */
export function jsonSchemaGrammar(schema: unknown, options: JsonSchemaGrammarOptions = {}): string {
  return grammarOf(jsonSchemaRules(schema, regexOptions(options)), options);
}

/** The GBNF grammar of any JSON object (`response_format: {"type": "json_object"}`), nested to any depth. */
export function jsonObjectGrammar(options: JsonSchemaGrammarOptions = {}): string {
  return grammarOf(jsonObjectRules(regexOptions(options)), options);
}

function regexOptions(options: JsonSchemaGrammarOptions): JsonSchemaRegexOptions {
  return options.whitespace === undefined ? {} : { whitespace: options.whitespace };
}

function grammarOf(written: JsonSchemaRules, options: JsonSchemaGrammarOptions): string {
  const names = ['root', ...written.rules.keys()];
  const index = new Map(names.map((name, i) => [name, i]));
  const rule = (name: string): number => {
    const i = index.get(name);
    if (i === undefined) throw new Error(`a call of rule ${name}, which was never written`);
    return i;
  };
  let bodies: GrammarNode[];
  try {
    bodies = [written.root, ...written.rules.values()].map((regex) => parseRegexWithCalls(regex, rule));
  } catch (err) {
    // Many optional properties nest groups past what a grammar's parser reads (as they do past a regex's).
    if (err instanceof RegexSyntaxError) throw new GrammarTooLargeError(`nests its groups too deep (${err.message})`);
    throw err;
  }
  if (bodies.some(holdsJsonLength)) throw new GrammarUnwritableError("a string's length beside its pattern or format");
  const live = productiveRules(bodies);
  if (!live[0]) throw new SchemaError('', 'no JSON value satisfies the schema');
  const pruned = bodies.map((body, i) => (live[i] ? withoutDeadCalls(body, live) : null));
  const rules: PrintedRule[] = reachable(pruned).map((i) => ({ name: names[i], body: pruned[i]! }));
  // References are by index into the printed list.
  const order = new Map(rules.map((r, i) => [names.indexOf(r.name), i]));
  const text = printGrammar(rules.map((r) => ({ name: r.name, body: renumbered(r.body, order) })));
  const maxLength = options.maxLength ?? MAX_OUTPUT_GRAMMAR_CHARS;
  if (text.length > maxLength) throw new GrammarTooLargeError(`grows past ${maxLength} characters`);
  return text;
}

function holdsJsonLength(node: GrammarNode): boolean {
  switch (node.kind) {
    case 'jsonLength': return true;
    case 'concat':
    case 'alternation': return node.items.some(holdsJsonLength);
    case 'repeat': return holdsJsonLength(node.item);
    default: return false;
  }
}

/** Whether each rule derives some finite text (a least fixed point: none do, until shown). */
function productiveRules(bodies: readonly GrammarNode[]): boolean[] {
  const live = bodies.map(() => false);
  for (let changed = true; changed; ) {
    changed = false;
    bodies.forEach((body, i) => {
      if (!live[i] && derives(body, live)) live[i] = changed = true;
    });
  }
  return live;
}

function derives(node: GrammarNode, live: readonly boolean[]): boolean {
  switch (node.kind) {
    case 'empty': return true;
    case 'chars': return node.set.length > 0;
    case 'ref': return live[node.rule];
    case 'concat': return node.items.every((item) => derives(item, live));
    case 'alternation': return node.items.some((item) => derives(item, live));
    case 'repeat': return node.min === 0 || derives(node.item, live);
    case 'jsonLength': return derives(node.item, live);
    case 'anyTail': return true;
  }
}

/** `node` without what derives nothing (as the regex's builder drops a value no text fits); null where it all goes. */
function withoutDeadCalls(node: GrammarNode, live: readonly boolean[]): GrammarNode | null {
  switch (node.kind) {
    case 'empty':
      return node;
    case 'chars':
      return node.set.length > 0 ? node : null;
    case 'ref':
      return live[node.rule] ? node : null;
    case 'concat': {
      const items: GrammarNode[] = [];
      for (const item of node.items) {
        const kept = withoutDeadCalls(item, live);
        if (kept === null) return null;
        items.push(kept);
      }
      return { kind: 'concat', items };
    }
    case 'alternation': {
      const items = node.items.map((item) => withoutDeadCalls(item, live)).filter((item): item is GrammarNode => item !== null);
      return items.length === 0 ? null : items.length === 1 ? items[0] : { kind: 'alternation', items };
    }
    case 'repeat': {
      const item = withoutDeadCalls(node.item, live);
      if (item === null) return node.min === 0 ? { kind: 'empty' } : null;
      return { ...node, item };
    }
    case 'jsonLength': {
      const item = withoutDeadCalls(node.item, live);
      return item === null ? null : { ...node, item };
    }
    case 'anyTail':
      return node;
  }
}

/** The rules root reaches, root first, in the order written. */
function reachable(bodies: readonly (GrammarNode | null)[]): number[] {
  const seen = new Set<number>([0]);
  const todo = [0];
  const visit = (node: GrammarNode): void => {
    if (node.kind === 'ref') {
      if (!seen.has(node.rule)) {
        seen.add(node.rule);
        todo.push(node.rule);
      }
    } else if (node.kind === 'concat' || node.kind === 'alternation') node.items.forEach(visit);
    else if (node.kind === 'repeat' || node.kind === 'jsonLength') visit(node.item);
  };
  while (todo.length > 0) visit(bodies[todo.pop()!]!);
  return [...seen].sort((a, b) => a - b);
}

function renumbered(node: GrammarNode, order: ReadonlyMap<number, number>): GrammarNode {
  switch (node.kind) {
    case 'ref': return { kind: 'ref', rule: order.get(node.rule)! };
    case 'concat':
    case 'alternation': return { kind: node.kind, items: node.items.map((item) => renumbered(item, order)) };
    case 'repeat':
    case 'jsonLength': return { ...node, item: renumbered(node.item, order) };
    default: return node;
  }
}
