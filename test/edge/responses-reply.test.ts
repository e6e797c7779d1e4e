import { describe, expect, it } from 'vitest';
import { inputItemsPage } from '../../edge/responses-reply';
import type { StoredResponse } from '../../edge/response-store';

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
    expect(all.data[0]).toEqual({ type: 'message', id: 'msg_2', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'b' }] });
    expect(all.data[3]).toMatchObject({ content: [{ type: 'input_text', text: 'a' }] });
    expect(all).toMatchObject({ object: 'list', first_id: 'msg_2', last_id: 'msg_1', has_more: false });
  });

  it('pages by limit and after, in either order', () => {
    expect(page('order=asc&limit=2')).toMatchObject({ data: [{ id: 'msg_1' }, { id: 'fc_1' }], has_more: true, last_id: 'fc_1' });
    expect(page('order=asc&limit=2&after=fc_1')).toMatchObject({ data: [{ id: 'fco_1' }, { id: 'msg_2' }], has_more: false });
    expect(page('after=msg_1')).toMatchObject({ data: [], first_id: null, has_more: false });
    expect(() => page('limit=0')).toThrow(/limit/);
    expect(() => page('order=up')).toThrow(/order/);
  });
});
