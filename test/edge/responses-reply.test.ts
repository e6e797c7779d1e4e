import { describe, expect, it } from 'vitest';
import { failedResponse, functionCallItem, itemId, responseId } from '../../edge/responses-format';
import { inputItemsPage, planResponse } from '../../edge/responses-reply';
import { ResponseStore, type StoredResponse } from '../../edge/response-store';
import { storedRecord } from '../support/stored-response';
import { workerdKv } from '../support/workerd-kv';
import { refusalOfAsync } from '../support/refusal';

const workerd = workerdKv();

const stored = {
  inputItems: [
    { role: 'user', content: 'a', id: 'msg_1' },
    { type: 'function_call', call_id: 'call_1', name: 'f', arguments: '{}', id: 'fc_1' },
    { type: 'function_call_output', call_id: 'call_1', output: 'ok', id: 'fco_1' },
    { role: 'assistant', content: 'b', id: 'msg_2' },
  ],
} as unknown as StoredResponse;

const page = (query: string) => inputItemsPage(stored, new URLSearchParams(query)) as { data: Array<{ id: string }>; first_id: string | null; last_id: string | null; has_more: boolean };

describe('input_items pages', () => {
  it('lists newest first by default, as OpenAI lists them, with text as parts', () => {
    const all = page('');
    expect(all.data.map((i) => i.id)).toEqual(['msg_2', 'fco_1', 'fc_1', 'msg_1']);
    expect(all.data[0]).toEqual({ type: 'message', id: 'msg_2', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'b', annotations: [] }] });
    expect(all.data[3]).toMatchObject({ content: [{ type: 'input_text', text: 'a' }] });
    expect(all).toMatchObject({ object: 'list', first_id: 'msg_2', last_id: 'msg_1', has_more: false });
  });

  it('pages by limit and after, in either order', () => {
    expect(page('order=asc&limit=2')).toMatchObject({ data: [{ id: 'msg_1' }, { id: 'fc_1' }], has_more: true, last_id: 'fc_1' });
    expect(page('order=asc&limit=2&after=fc_1')).toMatchObject({ data: [{ id: 'fco_1' }, { id: 'msg_2' }], has_more: false });
    expect(page('after=msg_1')).toMatchObject({ data: [], first_id: null, has_more: false });
    expect(() => page('limit=0')).toThrow(/limit/);
    expect(() => page('order=up')).toThrow(/order/);
    // Strictly: a repeated parameter, and a limit that is not digits, are refused (they were read loosely).
    expect(() => page('limit=1&limit=2')).toThrow(/limit is given 2 times/);
    for (const limit of ['1e1', '%201', '2.0']) expect(() => page(`limit=${limit}`), limit).toThrow(/limit must be an integer/);
  });
});

describe('a chain from a stored response (workerd KV)', () => {
  const refusal = (store: ResponseStore, body: object) => refusalOfAsync(planResponse({ model: 'm', ...body }, store, responseId('cdcdcdcdcdcdcdcdcdcdcdcd')));

  it('is refused from a failed response, by name and with its error', async () => {
    const store = new ResponseStore(workerd(), 'key-f', 0, 1 << 20);
    const id = responseId('efefefefefefefefefefefef');
    const failed = storedRecord(id, 'Once upon');
    failed.response = failedResponse(failed.response, failed.response.output, { code: 'pool_unavailable', message: 'every pool is gone' });
    expect(await store.put(failed)).toBe(true);
    expect((await store.get(id))?.response).toMatchObject({ status: 'failed', error: { code: 'pool_unavailable' } });
    expect((await refusal(store, { previous_response_id: id, input: 'more' })).toBody().error).toMatchObject({
      param: 'previous_response_id',
      message: expect.stringContaining('failed (every pool is gone)'),
    });
  });

  it("answers each of the previous response's calls, or is OpenAI's 400 naming the one left", async () => {
    const store = new ResponseStore(workerd(), 'key-c', 0, 1 << 20);
    const id = responseId('abcdefabcdefabcdefabcdef');
    const called = storedRecord(id);
    called.response.output = [functionCallItem(itemId('fc', id), 'call_a', 'f', '{}', 'completed'), functionCallItem(itemId('fc', id), 'call_b', 'f', '{}', 'completed')];
    called.callIds = ['call_a', 'call_b'];
    expect(await store.put(called)).toBe(true);
    expect((await refusal(store, { previous_response_id: id, input: 'and?' })).toBody().error).toMatchObject({ param: 'input', message: 'No tool output found for function call call_a.' });
    const answer = (call: string) => ({ type: 'function_call_output', call_id: call, output: 'ok' });
    expect((await refusal(store, { previous_response_id: id, input: [answer('call_b')] })).toBody().error).toMatchObject({ message: 'No tool output found for function call call_a.' });
    const plan = await planResponse({ model: 'm', previous_response_id: id, input: [answer('call_b'), answer('call_a')] }, store, responseId('cdcdcdcdcdcdcdcdcdcdcdcd'));
    expect(plan.translated.callIds).toEqual(['call_a', 'call_b']);
  });
});
