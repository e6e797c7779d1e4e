/**
 * What a pool honours of the generate request beyond protocol 1's first form,
 * by name, so that an edge never sends a request to a pool that would answer
 * another question than the one asked.
 *
 * Fields added within protocol 1 are optional, and a pool from before one
 * drops it unread (its schema strips unknown keys): `bad_words` sent to such
 * a pool came back with the bad words in it, `logprobs` without
 * log-probabilities, `min_p` unapplied, all with status 200. A fleet
 * mid-upgrade mixes such pools with new ones. So a pool lists what it honours
 * (`features` in /healthz and /v1/info) and the edge sends a request that
 * needs one only to pools that list it; a pool that lists nothing is from
 * before the list and honours none of them.
 *
 * Only fields whose loss changes the answer are features. Those whose loss
 * changes nothing the client sees are not (`trie`, `predictionIds`: speed;
 * `model`, `protocol`: checks the old pool skips; `tenant`, `cacheSalt`: the prefix
 * cache's scope and the queue's fairness, as before them; `useDatastore`,
 * `contributeToDatastore`: from the first form).
 *
 * One listed feature is never needed: `stopStrings`. A pool from before it
 * generates on past a stop string until the edge's cancel, and the edge cuts
 * the text there all the same, so the answer is the same; listed, a pool says
 * it stops generating there itself (no batch capacity spent past the stop).
 */
import type { z } from 'zod';
import type { generateRequestSchema } from './protocol';
import { ANY_TAIL, JSON_LENGTH_OPENING } from './structured/regex-syntax';

/**
 * Every feature a pool of this code honours; sampling's fields as `sampling.<name>`. A new output-changing field goes
 * here, and so does a new construct of a field's syntax that an older pool would refuse: `regexJsonLength`, a
 * `regex` holding `(?json-length{m,n}:...)` (a JSON schema's string length beside its pattern or format);
 * `regexAnyTail`, one holding `(?any-tail)` (tool_choice "auto"'s text, unconstrained past its first character).
 */
export const POOL_FEATURES = [
  'ignoreEos',
  'stopTokenIds',
  'minTokens',
  // Listed, never needed (see above): its loss costs the pool work, not the client its answer.
  'stopStrings',
  'allowedTokenIds',
  'badWords',
  'choices',
  'regex',
  'regexJsonLength',
  'regexAnyTail',
  'grammar',
  'logprobs',
  'logprobIds',
  'promptLogprobs',
  'resumedOutputTokens',
  'sampling.minP',
  'sampling.frequencyPenalty',
  'sampling.presencePenalty',
  'sampling.repetitionPenalty',
  'sampling.logitBias',
] as const;
export type PoolFeature = (typeof POOL_FEATURES)[number];

/** A generate request as a caller writes it (defaults may be left out). */
type GenerateInput = z.input<typeof generateRequestSchema>;

/**
 * The features `request` needs honoured: those it sets to something other
 * than what a pool without them does. `resumedOutputTokens` only matters to
 * what counts the output (min_tokens, the frequency and presence penalties,
 * bad words) or follows its text (choices, regex, grammar); elsewhere a pool that reads the resumed output as prompt writes
 * the same continuation, and a resume may go to any pool.
 */
export function featuresNeeded(request: GenerateInput): PoolFeature[] {
  const s = request.sampling;
  const needed: PoolFeature[] = [];
  const minTokens = (request.minTokens ?? 0) > 0;
  const countsOutput = (s?.frequencyPenalty ?? 0) !== 0 || (s?.presencePenalty ?? 0) !== 0;
  const badWords = (request.badWords?.length ?? 0) > 0;
  const choices = request.choices !== undefined;
  const regex = request.regex !== undefined;
  const grammar = request.grammar !== undefined;
  if (request.ignoreEos === true) needed.push('ignoreEos');
  if ((request.stopTokenIds?.length ?? 0) > 0) needed.push('stopTokenIds');
  if (minTokens) needed.push('minTokens');
  if (request.allowedTokenIds !== undefined) needed.push('allowedTokenIds');
  if (badWords) needed.push('badWords');
  if (choices) needed.push('choices');
  if (regex) needed.push('regex');
  // Found as text: where it is not the construct (inside a class, say) it only narrows the pools tried.
  if (regex && request.regex!.includes(JSON_LENGTH_OPENING)) needed.push('regexJsonLength');
  if (regex && request.regex!.includes(ANY_TAIL)) needed.push('regexAnyTail');
  if (grammar) needed.push('grammar');
  if (request.logprobs !== undefined) needed.push('logprobs');
  // A pool from before it sends the most likely tokens instead: another answer.
  if (request.logprobIds !== undefined) needed.push('logprobIds');
  if (request.promptLogprobs !== undefined) needed.push('promptLogprobs');
  if ((request.resumedOutputTokens ?? 0) > 0 && (minTokens || countsOutput || badWords || choices || regex || grammar)) needed.push('resumedOutputTokens');
  if ((s?.minP ?? 0) !== 0) needed.push('sampling.minP');
  if ((s?.frequencyPenalty ?? 0) !== 0) needed.push('sampling.frequencyPenalty');
  if ((s?.presencePenalty ?? 0) !== 0) needed.push('sampling.presencePenalty');
  if ((s?.repetitionPenalty ?? 1) !== 1) needed.push('sampling.repetitionPenalty');
  if (s?.logitBias !== undefined && Object.keys(s.logitBias).length > 0) needed.push('sampling.logitBias');
  return needed;
}

/** Of `needed`, those a pool that lists `advertised` (absent: a pool from before the list) does not honour. */
export function featuresMissing(needed: readonly PoolFeature[], advertised: readonly string[] | undefined): PoolFeature[] {
  if (needed.length === 0) return [];
  // Anything but a list (a pool of another make, a proxy's rewrite) lists nothing: a string's includes() matched within words.
  if (!Array.isArray(advertised)) return [...needed];
  return needed.filter((f) => !advertised.includes(f));
}
