/**
 * Which generate fields a pool must honour for a request: a request that sets
 * none of them may go to any pool, one that sets one only to pools that list
 * it, and every field of the protocol is either such a feature or one whose
 * loss changes nothing a client sees.
 */
import { describe, expect, it } from 'vitest';
import { featuresMissing, featuresNeeded, POOL_FEATURES } from '../../shared/pool-features';
import { generateRequestSchema, samplingSchema } from '../../shared/protocol';

const plain = { id: 'g', promptIds: [1, 2], maxTokens: 8, sampling: { temperature: 0.7, topP: 0.9, topK: 40, seed: 3 }, speculation: 'sssd' as const };

describe('featuresNeeded', () => {
  it('asks nothing of a request in protocol 1 first form, or one that sets the later fields to what a pool without them does', () => {
    expect(featuresNeeded(plain)).toEqual([]);
    const neutral = {
      ...plain,
      ignoreEos: false,
      stopTokenIds: [],
      minTokens: 0,
      badWords: [],
      resumedOutputTokens: 5,
      sampling: { ...plain.sampling, minP: 0, frequencyPenalty: 0, presencePenalty: 0, repetitionPenalty: 1, logitBias: {} },
      // Not features: their loss changes speed, a check, or the prefix cache's scope, never the answer.
      trie: 'AAAA',
      predictionIds: [5],
      cacheSalt: 's',
      tenant: 't',
      model: { name: 'm', contextLength: 512, tokenizerSha256: 'x' },
      useDatastore: false,
      contributeToDatastore: true,
      // Listed by pools that stop there themselves, never needed: a pool from before it generates on, and the edge cuts the text all the same.
      stopStrings: ['The end'],
      stopMatcher: 1,
    };
    expect(featuresNeeded(neutral)).toEqual([]);
    expect(POOL_FEATURES).toContain('stopStrings');
  });

  it('names each field that changes the answer', () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ ignoreEos: true }, 'ignoreEos'],
      [{ stopTokenIds: [9] }, 'stopTokenIds'],
      [{ minTokens: 3 }, 'minTokens'],
      [{ allowedTokenIds: [4, 5] }, 'allowedTokenIds'],
      [{ badWords: [[7, 8]] }, 'badWords'],
      [{ choices: ['yes', 'no'] }, 'choices'],
      [{ regex: '[0-9]+' }, 'regex'],
      [{ grammar: 'root ::= [0-9]+' }, 'grammar'],
      [{ logprobs: 0 }, 'logprobs'],
      [{ logprobIds: [3, 9] }, 'logprobIds'],
      [{ promptLogprobs: 0 }, 'promptLogprobs'],
      [{ sampling: { minP: 0.1 } }, 'sampling.minP'],
      [{ sampling: { frequencyPenalty: -0.5 } }, 'sampling.frequencyPenalty'],
      [{ sampling: { presencePenalty: 1 } }, 'sampling.presencePenalty'],
      [{ sampling: { repetitionPenalty: 1.2 } }, 'sampling.repetitionPenalty'],
      [{ sampling: { logitBias: { '5': -100 } } }, 'sampling.logitBias'],
    ];
    for (const [fields, feature] of cases) {
      const request = { ...plain, ...fields, sampling: { ...plain.sampling, ...(fields.sampling as object | undefined) } };
      expect(featuresNeeded(request)).toEqual([feature]);
    }
  });

  it("needs regexJsonLength beside regex where the regex holds a length group (a JSON schema's string length beside its pattern)", () => {
    expect(featuresNeeded({ ...plain, regex: '"(?json-length{1,5}:[a-z]*)"' })).toEqual(['regex', 'regexJsonLength']);
    expect(featuresNeeded({ ...plain, regex: '"[a-z]{1,5}"' })).toEqual(['regex']);
  });

  it('needs regexAnyTail beside regex where the regex ends in (?any-tail) (tool_choice "auto"\'s text)', () => {
    expect(featuresNeeded({ ...plain, regex: '[^\\[](?any-tail)|\\[\\]' })).toEqual(['regex', 'regexAnyTail']);
  });

  it('needs resumedOutputTokens honoured only where the output is counted (min_tokens, frequency and presence penalties, bad words) or its text followed (choices, regex, grammar)', () => {
    const resumed = { ...plain, resumedOutputTokens: 1 };
    expect(featuresNeeded(resumed)).toEqual([]);
    expect(featuresNeeded({ ...resumed, minTokens: 4 })).toEqual(['minTokens', 'resumedOutputTokens']);
    expect(featuresNeeded({ ...resumed, badWords: [[3]] })).toEqual(['badWords', 'resumedOutputTokens']);
    // A pool that read the resumed output as prompt would start the text over from no choice's first character.
    expect(featuresNeeded({ ...resumed, choices: ['yes'] })).toEqual(['choices', 'resumedOutputTokens']);
    expect(featuresNeeded({ ...resumed, grammar: 'root ::= "yes"' })).toEqual(['grammar', 'resumedOutputTokens']);
    expect(featuresNeeded({ ...resumed, regex: 'yes|no' })).toEqual(['regex', 'resumedOutputTokens']);
    expect(featuresNeeded({ ...resumed, sampling: { ...plain.sampling, presencePenalty: 0.5 } })).toEqual(['resumedOutputTokens', 'sampling.presencePenalty']);
    // Repetition counts prompt and output alike: the resumed output as prompt is the same.
    expect(featuresNeeded({ ...resumed, sampling: { ...plain.sampling, repetitionPenalty: 1.3 } })).toEqual(['sampling.repetitionPenalty']);
  });

  it("classifies every field of the generate request: a field added to the protocol must be named a feature here or said to change nothing", () => {
    const firstForm = ['id', 'promptIds', 'maxTokens', 'sampling', 'speculation', 'useDatastore', 'contributeToDatastore', 'trie'];
    // stopMatcher: which rules the stop strings were found by (a pool of others leaves them to the edge, which answers the same).
    const changesNothing = ['predictionIds', 'model', 'protocol', 'cacheSalt', 'tenant', 'stopMatcher'];
    const features = new Set<string>(POOL_FEATURES);
    for (const key of Object.keys(generateRequestSchema.shape)) {
      expect(firstForm.includes(key) || changesNothing.includes(key) || features.has(key), `generate field ${key}`).toBe(true);
    }
    const samplingFirstForm = ['temperature', 'topP', 'topK', 'seed'];
    for (const key of Object.keys(samplingSchema.shape)) {
      expect(samplingFirstForm.includes(key) || features.has(`sampling.${key}`), `sampling field ${key}`).toBe(true);
    }
  });
});

describe('featuresMissing', () => {
  it('is what a pool does not list; a pool that lists nothing (from before the list) honours none', () => {
    expect(featuresMissing([], undefined)).toEqual([]);
    expect(featuresMissing(['badWords', 'sampling.minP'], undefined)).toEqual(['badWords', 'sampling.minP']);
    expect(featuresMissing(['badWords', 'sampling.minP'], ['sampling.minP', 'ignoreEos'])).toEqual(['badWords']);
    expect(featuresMissing(['badWords'], [...POOL_FEATURES])).toEqual([]);
    // Not a list: nothing listed (a string's includes() would find a feature inside another's name).
    expect(featuresMissing(['logprobs'], 'promptLogprobs' as unknown as string[])).toEqual(['logprobs']);
  });
});
