/**
 * The tree a regex or a grammar rule parses to, which byte-nfa.ts compiles:
 * one shape for both, a grammar's adding references to its rules.
 */
import type { CodePointSet } from './code-point-set';

export type ExpressionNode<Extra = never> =
  | { readonly kind: 'empty' }
  | { readonly kind: 'chars'; readonly set: CodePointSet }
  | { readonly kind: 'concat'; readonly items: readonly ExpressionNode<Extra>[] }
  | { readonly kind: 'alternation'; readonly items: readonly ExpressionNode<Extra>[] }
  /** `max` is Infinity for an unbounded repeat. */
  | { readonly kind: 'repeat'; readonly item: ExpressionNode<Extra>; readonly min: number; readonly max: number }
  /**
   * `item`'s texts that are a JSON string's content (between the quotes)
   * whose decoded value has `min` to `max` code points (json-string-length.ts);
   * `max` Infinity for no bound. A regex's `(?json-length{m,n}:...)`.
   */
  | { readonly kind: 'jsonLength'; readonly item: ExpressionNode<Extra>; readonly min: number; readonly max: number }
  /**
   * The rest of the output, whatever it is: a regex's `(?any-tail)`, only at
   * its end. Any bytes, and to the pool every token from there, those that
   * print nothing or no whole UTF-8 included: the mask is lifted.
   */
  | { readonly kind: 'anyTail'; readonly at: number }
  | Extra;

/** A grammar's reference to rule number `rule` (an index into its rules). */
export type RuleReference = { readonly kind: 'ref'; readonly rule: number };
