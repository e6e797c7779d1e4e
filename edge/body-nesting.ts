/**
 * The edge's bound on how deep a request body's arrays and objects nest, checked before it is parsed: a 1 MiB body
 * of nested brackets held the isolate's one thread ~0.34 s in JSON.parse, against ~30 ms for as much ordinary JSON
 * (review h213). Deep schemas are what legitimately nest: a JSON schema within MAX_SCHEMA_NESTING (128 levels, its
 * sub-schemas two JSON levels apart at most) is 255 deep, wrapped in the request (`tools[].function.parameters`,
 * `response_format.json_schema.schema`) a few more; the bound is four times that, and brackets 1,024 deep at most
 * parse as fast as flat ones.
 */
import { nestsDeeperThan } from '../shared/json-nesting';
import { ApiError } from './api-error';

export const MAX_BODY_NESTING = 1024;

/** A 400 for a body whose arrays and objects nest past MAX_BODY_NESTING (`text`, before it is parsed). */
export function refuseDeepNesting(text: string): void {
  if (!nestsDeeperThan(text, MAX_BODY_NESTING)) return;
  throw new ApiError(400, `The request body nests arrays and objects deeper than ${MAX_BODY_NESTING} levels; no request needs that many.`, 'invalid_request_error', 'invalid_value');
}
