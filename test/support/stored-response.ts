/** A stored response (the Responses API's `store`) as the edge writes one, for the store's and the references' tests. */
import { finishedResponse, itemId, outputItems, startedResponse } from '../../edge/responses-format';
import { parseResponsesBody } from '../../edge/responses-request';
import type { StoredResponse } from '../../edge/response-store';
import { offUsage } from './completion-usage';

const usage = offUsage(1, 1);

/** The record of response `id` that answered `text`, given one user message "Hi". */
export function storedRecord(id: string, text = 'Hello.'): StoredResponse {
  const { body, tools } = parseResponsesBody({ model: 'm', input: 'Hi' });
  const response = finishedResponse(startedResponse(id, 'm', body, tools), outputItems(id, null, text, 'stop', []), 'stop', usage);
  return { response, inputItems: [{ role: 'user', content: 'Hi', id: itemId('msg', id) }], conversation: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: text }], callIds: [] };
}
