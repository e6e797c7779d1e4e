/**
 * vLLM's choice constraint: `structured_outputs: {"choice": [...]}` (its
 * current field) or `guided_choice: [...]` (the older one, deprecated in
 * vLLM 0.11 and removed after): the reply's text is one of the choices. The
 * pool masks every token that would leave them (gpu-pool/verify/choice-masks.ts).
 */
import { badRequest } from './api-error';

interface ChoiceFields {
  structured_outputs?: { choice?: string[] | null } | null;
  guided_choice?: string[] | null;
  ignore_eos?: boolean | null;
}

/** The request's choices, or null where it names none. */
export function outputChoices(body: ChoiceFields): string[] | null {
  let choices: string[] | null;
  // vLLM reads the guided_* fields only where structured_outputs is not sent (protocol.py, to_sampling_params).
  if (body.structured_outputs !== undefined && body.structured_outputs !== null) {
    choices = body.structured_outputs.choice ?? null;
    // vLLM's StructuredOutputsParams refuses one that names no constraint.
    if (choices === null) throw badRequest('structured_outputs names no constraint: send choice (the one served here), or leave structured_outputs out.', 'structured_outputs', 'invalid_value');
  } else choices = body.guided_choice ?? null;
  // The reply ends at the end token once it is a whole choice: with the end token ignored it could not end there.
  if (choices !== null && body.ignore_eos === true) {
    throw badRequest('ignore_eos cannot be used with a choice constraint: the reply ends at the end token once it is one of the choices.', 'ignore_eos', 'invalid_value');
  }
  return choices;
}
