// The stored chat completions' routes' checks (list query, update body, messages page), and the completion a
// stream adds up to, against the whole reply the same choices make.
import { describe, expect, it } from 'vitest';
import { ChatCompletionStore, type StoredChatCompletion } from '../../edge/chat-completion-store';
import type { ChatRequest } from '../../edge/request-schema';
import { finishChunk, roleChunk, textChunk, toolCallChunk, usageChunk, wholeResponse, type ResponseMeta } from '../../edge/openai-format';
import { scopedKey } from '../../edge/kv-record';
import { StorageBudget } from '../../edge/storage-budget';
import { StorageMeter } from '../../edge/storage-meter';
import { keepChatCompletion, listQuery, messagesPage, metadataUpdate, withServedModel } from '../../edge/stored-chat-routes';
import { StreamedCompletion } from '../../edge/streamed-completion';
import { offUsage } from '../support/completion-usage';
import { workerdKv } from '../support/workerd-kv';
import { refusalOf } from '../support/refusal';

const workerd = workerdKv();

describe('listQuery', () => {
  it("reads the SDK's query: metadata[key]=value pairs, model, and paging ascending by default", () => {
    const q = listQuery(new URLSearchParams('metadata%5Bteam%5D=red&metadata%5Brun%5D=a%3Db&model=m&limit=5&after=chatcmpl-1'));
    expect(q).toEqual({ order: 'asc', limit: 5, after: 'chatcmpl-1', model: 'm', metadata: { team: 'red', run: 'a=b' } });
    expect(listQuery(new URLSearchParams(''))).toEqual({ order: 'asc', limit: 20, after: null, model: null, metadata: {} });
    expect(listQuery(new URLSearchParams('order=desc')).order).toBe('desc');
  });

  it('refuses bad paging and metadata with a 400 naming the parameter', () => {
    const refused = (text: string) => refusalOf(() => listQuery(new URLSearchParams(text)));
    expect(refused('limit=0')).toMatchObject({ status: 400, param: 'limit' });
    expect(refused('limit=101')).toMatchObject({ status: 400, param: 'limit' });
    expect(refused('limit=1e1')).toMatchObject({ status: 400, param: 'limit' });
    expect(refused('order=newest')).toMatchObject({ status: 400, param: 'order' });
    expect(refused('model=a&model=b')).toMatchObject({ status: 400, param: 'model' });
    expect(refused(`metadata[${'k'.repeat(65)}]=v`)).toMatchObject({ status: 400, param: `metadata[${'k'.repeat(64)}…]` });
    expect(refused(`metadata[k]=${'v'.repeat(513)}`)).toMatchObject({ status: 400, param: 'metadata[k]' });
    expect(refused('metadata[k]=1&metadata[k]=2')).toMatchObject({ status: 400, param: 'metadata[k]' });
    expect(refused('metadata=x')).toMatchObject({ status: 400, param: 'metadata' });
    expect(refused('metadata[__proto__]=x')).toMatchObject({ status: 400, param: 'metadata[__proto__]', message: expect.stringContaining('may not be __proto__') });
    // Empty values are mistakes, said so (`model=` was an empty 200; `after=` a 400 only once the whole index was read).
    for (const name of ['model', 'after', 'order', 'limit']) expect(refused(`${name}=`), name).toMatchObject({ status: 400, param: name, code: 'invalid_value' });
    const seventeen = Array.from({ length: 17 }, (_, i) => `metadata[k${i}]=v`).join('&');
    expect(refused(seventeen)).toMatchObject({ status: 400, param: 'metadata' });
    expect(listQuery(new URLSearchParams(seventeen.split('&').slice(1).join('&'))).metadata).toHaveProperty('k16', 'v');
  });

  it('takes as a filter any pair a completion could be stored with, counted the same way (review h126: 300 emoji were stored, then refused as a filter)', () => {
    const value = '😀'.repeat(300);
    expect(metadataUpdate({ metadata: { emo: value } })).toEqual({ emo: value });
    expect(listQuery(new URLSearchParams({ 'metadata[emo]': value })).metadata).toEqual({ emo: value });
    expect(refusalOf(() => listQuery(new URLSearchParams({ 'metadata[emo]': '😀'.repeat(513) })))).toMatchObject({ status: 400, param: 'metadata[emo]' });
  });
});

describe('the list of stored completions', () => {
  const stored = (id: string, metadata: Record<string, string>): StoredChatCompletion => ({
    id,
    created: 1_000,
    model: 'stories260K',
    completion: { id, object: 'chat.completion', model: 'stories260K' },
    metadata,
    messages: [],
    expiresAt: null,
  });
  const ids = (page: { data: object[] }) => page.data.map((c) => (c as { id: string }).id);

  it("filters by the model names a request's model takes: the alias default and the served name, each finding what was stored under the served name", async () => {
    const store = new ChatCompletionStore(workerd(), 'key-models', 0, 1 << 20);
    await store.put(stored('chatcmpl-1', {}));
    let asked = 0;
    const servedName = () => {
      asked++;
      return Promise.resolve('stories260K');
    };
    const listed = async (text: string) => ids(await store.list(await withServedModel(listQuery(new URLSearchParams(text)), servedName)));
    expect(await listed('model=default')).toEqual(['chatcmpl-1']);
    expect(asked).toBe(1);
    expect(await listed('model=stories260K')).toEqual(['chatcmpl-1']);
    expect(await listed('')).toEqual(['chatcmpl-1']);
    expect(await listed('model=another')).toEqual([]);
    // The served model is looked up (a pool's /v1/info, where not loaded yet) for the alias alone.
    expect(asked).toBe(1);
  });

  it('keeps an empty metadata value as a filter: OpenAI takes one as a value, and a completion stored with it is found by it', async () => {
    const store = new ChatCompletionStore(workerd(), 'key-empty', 0, 1 << 20);
    await store.put(stored('chatcmpl-empty', { tag: '' }));
    await store.put(stored('chatcmpl-full', { tag: 'x' }));
    expect(ids(await store.list(listQuery(new URLSearchParams('metadata[tag]='))))).toEqual(['chatcmpl-empty']);
  });
});

describe('metadataUpdate', () => {
  it("takes metadata alone, within OpenAI's bounds (16 pairs, keys of 64 characters, values of 512); null clears it", () => {
    expect(metadataUpdate({ metadata: { a: '1' } })).toEqual({ a: '1' });
    expect(metadataUpdate({ metadata: null })).toEqual({});
    expect(refusalOf(() => metadataUpdate({ metadata: { a: '1' }, temperature: 1 }))).toMatchObject({ status: 400, param: 'temperature' });
    expect(refusalOf(() => metadataUpdate({}))).toMatchObject({ status: 400, param: 'metadata' });
    expect(refusalOf(() => metadataUpdate([]))).toMatchObject({ status: 400 });
    expect(refusalOf(() => metadataUpdate({ metadata: { a: 1 } }))).toMatchObject({ status: 400, param: 'metadata.a' });
    expect(refusalOf(() => metadataUpdate({ metadata: { a: 'v'.repeat(513) } }))).toMatchObject({ status: 400, param: 'metadata.a' });
    expect(refusalOf(() => metadataUpdate({ metadata: { ['k'.repeat(65)]: 'v' } }))).toMatchObject({ status: 400 });
    const pairs = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']));
    expect(Object.keys(metadataUpdate({ metadata: pairs(16) }))).toHaveLength(16);
    expect(refusalOf(() => metadataUpdate({ metadata: pairs(17) }))).toMatchObject({ status: 400, param: 'metadata' });
    // A key a record would drop unseen, its value unchecked (review h135: a 200 that kept {}).
    expect(refusalOf(() => metadataUpdate(JSON.parse('{"metadata": {"__proto__": {"isAdmin": true}}}')))).toMatchObject({ status: 400, param: 'metadata', message: expect.stringContaining('__proto__') });
  });
});

describe('messagesPage', () => {
  const record: StoredChatCompletion = {
    id: 'chatcmpl-m',
    created: 1,
    model: 'm',
    completion: {},
    metadata: {},
    messages: [
      { role: 'system', content: 'Be brief.', id: 'chatcmpl-m-0' },
      { role: 'user', content: [{ type: 'text', text: 'Hello ' }, { type: 'text', text: 'there.' }], id: 'chatcmpl-m-1' },
      { role: 'assistant', content: 'Hi.', id: 'chatcmpl-m-2' },
    ],
    expiresAt: null,
  };

  it('lists the messages in the order given (desc reversed), each with its id, parts joined as content', () => {
    const page = messagesPage(record, new URLSearchParams(''));
    expect(page).toMatchObject({ object: 'list', first_id: 'chatcmpl-m-0', last_id: 'chatcmpl-m-2', has_more: false });
    expect(page.data[1]).toEqual({ role: 'user', id: 'chatcmpl-m-1', content: 'Hello there.', content_parts: [{ type: 'text', text: 'Hello ' }, { type: 'text', text: 'there.' }] });
    expect(page.data[0]).toEqual({ role: 'system', id: 'chatcmpl-m-0', content: 'Be brief.', content_parts: null });
    const first = messagesPage(record, new URLSearchParams('limit=2&order=desc'));
    expect(first.data.map((m) => m.id)).toEqual(['chatcmpl-m-2', 'chatcmpl-m-1']);
    expect(first.has_more).toBe(true);
    const next = messagesPage(record, new URLSearchParams(`limit=2&order=desc&after=${first.last_id}`));
    expect([next.data.map((m) => m.id), next.has_more]).toEqual([['chatcmpl-m-0'], false]);
    expect(refusalOf(() => messagesPage(record, new URLSearchParams('after=chatcmpl-x-9')))).toMatchObject({ status: 400, param: 'after' });
    expect(refusalOf(() => messagesPage({ ...record, messages: [], messagesNotKept: true }, new URLSearchParams('')))).toMatchObject({ status: 400, code: 'messages_not_stored' });
  });

  it("keeps the messages as sent: an assistant's tool_calls and a tool message's tool_call_id (which the schema does not read), a refusal part as refusal", () => {
    const body = { messages: [{ role: 'user' as const, content: 'Weather?' }, { role: 'assistant' as const, content: null }, { role: 'tool' as const, content: 'sunny' }] };
    const sent = [
      { role: 'user', content: 'Weather?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      // A client's own field beside OpenAI's: not kept, nor listed back (review h135).
      { role: 'tool', tool_call_id: 'call_1', content: 'sunny', x_trace: 'abc' },
    ];
    const store = new ChatCompletionStore(workerd(), 'key-t', 0, 1 << 20);
    return keepChatCompletion(store, body as unknown as ChatRequest, sent).keep({ id: 'chatcmpl-t', created: 1, model: 'm' }).then(async () => {
      const page = messagesPage((await store.get('chatcmpl-t'))!, new URLSearchParams(''));
      expect(page.data[1]).toMatchObject({ role: 'assistant', content: null, tool_calls: sent[1].tool_calls, id: 'chatcmpl-t-1' });
      expect(page.data[2]).toMatchObject({ role: 'tool', tool_call_id: 'call_1', content: 'sunny', id: 'chatcmpl-t-2' });
      expect(page.data[2]).not.toHaveProperty('x_trace');
      const refused = messagesPage({ ...record, messages: [{ role: 'assistant', content: [{ type: 'refusal', refusal: 'No.' }], id: 'r-0' }] }, new URLSearchParams(''));
      expect(refused.data[0]).toEqual({ role: 'assistant', id: 'r-0', content: '', content_parts: [], refusal: 'No.' });
    });
  });
});

describe('keepChatCompletion', () => {
  it('says what the record will hold at least before the generation (its messages as kept, its metadata), and charges what it writes: the record and its two index entries', async () => {
    const kv = workerd();
    const store = new ChatCompletionStore(kv, 'key-meter', 0, 1 << 20);
    const budget = new StorageBudget();
    const perDay = 1 << 20;
    const meter = new StorageMeter({ take: (bytes) => budget.takeAll('s', 'k', bytes, perDay, 0), charge: (bytes) => budget.charge('s', 'k', bytes, perDay, 0) });
    const body = { messages: [{ role: 'user' as const, content: 'é'.repeat(3_000) }], metadata: { topic: 'ü'.repeat(400) } };
    // A client's own field is not kept, nor counted.
    const sent = [{ ...body.messages[0], x_trace: 'abc'.repeat(1_000) }];
    const utf8 = (text: string): number => new TextEncoder().encode(text).byteLength;
    const { keep, inputBytes } = keepChatCompletion(store, body as unknown as ChatRequest, sent, meter);
    expect(inputBytes).toBe(utf8(JSON.stringify([body.messages[0]])) + utf8(JSON.stringify(body.metadata)));
    await keep({ id: 'chatcmpl-m', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'Hi.' }, finish_reason: 'stop' }] });
    const recordName = await scopedKey('chatcmpl', 'key-meter', 'chatcmpl-m');
    const { keys: entries } = await kv.list({ prefix: await scopedKey('chatcmplidx', 'key-meter', 'index') });
    expect(entries).toHaveLength(2);
    const charged = utf8((await kv.get(recordName))!) + entries.reduce((sum, key) => sum + utf8(JSON.stringify(key.metadata)), 0);
    expect(budget.take('s', 'k', perDay - charged, perDay, 0)).toBeNull();
    expect(budget.take('s', 'k', 1, perDay, 0)).not.toBeNull();
  });
});

describe('StreamedCompletion', () => {
  const meta: ResponseMeta = { id: 'chatcmpl-s', created: 7, model: 'm', fingerprint: 'fp_0123456789', kind: 'chat', includeUsage: true };
  const usage = offUsage(4, 3);
  const text = (t: string) => [{ text: t, source: 'model' as const }];

  it('adds the chunks of every choice up to the whole reply the same choices make', () => {
    const streamed = new StreamedCompletion();
    for (const chunk of [
      roleChunk(meta, 0),
      roleChunk(meta, 1),
      textChunk(meta, text('Once '), 0),
      textChunk(meta, text('The '), 1),
      textChunk(meta, text('upon.'), 0),
      finishChunk(meta, 'stop', 0, '.'),
      textChunk(meta, text('end'), 1),
      finishChunk(meta, 'length', 1),
      usageChunk(meta, usage),
    ]) {
      streamed.add(chunk);
    }
    const whole = wholeResponse(meta, [
      { text: 'Once upon.', finishReason: 'stop', stopReason: '.', tokens: [] },
      { text: 'The end', finishReason: 'length', stopReason: null, tokens: [] },
    ], usage);
    expect(streamed.completion(usage)).toEqual(whole);
  });

  it("puts a call's pieces together by index, its id and name from its first piece, content null", () => {
    const calls: ResponseMeta = { ...meta, toolCalls: { kind: 'named', name: 'get_weather' } };
    const streamed = new StreamedCompletion();
    streamed.add(roleChunk(calls, 0));
    streamed.add(toolCallChunk(calls, [{ index: 0, id: 'call_1', name: 'get_weather', arguments: '{"city":' }], 0));
    streamed.add(toolCallChunk(calls, [{ index: 0, arguments: '"Oslo"}' }], 0));
    streamed.add(finishChunk(calls, 'tool_calls', 0));
    expect(streamed.completion(usage)).toMatchObject({
      object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } }] }, finish_reason: 'tool_calls' }],
      usage,
    });
    expect(new StreamedCompletion().completion(usage)).toBeNull();
  });
});
