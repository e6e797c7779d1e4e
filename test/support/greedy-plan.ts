import type { CompletionPlan } from '../../edge/completion-run';
import { samplingSchema } from '../../shared/protocol';

/**
 * A greedy completion's plan as the edge makes one with nothing else asked: no stops, masks, user cache, trie,
 * logprobs or echo; `name` is its cache salt and tenant. Tests that run a CompletionRun on real pools change what they
 * are about in `changes`.
 */
export function greedyPlan(id: string, promptIds: number[], name: string, changes: Partial<CompletionPlan> = {}): CompletionPlan {
  return {
    id,
    promptIds,
    maxTokens: 30,
    sampling: samplingSchema.parse({ temperature: 0 }),
    speculate: false,
    stops: [],
    ignoreEos: false,
    stopTokenIds: [],
    minTokens: 0,
    includeStop: false,
    allowedTokenIds: null,
    badWords: [],
    choices: null,
    userCache: null,
    trie: null,
    trieFollows: false,
    logprobs: null,
    saveToCache: false,
    echo: null,
    cacheSalt: name,
    tenant: name,
    contributeToDatastore: false,
    ...changes,
  };
}
