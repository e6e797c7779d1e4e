/** A stored response (the Responses API's `store`) as the edge writes one, for the store's and the references' tests. */
import { finishedResponse, itemId, outputItems, startedResponse } from '../../edge/responses-format';
import { parseResponsesBody } from '../../edge/responses-request';
import type { StoredResponse } from '../../edge/response-store';

const usage = {
  prompt_tokens: 1,
  completion_tokens: 1,
  total_tokens: 2,
  prompt_tokens_details: { cached_tokens: 0 },
  speculation: { method: 'off' as const, drafts: 0, draft_tokens: 0, accepted_tokens: 0, steps: 1, mean_acceptance_length: 1, edge_accepted_tokens: 0, edge_trie_bytes: 0 },
};

/** The record of response `id` that answered `text`, given one user message "Hi". */
export function storedRecord(id: string, text = 'Hello.'): StoredResponse {
  const { body, tools } = parseResponsesBody({ model: 'm', input: 'Hi' });
  const response = finishedResponse(startedResponse(id, 'm', body, tools), outputItems(id, null, text, 'stop', []), 'stop', usage);
  return { response, inputItems: [{ role: 'user', content: 'Hi', id: itemId('msg', id) }], conversation: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: text }], callIds: [] };
}
