/**
 * The issue of a zod error that says what is wrong. zod wraps some in
 * another that names no reason: a union's "Invalid input" (the branch the
 * value's type matched has it: "stop accepts at most 4 sequences"), a
 * record's "Invalid key in record" (the key schema's own message: "keys are
 * token ids: whole numbers from 0, written without leading zeros"). The inner issue comes out,
 * its path under the outer one's. A number too large for JSON.parse is said
 * as such. Isomorphic: the edge and the pool both answer with it.
 */
import type { z } from 'zod';

export function specificIssue(issue: z.core.$ZodIssue | undefined): z.core.$ZodIssue | undefined {
  if (!issue) return issue;
  // JSON.parse reads a number past ±1.8e308 as infinite; zod then says "received Infinity", which no client sent.
  if (issue.code === 'invalid_type' && ((issue as { received?: unknown }).received === 'Infinity' || (issue as { received?: unknown }).received === '-Infinity')) {
    return { ...issue, message: 'a number too large to be read (past ±1.8e308)' };
  }
  if (issue.code === 'invalid_key') {
    const inner = specificIssue(issue.issues[0]);
    // The key's own path is the offending key, which the outer path already ends with.
    return inner ? { ...inner, path: issue.path } : issue;
  }
  if (issue.code !== 'invalid_union') return issue;
  const branch = issue.errors.find((errors) => errors.length > 0 && !(errors[0].code === 'invalid_type' && errors[0].path.length === 0));
  if (!branch) return issue;
  const inner = specificIssue(branch[0]);
  return inner ? { ...inner, path: [...issue.path, ...inner.path] } : issue;
}
