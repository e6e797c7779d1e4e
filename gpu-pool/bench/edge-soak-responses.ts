/**
 * The edge soak's Responses API traffic (`POST /v1/responses`): random valid
 * bodies (input as a string or items, a function call and its output among
 * them, instructions, sampling, text.format, a function tool forced, store,
 * stream), a quarter of them cut off by their client; some sent with
 * speculation off and auto at once; a stored one chained from (by its id,
 * or by item_references to its output) and read back, one not stored a 404; a turn in a conversation, its items
 * then the conversation's last; and broken bodies that must be a 400 naming their field. What it checks: soak-responses-checks.ts.
 */
import type { SoakReply, SoakSendOptions } from './soak-request';
import { cutReason } from './soak-request';
import { refusalProblem, structuredOf, structuredProblem, toolCallsProblem, type ToolChoice } from './soak-checks';
import { responseChoice, responseProblem, responseSaid, responseStreamProblem, type ReadResponse } from './soak-responses-checks';
import type { SoakTally } from './soak-tally';

type Body = Record<string, unknown>;

/** What the Responses traffic borrows from the edge soak: its draws, its sends and its tally. */
export interface ResponsesSoakContext {
  model: string;
  maxTokens: number;
  int: (n: number) => number;
  pick: <T>(items: readonly T[]) => T;
  /** A random user text. */
  text: () => string;
  post: (path: string, body: string, options?: SoakSendOptions) => Promise<SoakReply>;
  get: (path: string) => Promise<SoakReply>;
  /** DELETE of a path of the edge, with the soak's key. */
  remove: (path: string) => Promise<SoakReply>;
  tally: SoakTally;
  /** A 5xx other than busy, or a 429 without Retry-After: a violation. */
  checkStatus: (what: string, reply: SoakReply, sent: string) => void;
  /** The schema the soak's JSON outputs follow. */
  schema: object;
  /** The users a request may name (soak-user-caches.ts). */
  users: readonly string[];
}

/** Flat function tools, as the Responses API spells them: one with parameters, one with none. */
const TOOLS = [
  { type: 'function', name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 24 }, days: { type: 'integer', minimum: 1, maximum: 7 }, country: { type: 'string', pattern: '^[A-Z]+$', minLength: 2, maxLength: 2 } }, required: ['city', 'days'] } },
  { type: 'function', name: 'ping' },
] as const;
/** The same tools as chat's, for toolCallsProblem. */
const CHAT_TOOLS = TOOLS.map((t) => ({ function: { name: t.name, parameters: 'parameters' in t ? t.parameters : undefined } }));

/** A JSON object's string field, or null (no JSON, no object, no such string). */
function stringField(text: string, name: string): string | null {
  try {
    const value = (JSON.parse(text) as Record<string, unknown> | null)?.[name];
    return typeof value === 'string' ? value : null;
  } catch {
    return null;
  }
}

/** The ids of a list's `data`, or null where the text is no such list. */
function idsOf(text: string): string[] | null {
  try {
    const data = (JSON.parse(text) as { data?: unknown } | null)?.data;
    if (!Array.isArray(data)) return null;
    const ids = data.map((item) => (item as { id?: unknown } | null)?.id);
    return ids.every((id): id is string => typeof id === 'string') ? ids : null;
  } catch {
    return null;
  }
}

export function responsesAction(ctx: ResponsesSoakContext): () => Promise<void> {
  const { int, pick, tally } = ctx;

  /** An input item: a message of any role, its content a string or text parts. */
  const message = (): Body => {
    const role = pick(['user', 'user', 'assistant', 'system', 'developer']);
    const content = int(3) === 0 ? [{ type: role === 'assistant' ? 'output_text' : 'input_text', text: ctx.text() }] : ctx.text();
    return { ...(int(2) === 0 ? { type: 'message' } : {}), role, content };
  };

  const validBody = (): Body => {
    const body: Body = { model: ctx.model, max_output_tokens: 1 + int(ctx.maxTokens) };
    if (int(2) === 0) body.input = ctx.text();
    else {
      const items = Array.from({ length: 1 + int(3) }, message);
      // A call made and answered, before the last message.
      if (int(4) === 0) {
        const call = `call_soak${int(1000)}`;
        items.splice(items.length - 1, 0, { type: 'function_call', call_id: call, name: 'get_weather', arguments: '{"city": "Paris", "days": 2}' }, { type: 'function_call_output', call_id: call, output: pick(['sunny', '{"temp": 21}']) });
      }
      body.input = items;
    }
    if (int(3) === 0) body.instructions = ctx.text();
    if (int(3) !== 0) {
      body.temperature = pick([0, 0.5, 0.8, 1, 1.3]);
      body.seed = int(1e6);
    } else body.temperature = 0;
    if (int(3) === 0) body.top_p = pick([0.5, 0.9, 1]);
    if (int(6) === 0) body.text = { format: int(2) === 0 ? { type: 'json_schema', name: 'person', schema: ctx.schema, strict: true } : { type: 'json_object' } };
    else if (int(6) === 0) {
      body.tools = TOOLS;
      // "auto" sent, or by default.
      const choice = pick<string | undefined>(['required', 'auto', undefined, 'named']);
      if (choice !== undefined) body.tool_choice = choice === 'named' ? { type: 'function', name: pick(TOOLS).name } : choice;
      if (int(2) === 0) body.parallel_tool_calls = false;
    }
    if (int(3) !== 0) body.store = int(2) === 0;
    if (int(2) === 0) body.stream = true;
    if (int(6) === 0) body.user = ctx.users[int(ctx.users.length)];
    return body;
  };

  /** The reply's Response object (whole, or a stream's last), checked; null (counted or a violation) where there is none to go on with. */
  const finished = (what: string, reply: SoakReply, body: Body, sent: string, asked: { previousResponseId?: string } = {}): ReadResponse | null => {
    let response: ReadResponse | null;
    if (body.stream === true) {
      const read = responseStreamProblem(reply.text);
      if (read.problem) {
        tally.violate(`${what}: ${read.problem} (sent ${sent.slice(0, 2000)})`);
        return null;
      }
      response = read.response;
    } else {
      try {
        response = JSON.parse(reply.text) as ReadResponse;
      } catch {
        tally.violate(`${what}: a 200 that is not JSON: ${reply.text.slice(0, 200)} (sent ${sent.slice(0, 200)})`);
        return null;
      }
    }
    const problem = responseProblem(response, {
      model: ctx.model,
      store: body.store !== false,
      previousResponseId: asked.previousResponseId ?? null,
      maxOutputTokens: (body.max_output_tokens as number | undefined) ?? null,
    });
    if (problem) {
      tally.violate(`${what}: a 200 that is no Response object as promised: ${problem} (sent ${sent.slice(0, 2000)})`);
      return null;
    }
    return response;
  };

  /** text.format's and a forced tool's promises on a finished response. */
  const checkOutput = (what: string, response: ReadResponse, body: Body, sent: string): void => {
    const format = (body.text as { format?: { type: string; schema?: unknown } } | undefined)?.format;
    if (format) {
      tally.count(`responses checked ${format.type}`);
      const check = structuredOf({ response_format: format.type === 'json_schema' ? { type: 'json_schema', json_schema: { schema: format.schema } } : { type: 'json_object' } })!;
      const problem = structuredProblem(responseChoice(response), check, false);
      if (problem) tally.violate(`${what}: text.format ${format.type}: ${problem} (sent ${sent.slice(0, 2000)})`);
    }
    if (body.tools !== undefined) {
      const choice = (body.tool_choice ?? 'auto') as 'required' | 'auto' | { name: string };
      tally.count('responses checked tool calls');
      const chatChoice: ToolChoice = typeof choice === 'string' ? choice : { type: 'function', function: { name: choice.name } };
      const called = choice === 'required' || (choice === 'auto' && response.output.some((item) => item.type === 'function_call'));
      const problem = toolCallsProblem(responseChoice(response, called ? 'tool_calls' : 'stop'), chatChoice, CHAT_TOOLS, body.parallel_tool_calls === false, false);
      if (problem) tally.violate(`${what}: tool calls: ${problem} (sent ${sent.slice(0, 2000)})`);
    }
  };

  /** A stored response is read back as it was and chained from (its calls answered); one not stored is a 404. */
  const followUp = async (response: ReadResponse): Promise<void> => {
    const read = await ctx.get(`/v1/responses/${response.id}`);
    if (response.store) {
      if (read.status !== 200) {
        ctx.checkStatus('responses retrieve', read, response.id);
        if (read.status !== 429 && read.status !== 503 && read.status !== 0) tally.violate(`responses: GET of a stored response ${response.id} got ${read.status}: ${read.text.slice(0, 200)}`);
        return;
      }
      let stored: ReadResponse | null = null;
      try {
        stored = JSON.parse(read.text) as ReadResponse;
      } catch {
        stored = null;
      }
      const same = stored !== null && stored.id === response.id && stored.status === response.status && JSON.stringify(stored.output) === JSON.stringify(response.output);
      tally.count(same ? 'responses retrieved same' : 'responses retrieved different');
      if (!same) tally.violate(`responses: GET ${response.id} returned another response: ${read.text.slice(0, 400)}, the reply's ${JSON.stringify(response.output).slice(0, 400)}`);
      const calls = response.output.filter((item) => item.type === 'function_call');
      const answers = calls.length > 0 ? calls.map((call) => ({ type: 'function_call_output', call_id: call.call_id, output: 'done' })) : [{ role: 'user', content: ctx.text() }];
      // Chained by id, or (as the AI SDK does) by item_references to its output items; some with truncation "auto".
      const byReference = int(3) === 0;
      const body: Body = byReference
        ? { model: ctx.model, input: [...response.output.map((item) => ({ type: 'item_reference', id: item.id })), ...answers], max_output_tokens: 1 + int(16), temperature: 0, store: int(2) === 0 }
        : { model: ctx.model, previous_response_id: response.id, input: answers, max_output_tokens: 1 + int(16), temperature: 0, store: int(2) === 0 };
      if (int(3) === 0) body.truncation = 'auto';
      const sent = JSON.stringify(body);
      const chained = await ctx.post('/v1/responses', sent);
      tally.count(`responses chained${byReference ? ' by reference' : ''} ${chained.status}`);
      if (chained.status === 200) finished('responses chain', chained, body, sent, byReference ? {} : { previousResponseId: response.id });
      else {
        ctx.checkStatus('responses chain', chained, sent);
        if (chained.status !== 429 && chained.status !== 503 && chained.status !== 0) tally.violate(`responses: a chain from ${response.id} got ${chained.status}: ${chained.text.slice(0, 200)} (sent ${sent.slice(0, 2000)})`);
      }
    } else {
      tally.count(`responses not stored read ${read.status}`);
      if (read.status !== 404 && read.status !== 429 && read.status !== 0) tally.violate(`responses: GET of a response not stored (${response.id}) got ${read.status}, not 404: ${read.text.slice(0, 200)}`);
    }
  };

  /** One request, a quarter of them cut off by their client; a finished one checked, then followed up. */
  const single = async (): Promise<void> => {
    const body = validBody();
    const sent = JSON.stringify(body);
    const cut = int(4) === 0;
    const reply = await ctx.post('/v1/responses', sent, cut ? { hangUpAfterMs: int(60) } : {});
    tally.count(`responses ${reply.status}`);
    if (reply.status === 200 && (!cut || reply.complete)) {
      const response = finished('responses', reply, body, sent);
      if (!response) return;
      checkOutput('responses', response, body, sent);
      await followUp(response);
    } else if (reply.status !== 0 && reply.status !== 200) {
      ctx.checkStatus('responses', reply, sent);
      // Every field in range, every call answered: refused only when busy.
      if (reply.status >= 400 && reply.status < 500 && reply.status !== 429) tally.violate(`responses: a valid body got ${reply.status}: ${reply.text.slice(0, 300)} (sent ${sent.slice(0, 2000)})`);
    } else if (reply.status === 0 && !cut) tally.violate(`responses: ${cutReason(reply)} (sent ${sent.slice(0, 200)})`);
  };

  /** The same body with speculation off and auto: the same status, text and calls. */
  const pair = async (): Promise<void> => {
    const body = validBody();
    const off = JSON.stringify({ ...body, speculation: 'off' });
    const auto = JSON.stringify({ ...body, speculation: 'auto' });
    const [a, b] = await Promise.all([ctx.post('/v1/responses', off), ctx.post('/v1/responses', auto)]);
    for (const [reply, sent] of [[a, off], [b, auto]] as const) {
      if (reply.status === 0) tally.violate(`responses pair: ${cutReason(reply)} (sent ${sent.slice(0, 200)})`);
    }
    if (a.status !== 200 || b.status !== 200) {
      tally.count('responses pair refused');
      ctx.checkStatus('responses pair', a, off);
      ctx.checkStatus('responses pair', b, auto);
      return;
    }
    const x = finished('responses pair', a, body, off);
    const y = finished('responses pair', b, body, auto);
    if (!x || !y) return;
    checkOutput('responses pair', x, body, off);
    checkOutput('responses pair', y, body, auto);
    const same = responseSaid(x) === responseSaid(y);
    tally.count(same ? 'responses pair same' : 'responses pair different');
    if (!same) tally.violate(`responses: speculation changed the answer to ${off.slice(0, 4000)}: off ${responseSaid(x).slice(0, 400)}, auto ${responseSaid(y).slice(0, 400)}`);
  };

  /** A broken body: a 400 naming the field (chat's max_tokens, an unknown item type, an output for no call, ...). */
  const broken = async (): Promise<void> => {
    const body = validBody();
    delete body.tools;
    delete body.tool_choice;
    delete body.parallel_tool_calls;
    const items = Array.from({ length: 1 + int(2) }, message);
    const at = items.length;
    const [param, fields]: [string, Body] = pick<[string, Body]>([
      ['max_tokens', { max_tokens: 1 + int(50) }],
      ['max_completion_tokens', { max_completion_tokens: 1 + int(50) }],
      ['messages', { messages: [{ role: 'user', content: ctx.text() }] }],
      ['response_format', { response_format: { type: 'json_object' } }],
      ['stop', { stop: ['.'] }],
      [`input.${at}.type`, { input: [...items, { type: pick(['web_search_call', 'reasoning', 'file_search_call']), id: 'x' }] }],
      [`input.${at}.call_id`, { input: [...items, { type: 'function_call_output', call_id: `call_none${int(1000)}`, output: 'x' }] }],
      ['tools.0.type', { tools: [{ type: 'web_search' }] }],
      ['include.0', { include: ['file_search_call.results'] }],
      // Background is served, streamed or not; without the store, not.
      ['background', int(2) === 0 ? { background: true, stream: true, store: false } : { background: true, store: false }],
    ]);
    const sent = JSON.stringify({ ...body, ...fields });
    const reply = await ctx.post('/v1/responses', sent);
    tally.count(`responses refused ${param.replace(/\.\d+\./, '.<i>.')} ${reply.status}`);
    ctx.checkStatus('responses refusal', reply, sent);
    const problem = refusalProblem(reply.status, reply.text, param);
    if (problem) tally.violate(`responses refusal of ${param}: ${problem} (sent ${sent.slice(0, 300)})`);
  };

  /**
   * A background response: answered queued, then polled to its end, which
   * is a Response as a foreground one is; a third cancelled at once, whose
   * end must be what the cancel answered (cancelled, or the end it had
   * already reached), never another.
   */
  const background = async (): Promise<void> => {
    const body = validBody();
    // Half streamed: the events as it runs, then streamed again from one of them.
    const streamed = int(2) === 0;
    delete body.stream;
    if (streamed) body.stream = true;
    // Stored (it is polled from the store), and no user: a cancelled run merges nothing, which the user-cache ledger would count as lost.
    delete body.store;
    delete body.user;
    body.background = true;
    const sent = JSON.stringify(body);
    const reply = await ctx.post('/v1/responses', sent);
    tally.count(`responses background${streamed ? ' stream' : ''} ${reply.status}`);
    if (reply.status !== 200) {
      ctx.checkStatus('responses background', reply, sent);
      if (reply.status >= 400 && reply.status < 500 && reply.status !== 429) tally.violate(`responses: a valid background body got ${reply.status}: ${reply.text.slice(0, 300)} (sent ${sent.slice(0, 2000)})`);
      return;
    }
    let queued: { id?: unknown; status?: unknown; background?: unknown };
    if (streamed) {
      const checked = await backgroundStreamProblem(reply.text, sent);
      if (checked === null) return;
      queued = checked;
    } else {
      try {
        queued = JSON.parse(reply.text) as typeof queued;
      } catch {
        tally.violate(`responses background: a 200 that is not JSON: ${reply.text.slice(0, 200)}`);
        return;
      }
    }
    if (queued.status !== 'queued' || queued.background !== true || typeof queued.id !== 'string') {
      tally.violate(`responses background: answered ${reply.text.slice(0, 300)}, not a queued background response (sent ${sent.slice(0, 2000)})`);
      return;
    }
    const id = queued.id;
    // A sixth deleted at once: its run must store nothing after the delete, however it ends.
    if (int(6) === 0) {
      await deletedStaysGone(id);
      return;
    }
    let cancelAnswer: string | null = null;
    if (int(3) === 0) {
      const cancel = await ctx.post(`/v1/responses/${id}/cancel`, '');
      tally.count(`responses background cancel ${cancel.status}`);
      if (cancel.status === 200) {
        try {
          cancelAnswer = (JSON.parse(cancel.text) as { status: string }).status;
        } catch {
          tally.violate(`responses background: cancel of ${id} answered a 200 that is not JSON: ${cancel.text.slice(0, 200)}`);
          return;
        }
      }
      else ctx.checkStatus('responses background cancel', cancel, id);
    }
    // Polled to its end (the edge's deadline is 25 s by default; a minute more before a dead run reads failed).
    const until = Date.now() + 100_000;
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const read = await ctx.get(`/v1/responses/${id}`);
      if (read.status !== 200) {
        ctx.checkStatus('responses background poll', read, id);
        if (read.status !== 429 && read.status !== 503 && read.status !== 0) {
          tally.violate(`responses background: GET ${id} got ${read.status}: ${read.text.slice(0, 200)}`);
          return;
        }
        continue;
      }
      let polled: { status: string; error?: { code?: string; message?: string } | null };
      try {
        polled = JSON.parse(read.text) as typeof polled;
      } catch {
        tally.violate(`responses background: GET ${id} answered a 200 that is not JSON: ${read.text.slice(0, 200)}`);
        return;
      }
      if (polled.status === 'queued' || polled.status === 'in_progress') {
        if (Date.now() > until) {
          tally.violate(`responses background: ${id} still ${polled.status} 100 s after it was queued (sent ${sent.slice(0, 2000)})`);
          return;
        }
        continue;
      }
      tally.count(`responses background ended ${polled.status}`);
      if (cancelAnswer !== null && polled.status !== cancelAnswer) {
        tally.violate(`responses background: cancel of ${id} answered ${cancelAnswer}, and it ended ${polled.status}`);
      } else if (polled.status === 'failed') {
        // A pool busy or gone mid-run is stored failed, as a foreground request gets its 503; an internal error is not.
        tally.count(`responses background failed ${polled.error?.code ?? 'no code'}`);
        if (!polled.error?.code || polled.error.code === 'internal_error') tally.violate(`responses background: ${id} failed: ${read.text.slice(0, 400)} (sent ${sent.slice(0, 2000)})`);
      } else if (polled.status !== 'cancelled') {
        // Polled as JSON, whether it was made with a stream or not.
        const { stream: _stream, ...polledBody } = body;
        const response = finished('responses background', read, polledBody, sent);
        if (response) checkOutput('responses background', response, body, sent);
      }
      return;
    }
  };

  /**
   * A background response deleted while it may run: the delete answered,
   * then a 404 at every read for the next 6 s, past the end of the soak's
   * short runs and their end's write (a run that wrote its end over the
   * delete brought it back, review h115).
   */
  const deletedStaysGone = async (id: string): Promise<void> => {
    const removed = await ctx.remove(`/v1/responses/${id}`);
    tally.count(`responses background delete ${removed.status}`);
    if (removed.status !== 200) {
      ctx.checkStatus('responses background delete', removed, id);
      if (removed.status !== 429 && removed.status !== 503 && removed.status !== 0) tally.violate(`responses background: DELETE ${id} got ${removed.status}: ${removed.text.slice(0, 200)}`);
      return;
    }
    const until = Date.now() + 6_000;
    while (Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const read = await ctx.get(`/v1/responses/${id}`);
      if (read.status === 200) {
        tally.violate(`responses background: ${id} was deleted, and a read found it again: ${read.text.slice(0, 200)}`);
        return;
      }
      if (read.status !== 404) ctx.checkStatus('responses background read after delete', read, id);
    }
    tally.count('responses background deleted stayed gone');
  };

  /**
   * A background stream as its creator read it: its events whole and in
   * order (queued first), and the same again from the store after one of
   * them (GET ?stream=true&starting_after). Its created response, or null
   * where it is not what it should be (a violation) or failed.
   */
  const backgroundStreamProblem = async (text: string, sent: string): Promise<{ id?: unknown; status?: unknown; background?: unknown } | null> => {
    const frames = text.split('\n\n').filter((block) => block.split('\n').some((line) => line !== '' && !line.startsWith(':')));
    if (text.includes('event: response.failed')) {
      // A pool busy or gone mid-run is told failed, as a foreground stream tells it; an internal error is not.
      tally.count('responses background stream failed');
      if (text.includes('"code":"internal_error"')) tally.violate(`responses background stream: failed: ${text.slice(-400)} (sent ${sent.slice(0, 2000)})`);
      return null;
    }
    const read = responseStreamProblem(text);
    if (read.problem) {
      tally.violate(`responses background stream: ${read.problem} (sent ${sent.slice(0, 2000)})`);
      return null;
    }
    const types = frames.slice(0, 3).map((frame) => /^event: (.*)$/m.exec(frame)?.[1]);
    if (types.join() !== 'response.created,response.queued,response.in_progress') {
      tally.violate(`responses background stream: it starts ${types.join(', ')}, not created, queued, in_progress (sent ${sent.slice(0, 2000)})`);
      return null;
    }
    const created = JSON.parse(frames[0].slice(frames[0].indexOf('data: ') + 6)) as { response: { id: string; status: string; background: boolean } };
    const after = int(frames.length) - 1;
    const again = await ctx.get(`/v1/responses/${created.response.id}?stream=true${after >= 0 ? `&starting_after=${after}` : ''}`);
    tally.count(`responses background stream again ${again.status}`);
    if (again.status !== 200) {
      ctx.checkStatus('responses background stream again', again, created.response.id);
      if (again.status !== 429 && again.status !== 503 && again.status !== 0) tally.violate(`responses background stream: GET ${created.response.id}?stream=true got ${again.status}: ${again.text.slice(0, 200)}`);
    } else {
      const expected = frames.slice(after + 1).map((frame) => `${frame}\n\n`).join('');
      const got = again.text.split('\n\n').filter((block) => block.split('\n').some((line) => line !== '' && !line.startsWith(':'))).map((frame) => `${frame}\n\n`).join('');
      if (got !== expected) tally.violate(`responses background stream: streamed again after ${after}, it sent ${JSON.stringify(got.slice(0, 300))}, not the ${frames.length - after - 1} events its creator got after it: ${JSON.stringify(expected.slice(0, 300))}`);
    }
    return { ...created.response, status: 'queued' };
  };

  /** A conversation's item ids, oldest first; null (counted, or a violation) where they cannot be read. */
  const conversationItems = async (id: string): Promise<string[] | null> => {
    const listed = await ctx.get(`/v1/conversations/${id}/items?order=asc&limit=100`);
    if (listed.status !== 200) {
      ctx.checkStatus('responses conversation items', listed, id);
      if (listed.status !== 429 && listed.status !== 503 && listed.status !== 0) tally.violate(`responses conversation: items of ${id} got ${listed.status}: ${listed.text.slice(0, 200)}`);
      return null;
    }
    const ids = idsOf(listed.text);
    if (ids === null) tally.violate(`responses conversation: items of ${id} are no list of items: ${listed.text.slice(0, 200)}`);
    return ids;
  };

  /** A turn in a conversation: once it ends (completed or incomplete), its input and then its output items are the conversation's last; deleted, the conversation is gone. */
  const conversation = async (): Promise<void> => {
    const opening = int(2) === 0 ? { items: [{ type: 'message', role: 'user', content: ctx.text() }] } : {};
    const created = await ctx.post('/v1/conversations', JSON.stringify({ metadata: { soak: 'yes' }, ...opening }));
    tally.count(`responses conversation created ${created.status}`);
    if (created.status !== 200) {
      ctx.checkStatus('responses conversation', created, 'create');
      if (created.status !== 429 && created.status !== 503 && created.status !== 0) tally.violate(`responses conversation: create got ${created.status}: ${created.text.slice(0, 200)}`);
      return;
    }
    const id = stringField(created.text, 'id');
    if (id === null || !id.startsWith('conv_')) {
      tally.violate(`responses conversation: create answered 200 without a conv_ id: ${created.text.slice(0, 200)}`);
      return;
    }
    const before = await conversationItems(id);
    if (before === null) return;
    const body: Body = { ...validBody(), conversation: id };
    const sent = JSON.stringify(body);
    const reply = await ctx.post('/v1/responses', sent);
    tally.count(`responses conversation turn ${reply.status}`);
    if (reply.status !== 200) {
      ctx.checkStatus('responses conversation turn', reply, sent);
      if (reply.status >= 400 && reply.status < 500 && reply.status !== 429) tally.violate(`responses conversation: a valid turn got ${reply.status}: ${reply.text.slice(0, 300)} (sent ${sent.slice(0, 2000)})`);
      return;
    }
    const response = finished('responses conversation turn', reply, body, sent);
    if (!response) return;
    const after = await conversationItems(id);
    if (after === null) return;
    const inputs = typeof body.input === 'string' ? 1 : (body.input as unknown[]).length;
    const appended = response.status === 'completed' || response.status === 'incomplete' ? inputs + response.output.length : 0;
    const outputs = response.output.map((item) => item.id);
    const kept = after.length === before.length + appended && JSON.stringify(after.slice(0, before.length)) === JSON.stringify(before) && (appended === 0 || JSON.stringify(after.slice(after.length - outputs.length)) === JSON.stringify(outputs));
    tally.count(kept ? 'responses conversation appended' : 'responses conversation not as appended');
    if (!kept) tally.violate(`responses conversation: ${id} holds ${JSON.stringify(after).slice(0, 300)} after a ${response.status} turn, not its ${before.length} items then ${inputs} inputs and the outputs ${JSON.stringify(outputs).slice(0, 200)} (sent ${sent.slice(0, 2000)})`);
    if (int(2) === 0) {
      const removed = await ctx.remove(`/v1/conversations/${id}`);
      if (removed.status !== 200) {
        ctx.checkStatus('responses conversation delete', removed, id);
        return;
      }
      const gone = await ctx.get(`/v1/conversations/${id}`);
      tally.count(`responses conversation deleted ${gone.status}`);
      if (gone.status !== 404) tally.violate(`responses conversation: ${id} deleted, then retrieved ${gone.status}`);
    }
  };

  return async () => {
    const which = int(11);
    if (which === 0) await broken();
    else if (which <= 2) await pair();
    else if (which === 3) await background();
    else if (which === 4) await conversation();
    else await single();
  };
}
