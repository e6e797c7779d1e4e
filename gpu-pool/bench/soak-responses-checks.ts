/**
 * The edge soak's checks of a Responses API reply (pure, as soak-checks.ts;
 * each returns what broke, or null): a whole reply is a Response object as
 * docs/edge.md describes it, a stream is OpenAI's events in order whose
 * deltas make the final object's text, and a response read as a chat
 * choice, for the structured-output and tool-call checks.
 */
import type { ReadChoice } from './soak-checks';

export interface ResponseItem {
  type: string;
  id?: unknown;
  status?: unknown;
  role?: unknown;
  content?: Array<{ type?: unknown; text?: unknown; annotations?: unknown; logprobs?: unknown }>;
  call_id?: unknown;
  name?: unknown;
  arguments?: unknown;
}

/** A Response object's fields the soak looks at. */
export interface ReadResponse {
  id: string;
  object: string;
  status: string;
  incomplete_details: { reason?: string } | null;
  output: ResponseItem[];
  usage: { input_tokens: number; output_tokens: number; total_tokens: number } | null;
  model: string;
  store: boolean;
  previous_response_id: string | null;
  max_output_tokens: number | null;
}

/** What a request set that its response echoes. */
export interface ResponseAsked {
  model: string;
  store: boolean;
  previousResponseId: string | null;
  maxOutputTokens: number | null;
}

const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0;

function itemProblem(item: ResponseItem, i: number, status: string): string | null {
  const itemStatus = status === 'incomplete' ? 'incomplete' : 'completed';
  if (item.status !== itemStatus) return `output.${i}.status ${JSON.stringify(item.status)} in a response ${status}, not ${itemStatus}`;
  if (item.type === 'message') {
    if (typeof item.id !== 'string' || !/^msg_[0-9a-f]+$/.test(item.id)) return `output.${i}.id ${JSON.stringify(item.id)} is no msg_ id`;
    if (item.role !== 'assistant') return `output.${i}.role ${JSON.stringify(item.role)}, not assistant`;
    const parts = item.content;
    if (!Array.isArray(parts) || parts.length !== 1) return `output.${i}.content holds ${Array.isArray(parts) ? parts.length : 'no'} parts, not one`;
    const [part] = parts;
    if (part.type !== 'output_text' || typeof part.text !== 'string' || !Array.isArray(part.annotations) || !Array.isArray(part.logprobs)) return `output.${i}.content.0 is no output_text part: ${JSON.stringify(part).slice(0, 160)}`;
    return null;
  }
  if (item.type === 'function_call') {
    if (typeof item.id !== 'string' || !/^fc_[0-9a-f]+$/.test(item.id)) return `output.${i}.id ${JSON.stringify(item.id)} is no fc_ id`;
    if (typeof item.call_id !== 'string' || !/^call_[0-9a-f]+$/.test(item.call_id)) return `output.${i}.call_id ${JSON.stringify(item.call_id)} is no call_ id`;
    if (typeof item.name !== 'string' || item.name === '' || typeof item.arguments !== 'string') return `output.${i} is a function_call without a name or arguments`;
    return null;
  }
  return `output.${i}.type ${JSON.stringify(item.type)} is neither a message nor a function_call`;
}

/**
 * A finished response's promise: a Response object (`resp_` id), completed,
 * or incomplete for max_output_tokens alone; one message or function calls,
 * each well formed, its status the response's; usage counted (total =
 * input + output, output within max_output_tokens); the request's fields
 * echoed.
 */
export function responseProblem(value: unknown, asked: ResponseAsked): string | null {
  const r = value as ReadResponse | null;
  if (typeof r !== 'object' || r === null || r.object !== 'response') return `no Response object: ${JSON.stringify(value).slice(0, 200)}`;
  if (typeof r.id !== 'string' || !/^resp_[0-9a-f]+$/.test(r.id)) return `id ${JSON.stringify(r.id)} is no resp_ id`;
  if (r.status !== 'completed' && r.status !== 'incomplete') return `status ${JSON.stringify(r.status)}, not completed or incomplete`;
  const cut = r.incomplete_details?.reason === 'max_output_tokens';
  if ((r.status === 'incomplete') !== cut) return `status ${r.status} with incomplete_details ${JSON.stringify(r.incomplete_details)}`;
  if (!Array.isArray(r.output) || r.output.length === 0) return 'no output items';
  for (const [i, item] of r.output.entries()) {
    const problem = itemProblem(item, i, r.status);
    if (problem) return problem;
  }
  const messages = r.output.filter((item) => item.type === 'message').length;
  if (messages > 1 || (messages === 1 && r.output.length > 1)) return `${r.output.length} output items mixing a message and calls`;
  const u = r.usage;
  if (!u || !isCount(u.input_tokens) || !isCount(u.output_tokens) || !isCount(u.total_tokens)) return `usage ${JSON.stringify(u).slice(0, 160)} is not counts`;
  if (u.total_tokens !== u.input_tokens + u.output_tokens) return `usage.total_tokens ${u.total_tokens}, not input ${u.input_tokens} + output ${u.output_tokens}`;
  if (u.input_tokens === 0) return 'usage.input_tokens 0 for a request with input';
  if (asked.maxOutputTokens !== null && u.output_tokens > asked.maxOutputTokens) return `usage.output_tokens ${u.output_tokens} past max_output_tokens ${asked.maxOutputTokens}`;
  if (r.model !== asked.model) return `model ${JSON.stringify(r.model)}, the request's ${JSON.stringify(asked.model)}`;
  if (r.store !== asked.store) return `store ${JSON.stringify(r.store)}, the request's ${asked.store}`;
  if (r.previous_response_id !== asked.previousResponseId) return `previous_response_id ${JSON.stringify(r.previous_response_id)}, the request's ${JSON.stringify(asked.previousResponseId)}`;
  if (r.max_output_tokens !== asked.maxOutputTokens) return `max_output_tokens ${JSON.stringify(r.max_output_tokens)}, the request's ${asked.maxOutputTokens}`;
  return null;
}

/**
 * A response as a chat choice: its message's text, or its calls; `length`
 * where incomplete, else `completedAs` (a named call's `stop`,
 * "required"'s `tool_calls`).
 */
export function responseChoice(r: ReadResponse, completedAs = 'stop'): ReadChoice {
  const text = r.output.flatMap((item) => (item.type === 'message' ? (item.content ?? []).map((part) => String(part.text ?? '')) : [])).join('');
  const calls = r.output.filter((item) => item.type === 'function_call').map((item) => ({ name: String(item.name), arguments: String(item.arguments) }));
  return { text, finishReason: r.status === 'incomplete' ? 'length' : completedAs, ...(calls.length > 0 ? { toolCalls: calls } : {}) };
}

/** What a response said, as the pair compares it: its status, text and calls (by name and arguments: their ids are drawn anew). */
export function responseSaid(r: ReadResponse): string {
  const choice = responseChoice(r);
  return JSON.stringify([r.status, choice.text, (choice.toolCalls ?? []).map((c) => `${c.name}(${c.arguments})`)]);
}

interface StreamEvent {
  type?: unknown;
  sequence_number?: unknown;
  item_id?: unknown;
  delta?: unknown;
  text?: unknown;
  arguments?: unknown;
  response?: ReadResponse;
}

const TERMINAL = ['response.completed', 'response.incomplete'];

/**
 * A stream's promise: SSE events whose `event:` is each JSON's `type`, with
 * sequence_number 0, 1, 2, ...; response.created first, then
 * response.completed or response.incomplete last, as its response's
 * status; no `error` or response.failed, no `[DONE]`; each item's deltas
 * (text, or a call's arguments) join to what its `.done` event and the
 * final response say. The final response, where the stream is whole.
 */
export function responseStreamProblem(text: string): { problem: string | null; response: ReadResponse | null } {
  const fail = (problem: string): { problem: string; response: null } => ({ problem, response: null });
  const events: StreamEvent[] = [];
  for (const block of text.split('\n\n')) {
    const lines = block.split('\n').filter((line) => line !== '' && !line.startsWith(':'));
    if (lines.length === 0) continue;
    if (lines.some((line) => line === 'data: [DONE]')) return fail('a Responses stream sent data: [DONE]');
    const name = lines.find((line) => line.startsWith('event: '))?.slice('event: '.length);
    const data = lines.find((line) => line.startsWith('data: '))?.slice('data: '.length);
    if (name === undefined || data === undefined || lines.length !== 2) return fail(`an event that is not one event: line and one data: line: ${JSON.stringify(block).slice(0, 200)}`);
    let event: StreamEvent;
    try {
      event = JSON.parse(data) as StreamEvent;
    } catch {
      return fail(`an event's data is not JSON: ${data.slice(0, 200)}`);
    }
    if (event.type !== name) return fail(`event: ${name} carries type ${JSON.stringify(event.type)}`);
    if (event.sequence_number !== events.length) return fail(`event ${events.length} (${name}) has sequence_number ${JSON.stringify(event.sequence_number)}`);
    if (name === 'error' || name === 'response.failed') return fail(`an ${name} event: ${data.slice(0, 300)}`);
    events.push(event);
  }
  if (events.length === 0 || events[0].type !== 'response.created') return fail(`the stream does not start with response.created: ${text.slice(0, 200)}`);
  const last = events[events.length - 1];
  if (!TERMINAL.includes(String(last.type))) return fail(`the stream ends with ${String(last.type)}, not response.completed or response.incomplete`);
  if (events.slice(0, -1).some((e) => TERMINAL.includes(String(e.type)))) return fail('an event after the response ended');
  const response = last.response;
  if (!response || `response.${response.status}` !== last.type) return fail(`${String(last.type)} carries a response ${JSON.stringify(response?.status)}`);
  if (events[0].response?.id !== response.id) return fail(`response.created's id ${JSON.stringify(events[0].response?.id)}, the final one's ${JSON.stringify(response.id)}`);
  const deltas = new Map<string, string>();
  for (const e of events) {
    if ((e.type === 'response.output_text.delta' || e.type === 'response.function_call_arguments.delta') && typeof e.delta === 'string') deltas.set(String(e.item_id), (deltas.get(String(e.item_id)) ?? '') + e.delta);
    if (e.type === 'response.output_text.done' && e.text !== (deltas.get(String(e.item_id)) ?? '')) return fail(`${String(e.item_id)}'s output_text.done says ${JSON.stringify(e.text).slice(0, 120)}, its deltas ${JSON.stringify(deltas.get(String(e.item_id)) ?? '').slice(0, 120)}`);
    if (e.type === 'response.function_call_arguments.done' && e.arguments !== (deltas.get(String(e.item_id)) ?? '')) return fail(`${String(e.item_id)}'s function_call_arguments.done says ${JSON.stringify(e.arguments).slice(0, 120)}, its deltas ${JSON.stringify(deltas.get(String(e.item_id)) ?? '').slice(0, 120)}`);
  }
  for (const item of Array.isArray(response.output) ? response.output : []) {
    const said = item.type === 'message' ? (item.content ?? []).map((part) => String(part.text ?? '')).join('') : String(item.arguments ?? '');
    const streamed = deltas.get(String(item.id)) ?? '';
    if (said !== streamed) return fail(`the final ${item.type} ${String(item.id)} says ${JSON.stringify(said).slice(0, 120)}, its deltas ${JSON.stringify(streamed).slice(0, 120)}`);
  }
  return { problem: null, response };
}
