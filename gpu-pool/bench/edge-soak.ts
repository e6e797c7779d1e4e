/**
 * A soak of a running edge's OpenAI-compatible API (what `sssd soak --edge`
 * sends): completions and chat, streamed or not, n > 1, stops, logprobs,
 * echo, penalties, vLLM's min_p / min_tokens / ignore_eos / stop_token_ids /
 * allowed_token_ids / truncate_prompt_tokens / prompt_logprobs /
 * return_tokens_as_token_ids / bad_words / structured outputs (choice, regex, json, json_object, GBNF grammar; guided_*; response_format) /
 * return_token_ids / truncation_side / priority 0 / cache_salt, a completion
 * without max_tokens, OpenAI's Responses API (edge-soak-responses.ts: whole,
 * streamed, paired, chained, read back), stored chat completions (retrieved
 * as answered, their messages, deleted), and broken ones, from many clients
 * at once, a quarter of them hanging up early. It checks what a user relies on:
 *
 * - no 5xx other than 503 `pool_unavailable` with Retry-After (every pool
 *   busy or gone), and 429s carry Retry-After;
 * - a broken request gets a 4xx, never a 200;
 * - a stream that starts ends with `data: [DONE]` and no error chunk;
 * - the same request with speculation off and auto (seeded where sampled)
 *   gives the same text, finish reasons and token ids; streamed and whole, the same;
 * - a choice constraint's text is one of the choices (the start of one where cut);
 *   a grammar's a sentence of the grammar (the start of one where cut), checked
 *   by its automaton; a regex's or schema's a match;
 * - a Responses reply is a Response object (resp_ id, completed or incomplete
 *   for max_output_tokens, well-formed items, usage total = input + output);
 *   a stream is OpenAI's events, `event:` its JSON's type, sequence numbers
 *   without gaps, deltas joining to the final object's text, ending
 *   response.completed or .incomplete (no error, no [DONE]); text.format's
 *   and a forced function's output as promised; a stored response is read
 *   back the same and chained from, one not stored is a 404; speculation
 *   off and auto say the same;
 * - return_token_ids' ids agree with usage and log-probabilities, and a
 *   stream's concatenate to the whole reply's;
 * - a completion without max_tokens stops at 16 tokens;
 * - truncation_side keeps the prompt's first or last truncate_prompt_tokens ids;
 * - a field refused (vLLM's not served, or out of range; a broken grammar; on
 *   the Responses API chat's max_tokens, an unknown item type, an output for
 *   no call) is a 400 naming it;
 * - when the soak stops, the key is served again within its in-flight lease
 *   (clients that hung up hold no slot for good);
 * - no user's request is lost from their cache: every one that drafted at
 *   the edge and ended whole is merged in (soak-user-caches.ts).
 */
import { seededRandom } from '../../shared/seeded-random';
import { cutReason, soakAgent, soakRequest, type SoakReply, type SoakSendOptions } from './soak-request';
import { runSoakClients, type WeightedAction } from './soak-clients';
import { SoakTally, type SoakReport } from './soak-tally';
import { responsesAction } from './edge-soak-responses';
import { soakUsers, UserCacheLedger } from './soak-user-caches';
import { choiceProblem, structuredOf, structuredProblem, toolCallsProblem, type ToolChoice, idsTextProblem, maxTokensProblem, readReply, refusalProblem, tokenIdsProblem, truncationProblem } from './soak-checks';

export interface EdgeSoakOptions {
  /** Aborted: start nothing more, finish what runs, and report (Ctrl-C). */
  stop?: AbortSignal;
  edgeUrl: string;
  /** The API key the soak sends as Bearer. */
  key: string;
  seconds: number;
  concurrency: number;
  seed: number;
  /** The served model's name (GET /v1/models). */
  model: string;
  /** Longest generation asked for. */
  maxTokens?: number;
  /** The edge's in-flight lease (SSSD_CONCURRENCY_LEASE_SECONDS): how long the final check may wait for the key (default 5). */
  leaseSeconds?: number;
  /** How much longer than the lease the final check waits for the key (default 5: a lease given back late on a busy machine). */
  settleMarginSeconds?: number;
}

const WORDS = ['Once', 'upon', 'a', 'time', 'there', 'was', 'a', 'little', 'girl', 'named', 'Lily', '.', 'She', 'liked', 'to', 'play', '\n', 'é', '日本', '🙂', '"', '\\'];
const OVERSIZED_BYTES = 9 * 1024 * 1024;
/** Choice lists: words, ones that start others, several tokens, characters of several bytes. */
const SOAK_SCHEMA = {
  type: 'object',
  // `code`: a length beside a pattern, the regex's (?json-length) group.
  properties: { name: { type: 'string', maxLength: 16 }, age: { type: 'integer', minimum: 0, maximum: 120 }, pets: { type: 'array', items: { enum: ['cat', 'dog', 'bird'] }, maxItems: 3 }, happy: { type: 'boolean' }, code: { type: 'string', pattern: '^[A-Z]{2,}[0-9]*$', minLength: 3, maxLength: 5 } },
  required: ['name', 'age'],
};

/** Functions a soak's chat request may call: one with parameters, one with none. */
const SOAK_TOOLS = [
  { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 24 }, days: { type: 'integer', minimum: 1, maximum: 7 }, country: { type: 'string', pattern: '^[A-Z]+$', minLength: 2, maxLength: 2 } }, required: ['city', 'days'] } } },
  { type: 'function', function: { name: 'ping' } },
] as const;

/**
 * GBNF grammars (docs/edge.md): a recursive one (nested brackets, an
 * arithmetic language), a list of words, characters of several bytes in
 * literals and a class.
 */
const SOAK_GRAMMARS: readonly string[] = [
  'root ::= pair+\npair ::= "(" pair* ")" | "[" pair* "]"',
  'root ::= expr\nexpr ::= term ([+-] term)*\nterm ::= factor ([*/] factor)*\nfactor ::= [0-9]{1,3} | "(" expr ")"',
  '# a list of words\nroot ::= word (", " word){0,5} "."\nword ::= "Lily" | "Tom" | "cat" | "dog" | "little girl"',
  'root ::= (item " "?){1,6}\nitem ::= "日本" | "🙂" | [à-ö] | "é"+',
];

/** Bodies' fields for a regex, a schema, JSON mode or a grammar, each in one of the forms a client sends it (`pick` draws a grammar). */
const STRUCTURED_SHAPES: ReadonlyArray<(pick: <T>(items: readonly T[]) => T) => Body> = [
  () => ({ structured_outputs: { regex: ' ?(Lily|Tom) (was|is) [a-z ]{1,30}[.!]' } }),
  () => ({ guided_regex: '[0-9]{1,3}(, [0-9]{1,3}){0,4}' }),
  () => ({ structured_outputs: { regex: '(🙂|é|日本){1,4}' } }),
  () => ({ structured_outputs: { json: SOAK_SCHEMA } }),
  () => ({ guided_json: JSON.stringify(SOAK_SCHEMA) }),
  () => ({ response_format: { type: 'json_schema', json_schema: { name: 'person', schema: SOAK_SCHEMA, strict: true } } }),
  () => ({ response_format: { type: 'json_object' } }),
  () => ({ structured_outputs: { json_object: true } }),
  (pick) => ({ structured_outputs: { grammar: pick(SOAK_GRAMMARS) } }),
  (pick) => ({ guided_grammar: pick(SOAK_GRAMMARS) }),
];

const CHOICE_LISTS: readonly string[][] = [
  ['yes', 'no'],
  ['Lily', 'Tom', 'the little girl'],
  ['a', 'ab', 'abc'],
  ['Once upon a time', 'Once'],
  ['happy', 'sad', 'very happy', 'very sad'],
  ['日本', '🙂 smile', 'é'],
  [' leading space', 'trailing space ', 'two\nlines'],
  ['She liked to play.', 'He liked to run.', '"quoted"', 'back\\slash'],
];
/** A completion's max_tokens when none is sent (vLLM's, OpenAI's legacy API). */
const COMPLETION_DEFAULT_MAX_TOKENS = 16;

type Body = Record<string, unknown>;

export async function runEdgeSoak(opts: EdgeSoakOptions): Promise<SoakReport> {
  const random = seededRandom(opts.seed);
  const int = (n: number): number => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)];
  const maxTokens = opts.maxTokens ?? 80;
  const agent = soakAgent(opts.edgeUrl);
  const tally = new SoakTally();
  const get = (path: string): Promise<SoakReply> => soakRequest(agent, `${opts.edgeUrl}${path}`, 'GET', { authorization: `Bearer ${opts.key}` }, null);
  const remove = (path: string): Promise<SoakReply> => soakRequest(agent, `${opts.edgeUrl}${path}`, 'DELETE', { authorization: `Bearer ${opts.key}` }, null);
  const users = soakUsers(opts.seed);
  const caches = await UserCacheLedger.start(get, tally, users);
  const send = async (path: string, body: string | Buffer, key = opts.key, options: SoakSendOptions = {}): Promise<SoakReply> => {
    const reply = await soakRequest(agent, `${opts.edgeUrl}${path}`, 'POST', { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body, options);
    if (key === opts.key) caches?.note(body, reply);
    return reply;
  };

  const text = (): string => Array.from({ length: 1 + int(30) }, () => pick(WORDS)).join(' ');
  /** A valid body: every field inside its range. */
  const validBody = (): { path: string; body: Body } => {
    const chat = int(2) === 0;
    // A completion without max_tokens: 16.
    const unlimited = !chat && int(8) === 0;
    const limit = unlimited ? COMPLETION_DEFAULT_MAX_TOKENS : 1 + int(maxTokens);
    const body: Body = unlimited ? { model: opts.model } : { model: opts.model, max_tokens: limit };
    if (chat) body.messages = Array.from({ length: 1 + int(3) }, (_, i) => ({ role: i === 0 && int(3) === 0 ? 'system' : 'user', content: int(5) === 0 ? [{ type: 'text', text: text() }] : text() }));
    else body.prompt = int(6) === 0 ? Array.from({ length: 1 + int(20) }, () => 2 + int(400)) : text();
    if (int(2) === 0) body.stream = true;
    if (body.stream && int(3) === 0) body.stream_options = { include_usage: int(2) === 0, smooth: int(3) === 0, continuous_usage_stats: int(2) === 0 };
    if (int(3) !== 0) {
      body.temperature = pick([0, 0.5, 0.8, 1, 1.3]);
      body.seed = int(1e6);
    } else body.temperature = 0;
    if (int(3) === 0) body.top_p = pick([0.5, 0.9, 1]);
    if (int(4) === 0) body.top_k = pick([0, 5, 40]);
    if (int(4) === 0) body.n = 1 + int(3);
    if (int(4) === 0) body.stop = pick(['.', ['\n', 'Lily'], ' the']);
    // vLLM's extensions the edge serves.
    if (int(6) === 0) body.min_p = pick([0.05, 0.2]);
    if (int(6) === 0) body.min_tokens = int(limit + 1);
    if (int(8) === 0) body.ignore_eos = true;
    if (int(8) === 0) body.stop_token_ids = [2 + int(400)];
    if (int(4) === 0 && body.stop !== undefined) body.include_stop_str_in_output = true;
    if (int(12) === 0) body.allowed_token_ids = Array.from({ length: 1 + int(40) }, () => 2 + int(400));
    if (int(8) === 0) body.truncate_prompt_tokens = pick([-1, 1, 5, 50]);
    // Words with text (a blank one is a 400, as vLLM's); the allowed list apart (a one-token bad word may empty it: a 400 too).
    if (int(8) === 0 && body.allowed_token_ids === undefined) body.bad_words = Array.from({ length: 1 + int(3) }, () => pick(WORDS.filter((w) => w.trim() !== '')));
    if (int(8) === 0) body.prompt_logprobs = body.stream ? 0 : int(4);
    if (int(5) === 0) body.logprobs = chat ? true : int(4);
    if (chat && body.logprobs === true && int(2) === 0) body.top_logprobs = int(4);
    if (body.logprobs !== undefined && int(3) === 0) body.return_tokens_as_token_ids = true;
    // vLLM's logprob_token_ids: with logprobs, the listed ids' log-probabilities in the top ones' stead.
    if (body.logprobs !== undefined && int(4) === 0) body.logprob_token_ids = Array.from({ length: 1 + int(4) }, () => 2 + int(400));
    if (!chat && int(8) === 0) body.echo = true;
    if (int(6) === 0) body.frequency_penalty = Math.round((random() * 4 - 2) * 100) / 100;
    if (int(6) === 0) body.presence_penalty = Math.round((random() * 4 - 2) * 100) / 100;
    if (int(8) === 0) body.logit_bias = { [String(int(500))]: int(200) - 100 };
    if (int(6) === 0) body.user = users[int(users.length)];
    // vLLM's fields added since: a choice constraint (its conflicts left out: ignore_eos is a 400 beside it, and masks or
    // min_tokens that leave a choice no token are 400s of their own), the ids, which end truncation keeps, the neutral priority, a salt.
    if (int(8) === 0) {
      const choices = pick(CHOICE_LISTS);
      if (int(3) === 0) body.guided_choice = choices;
      else body.structured_outputs = { choice: choices };
      for (const field of ['ignore_eos', 'allowed_token_ids', 'bad_words', 'min_tokens', 'echo']) delete body[field];
    }
    // The other structured outputs: a regex, a JSON schema, JSON mode or a grammar, by each field that names them (the same conflicts left out).
    else if (int(8) === 0) {
      const shape = pick(STRUCTURED_SHAPES);
      Object.assign(body, shape(pick));
      for (const field of ['ignore_eos', 'allowed_token_ids', 'bad_words', 'min_tokens', 'echo']) delete body[field];
    }
    // Chat's tool calls: a named function, "required" or "auto" (sent, or by default) (the structured outputs and their conflicts left out).
    if (chat && int(8) === 0) {
      body.tools = SOAK_TOOLS;
      body.tool_choice = pick<Body['tool_choice']>(['required', 'auto', undefined, { type: 'function', function: { name: pick(SOAK_TOOLS).function.name } }]);
      if (body.tool_choice === undefined) delete body.tool_choice;
      if (int(2) === 0) body.parallel_tool_calls = false;
      for (const field of ['structured_outputs', 'guided_choice', 'guided_regex', 'guided_json', 'guided_grammar', 'response_format', 'ignore_eos', 'allowed_token_ids', 'bad_words', 'min_tokens']) delete body[field];
    }
    if (int(5) === 0) body.return_token_ids = true;
    if (body.truncate_prompt_tokens !== undefined && int(2) === 0) body.truncation_side = pick(['left', 'right', null]);
    if (int(10) === 0) body.priority = 0;
    if (int(8) === 0) body.cache_salt = Array.from({ length: 1 + int(int(4) === 0 ? 1024 : 16) }, () => pick(['s', 'é', '🙂', '-'])).join('');
    return { path: chat ? '/v1/chat/completions' : '/v1/completions', body };
  };

  /** Per choice, its text and finish reason (the same shape streamed or not). */
  const choicesOf = (reply: SoakReply, streamed: boolean): string[] | null => {
    try {
      // Tool calls by name and arguments (their ids are drawn anew each time).
      const callsOf = (calls: Array<{ function: { name: string; arguments: string } }> | undefined): string => (calls && calls.length > 0 ? `|${calls.map((c) => `${c.function.name}(${c.function.arguments})`).join(';')}` : '');
      if (!streamed) {
        const json = JSON.parse(reply.text) as { choices: Array<{ text?: string; message?: { content?: string | null; tool_calls?: Array<{ function: { name: string; arguments: string } }> }; finish_reason?: string; token_ids?: number[] }> };
        return json.choices.map((c) => `${c.text ?? c.message?.content ?? ''}|${c.finish_reason ?? ''}${c.token_ids ? `|${c.token_ids.join(',')}` : ''}${callsOf(c.message?.tool_calls)}`);
      }
      const texts: string[] = [];
      const reasons: string[] = [];
      const ids: Array<number[] | undefined> = [];
      const calls: Array<Array<{ function: { name: string; arguments: string } }>> = [];
      for (const line of reply.text.split('\n')) {
        if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
        const chunk = JSON.parse(line.slice(6)) as { choices?: Array<{ index: number; text?: string; delta?: { content?: string; tool_calls?: Array<{ index: number; function?: { name?: string; arguments?: string } }> }; finish_reason?: string | null; token_ids?: number[] }> };
        for (const c of chunk.choices ?? []) {
          texts[c.index] = (texts[c.index] ?? '') + (c.text ?? c.delta?.content ?? '');
          if (c.finish_reason) reasons[c.index] = c.finish_reason;
          if (c.token_ids) ids[c.index] = [...(ids[c.index] ?? []), ...c.token_ids];
          for (const d of c.delta?.tool_calls ?? []) {
            const call = ((calls[c.index] ??= [])[d.index] ??= { function: { name: '', arguments: '' } });
            call.function.name += d.function?.name ?? '';
            call.function.arguments += d.function?.arguments ?? '';
          }
        }
      }
      return texts.map((t, i) => `${t}|${reasons[i] ?? ''}${ids[i] ? `|${ids[i].join(',')}` : ''}${callsOf(calls[i])}`);
    } catch {
      return null;
    }
  };

  /** A 5xx must be every pool unavailable, with Retry-After; a 429 must carry Retry-After. */
  const checkStatus = (what: string, reply: SoakReply, sent: string): void => {
    if (reply.status === 503) {
      if (!reply.retryAfter || !reply.text.includes('pool_unavailable')) tally.violate(`${what}: 503 without Retry-After or pool_unavailable: ${reply.text.slice(0, 200)} (sent ${sent.slice(0, 200)})`);
    } else if (reply.status >= 500) {
      tally.violate(`${what}: ${reply.status} ${reply.text.slice(0, 200)} (sent ${sent.slice(0, 200)})`);
    } else if (reply.status === 429 && !reply.retryAfter) {
      tally.violate(`${what}: 429 without Retry-After`);
    }
  };

  /** A 200's body as promised: a stream ends with [DONE] and no error; a JSON body has choices. */
  const checkComplete = (what: string, reply: SoakReply, body: Body, sent: string): boolean => {
    if (body.stream) {
      if (!reply.text.includes('data: [DONE]')) {
        tally.violate(`${what}: a stream without data: [DONE]: …${reply.text.slice(-200)} (sent ${sent.slice(0, 200)})`);
        return false;
      }
      if (/^data: \{"error"/m.test(reply.text)) {
        tally.violate(`${what}: a stream carried an error: ${(/^data: \{"error".*$/m.exec(reply.text) ?? [''])[0].slice(0, 200)} (sent ${sent.slice(0, 200)})`);
        return false;
      }
    }
    if (choicesOf(reply, body.stream === true) === null) {
      tally.violate(`${what}: an unreadable 200: ${reply.text.slice(0, 200)}`);
      return false;
    }
    return checkPromises(what, reply, body, sent);
  };

  /** The promises of the fields a request set, on its whole 200. */
  const checkPromises = (what: string, reply: SoakReply, body: Body, sent: string): boolean => {
    const read = readReply(reply.text, body.stream === true);
    if (!read) {
      tally.violate(`${what}: an unreadable 200: ${reply.text.slice(0, 200)}`);
      return false;
    }
    const problems: string[] = [];
    // A stop string or stop id may cut a reply inside its constraint: its promise is then only the start of one.
    const cutEarly = body.stop !== undefined || body.stop_token_ids !== undefined;
    const choices = (body.structured_outputs as { choice?: string[] } | undefined)?.choice ?? (body.guided_choice as string[] | undefined);
    if (choices) {
      tally.count('checked choice');
      for (const c of read.choices) {
        const problem = choiceProblem(c, choices, cutEarly);
        if (problem) problems.push(`choice: ${problem}`);
      }
    }
    const structured = structuredOf(body);
    if (structured) {
      tally.count(`checked ${structured.kind}`);
      for (const c of read.choices) {
        const problem = structuredProblem(c, structured, cutEarly);
        if (problem) problems.push(`${structured.kind}: ${problem}`);
      }
    }
    if (body.tools !== undefined) {
      tally.count('checked tool calls');
      for (const c of read.choices) {
        const problem = toolCallsProblem(c, (body.tool_choice ?? 'auto') as ToolChoice, SOAK_TOOLS, body.parallel_tool_calls === false, cutEarly);
        if (problem) problems.push(`tool calls: ${problem}`);
      }
    }
    if (body.return_token_ids === true) {
      tally.count('checked token ids');
      // Echo's log-probabilities score the prompt's tokens first.
      const problem = tokenIdsProblem(read, body.echo === true);
      if (problem) problems.push(`return_token_ids: ${problem}`);
    }
    if (body.max_tokens === undefined && body.max_completion_tokens === undefined && body.prompt !== undefined) {
      tally.count('checked default max');
      const problem = maxTokensProblem(read, COMPLETION_DEFAULT_MAX_TOKENS);
      if (problem) problems.push(`no max_tokens: ${problem}`);
    }
    for (const p of problems) tally.violate(`${what}: ${p} (sent ${sent.slice(0, 4000)})`);
    return problems.length === 0;
  };

  const actions: WeightedAction[] = [
    // A request, a quarter of them cut off by their client.
    { weight: 6, run: async () => {
      const { path, body } = validBody();
      const sent = JSON.stringify(body);
      const cut = int(4) === 0;
      const reply = await send(path, sent, opts.key, cut ? { hangUpAfterMs: int(60) } : {});
      tally.count(`request ${reply.status}`);
      // One its client meant to cut off that came whole before the hang-up is checked as whole.
      if (reply.status === 200 && (!cut || reply.complete)) checkComplete('request', reply, body, sent);
      else if (reply.status !== 0 && reply.status !== 200) checkStatus('request', reply, sent);
      else if (reply.status === 0 && !cut) tally.violate(`request: ${cutReason(reply)} (sent ${sent.slice(0, 200)})`);
    } },
    // The same request with speculation off and auto: the same text.
    { weight: 4, run: async () => {
      const { path, body } = validBody();
      // Without an allowed list: a few ids the model finds very unlikely leave near-ties (logits equal to ~1e-6), where
      // any change of a pass's shape (a batch, a prefix-cache hit) flips a greedy pick, speculation off as well as on
      // (seed 64: `off` itself gave two texts in two runs of one body). docs/protocol.md, "Scheduling".
      delete body.allowed_token_ids;
      const off = JSON.stringify({ ...body, speculation: 'off' });
      const auto = JSON.stringify({ ...body, speculation: 'auto' });
      const [a, b] = await Promise.all([send(path, off), send(path, auto)]);
      for (const [reply, sent] of [[a, off], [b, auto]] as const) {
        if (reply.status === 0) tally.violate(`pair: ${cutReason(reply)} (sent ${sent.slice(0, 200)})`);
      }
      if (a.status !== 200 || b.status !== 200) {
        tally.count('pair refused');
        checkStatus('pair', a, off);
        checkStatus('pair', b, auto);
        return;
      }
      if (!checkComplete('pair', a, body, off) || !checkComplete('pair', b, body, auto)) return;
      const x = JSON.stringify(choicesOf(a, body.stream === true));
      const y = JSON.stringify(choicesOf(b, body.stream === true));
      tally.count(x === y ? 'pair same' : 'pair different');
      if (x !== y) tally.violate(`speculation changed the answer to ${off.slice(0, 4000)}: off ${x.slice(0, 400)}, auto ${y.slice(0, 400)}`);
    } },
    // The same request streamed and whole (greedy or seeded, its ids asked for): the same text, finish reasons and ids,
    // a stream's ids put together from its chunks.
    { weight: 2, run: async () => {
      const { path, body } = validBody();
      delete body.allowed_token_ids; // near-ties, as in the pair above
      delete body.stream_options;
      delete body.prompt_logprobs; // a count above 0 is a 400 when streamed
      body.return_token_ids = true;
      const whole = JSON.stringify({ ...body, stream: false });
      // Smoothed, a step's ids come with its first token's chunk, its text paced after.
      const streamed = JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true, smooth: int(2) === 0, continuous_usage_stats: int(3) === 0 } });
      const [a, b] = await Promise.all([send(path, whole), send(path, streamed)]);
      for (const [reply, sent] of [[a, whole], [b, streamed]] as const) {
        if (reply.status === 0) tally.violate(`stream/whole: ${cutReason(reply)} (sent ${sent.slice(0, 200)})`);
      }
      if (a.status !== 200 || b.status !== 200) {
        tally.count('stream/whole refused');
        checkStatus('stream/whole', a, whole);
        checkStatus('stream/whole', b, streamed);
        return;
      }
      if (!checkComplete('stream/whole', a, { ...body, stream: false }, whole) || !checkComplete('stream/whole', b, { ...body, stream: true }, streamed)) return;
      const x = JSON.stringify(choicesOf(a, false));
      const y = JSON.stringify(choicesOf(b, true));
      tally.count(x === y ? 'stream/whole same' : 'stream/whole different');
      if (x !== y) tally.violate(`streamed and whole differ for ${whole.slice(0, 4000)}: whole ${x.slice(0, 400)}, streamed ${y.slice(0, 400)}`);
    } },
    // return_token_ids' ids read back (echo of the prompt's and the choice's ids, max_tokens 0): the reply's text.
    { weight: 1, run: async () => {
      const { path, body } = validBody();
      // Without ignore_eos: an end token inside the reply prints nothing and leaves the next token's space, where an
      // echo reads the same id as BOS and drops it (id 1 is both here; said in docs/edge.md, return_token_ids).
      // Without tools: a call's text is its arguments, not the message's content the ids are read back against.
      for (const field of ['stop', 'stop_token_ids', 'include_stop_str_in_output', 'echo', 'stream', 'stream_options', 'ignore_eos', 'tools', 'tool_choice', 'parallel_tool_calls']) delete body[field];
      body.return_token_ids = true;
      const sent = JSON.stringify(body);
      const reply = await send(path, sent);
      if (reply.status !== 200) {
        tally.count(`read back refused ${reply.status}`);
        checkStatus('read back', reply, sent);
        return;
      }
      if (!checkComplete('read back', reply, body, sent)) return;
      const read = readReply(reply.text, false);
      const echo = async (ids: number[]): Promise<string | null> => {
        const sentEcho = JSON.stringify({ model: opts.model, prompt: ids, max_tokens: 0, echo: true });
        const r = await send('/v1/completions', sentEcho);
        if (r.status === 200) return readReply(r.text, false)?.choices[0]?.text ?? null;
        tally.count(`read back echo ${r.status}`);
        checkStatus('read back echo', r, sentEcho);
        // The ids the edge itself sent, read back: refused only when busy.
        if (r.status !== 429 && r.status !== 503 && r.status !== 0) tally.violate(`read back: echo of the reply's ids got ${r.status} ${r.text.slice(0, 200)} (sent ${sentEcho.slice(0, 2000)})`);
        return null;
      };
      for (const c of read?.choices ?? []) {
        if (!c.tokenIds || !c.promptTokenIds || c.promptTokenIds.length === 0) continue;
        const [whole, prompt] = await Promise.all([echo([...c.promptTokenIds, ...c.tokenIds]), echo(c.promptTokenIds)]);
        if (whole === null || prompt === null) continue;
        tally.count('read back');
        const problem = idsTextProblem(c.text, whole, prompt);
        if (problem) tally.violate(`read back: ${problem} (sent ${sent.slice(0, 4000)})`);
      }
    } },
    // truncate_prompt_tokens with truncation_side: the prompt's ids read whole, then those kept, its first or last k.
    { weight: 1, run: async () => {
      const { path, body } = validBody();
      const chat = path.endsWith('chat/completions');
      const probe: Body = { model: body.model, max_tokens: 1, temperature: 0, return_token_ids: true, ...(chat ? { messages: body.messages } : { prompt: body.prompt }) };
      const full = await send(path, JSON.stringify(probe));
      if (full.status !== 200) {
        tally.count(`truncation refused ${full.status}`);
        checkStatus('truncation', full, JSON.stringify(probe));
        return;
      }
      const fullIds = readReply(full.text, false)?.choices[0]?.promptTokenIds;
      if (!fullIds) {
        tally.violate(`truncation: no prompt_token_ids with return_token_ids: ${full.text.slice(0, 200)}`);
        return;
      }
      const k = 1 + int(Math.max(1, fullIds.length + 2));
      const side = pick(['left', 'right'] as const);
      const cut = JSON.stringify({ ...probe, truncate_prompt_tokens: k, truncation_side: side });
      const kept = await send(path, cut);
      tally.count(`truncation ${side} ${kept.status}`);
      if (kept.status !== 200) {
        checkStatus('truncation', kept, cut);
        if (kept.status >= 400 && kept.status < 500 && kept.status !== 429) tally.violate(`truncation: ${kept.status} for ${cut.slice(0, 300)}: ${kept.text.slice(0, 200)}`);
        return;
      }
      const keptIds = readReply(kept.text, false)?.choices[0]?.promptTokenIds ?? [];
      // A completion's text prompt keeps its BOS on the left, as Hugging Face's tokenizer; ids and chat lose it.
      const problem = truncationProblem(fullIds, keptIds, k, side, !chat && typeof body.prompt === 'string');
      if (problem) tally.violate(`truncation: ${problem} (sent ${cut.slice(0, 300)})`);
      else tally.count('truncation kept');
    } },
    // A field refused by name: a 400 whose param names it.
    { weight: 2, run: async () => {
      const { path, body } = validBody();
      const [param, broken]: [string, Body] = pick<[string, Body]>([
        // Served (with logprobs): refused where it is empty or names an id outside the vocabulary.
        ['logprob_token_ids', { logprob_token_ids: pick([[], [999_999], [3, 1_000_000]]) }],
        ['watermarking', { watermarking: true }],
        ['repetition_detection', { repetition_detection: { max_pattern_size: 1 + int(8) } }],
        ['prompt_embeds', { prompt_embeds: 'AAAAAA==' }],
        ['skip_special_tokens', { skip_special_tokens: pick([false, 'no', 0]) }],
        ['priority', { priority: pick([1, -1, 10, 0.5]) }],
        ['truncation_side', { truncation_side: pick(['middle', 'LEFT', 1]) }],
        ['return_token_ids', { return_token_ids: pick(['yes', 1]) }],
        ['cache_salt', { cache_salt: pick(['', 's'.repeat(1025)]) }],
        ['structured_outputs.choice', { structured_outputs: { choice: pick([[], ['yes', ''], 'yes']) } }],
        ['guided_choice', { guided_choice: pick([[], ['', 'no']]) }],
        ['structured_outputs', { structured_outputs: {} }],
        ['structured_outputs.regex', { structured_outputs: { regex: pick(['(a', 'a(?=b)', '(a)\\1', '[z-a]', 'a{2,1}']) } }],
        ['response_format.json_schema.schema', { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: pick([{ type: 'integer', multipleOf: 2 }, { type: 'array', uniqueItems: true }, { not: {} }]) } } }],
        ['guided_json', { guided_json: '{"type": ' }],
        // Left recursion, an undefined rule, no root, a syntax error.
        ['structured_outputs.grammar', { structured_outputs: { grammar: pick(['root ::= root "a" | "b"', 'root ::= item+', 'start ::= "a"', 'root ::= "a']) } }],
        ['guided_grammar', { guided_grammar: pick(['root ::= [b-a]', 'root ::= x\nx ::= x "y"']) }],
        ['response_format', { structured_outputs: { regex: 'a' }, response_format: { type: 'json_object' } }],
        ['structured_outputs.regex', { structured_outputs: { choice: ['a'], regex: 'a' } }],
        ['ignore_eos', { structured_outputs: { choice: ['yes', 'no'] }, ignore_eos: true }],
      ]);
      for (const field of ['structured_outputs', 'guided_choice', 'guided_regex', 'guided_json', 'guided_grammar', 'response_format', 'tools', 'tool_choice', 'parallel_tool_calls', 'ignore_eos', 'truncation_side', 'priority', 'allowed_token_ids', 'bad_words', 'min_tokens']) delete body[field];
      const sent = JSON.stringify({ ...body, ...broken });
      const reply = await send(path, sent);
      tally.count(`refused ${param} ${reply.status}`);
      checkStatus('refusal', reply, sent);
      const problem = refusalProblem(reply.status, reply.text, param);
      if (problem) tally.violate(`refusal of ${param}: ${problem} (sent ${sent.slice(0, 300)})`);
    } },
    // A broken request: a 4xx.
    { weight: 2, run: async () => {
      const { path, body } = validBody();
      const broken: Body = pick<Body>([
        { ...body, max_tokens: -1 },
        { ...body, temperature: 3 },
        { ...body, n: 99 },
        { ...body, model: '' },
        { ...body, top_p: -0.5 },
        { ...body, stop: ['a', 'b', 'c', 'd', 'e'] },
        { ...body, response_format: { type: 'json_schema' } },
        { ...body, logit_bias: { x: 1 } },
        path.endsWith('chat/completions') ? { ...body, messages: [] } : { ...body, prompt: [] },
        { ...body, model: 'no-such-model' },
      ]);
      const raw = int(8) === 0 ? '{"model":' : JSON.stringify(broken);
      const reply = await send(path, raw);
      tally.count(`broken ${reply.status}`);
      if (reply.status === 200 || reply.status >= 500) tally.violate(`a broken request got ${reply.status}: ${raw.slice(0, 160)} → ${reply.text.slice(0, 160)}`);
    } },
    // A stored chat completion (store: true): retrieved, it is the reply its client got, every choice; its messages are
    // those sent; deleted, it is gone.
    { weight: 1, run: async () => {
      let drawn = validBody();
      for (let i = 0; i < 8 && !drawn.path.endsWith('chat/completions'); i++) drawn = validBody();
      const { path, body } = drawn;
      if (!path.endsWith('chat/completions')) return;
      body.store = true;
      body.metadata = { soak: String(opts.seed), turn: String(int(1000)) };
      const sent = JSON.stringify(body);
      const reply = await send(path, sent);
      tally.count(`stored chat ${reply.status}`);
      if (reply.status !== 200) {
        checkStatus('stored chat', reply, sent);
        if (reply.status === 0) tally.violate(`stored chat: ${cutReason(reply)} (sent ${sent.slice(0, 200)})`);
        return;
      }
      if (!checkComplete('stored chat', reply, body, sent)) return;
      const id = /"id":"(chatcmpl-[^"]+)"/.exec(reply.text)?.[1];
      if (!id) {
        tally.violate(`stored chat: no chatcmpl- id in the reply: ${reply.text.slice(0, 200)}`);
        return;
      }
      const stored = await get(`/v1/chat/completions/${id}`);
      if (stored.status !== 200) {
        checkStatus('stored chat retrieve', stored, id);
        if (stored.status !== 503) tally.violate(`stored chat: ${id} retrieved ${stored.status}: ${stored.text.slice(0, 200)}`);
        return;
      }
      const got = JSON.stringify(choicesOf(reply, body.stream === true));
      const kept = JSON.stringify(choicesOf(stored, false));
      tally.count(got === kept ? 'stored chat same' : 'stored chat different');
      if (got !== kept) tally.violate(`stored chat: ${id} retrieved is not the reply its client got: got ${got.slice(0, 400)}, stored ${kept.slice(0, 400)} (sent ${sent.slice(0, 2000)})`);
      const messages = await get(`/v1/chat/completions/${id}/messages?limit=100`);
      if (messages.status === 200) {
        let listed: number | undefined;
        try {
          listed = (JSON.parse(messages.text) as { data?: unknown[] } | null)?.data?.length;
        } catch {
          listed = undefined;
        }
        if (listed !== (body.messages as unknown[]).length) tally.violate(`stored chat: ${id}'s messages list ${String(listed)}, ${(body.messages as unknown[]).length} were sent`);
      } else checkStatus('stored chat messages', messages, id);
      if (int(2) === 0) {
        const removed = await remove(`/v1/chat/completions/${id}`);
        if (removed.status !== 200) {
          checkStatus('stored chat delete', removed, id);
          return;
        }
        const after = await get(`/v1/chat/completions/${id}`);
        tally.count(`stored chat deleted ${after.status}`);
        if (after.status !== 404) tally.violate(`stored chat: ${id} deleted, then retrieved ${after.status}`);
      }
    } },
    // OpenAI's Responses API: whole or streamed, paired, chained and read back, broken (edge-soak-responses.ts).
    { weight: 4, run: responsesAction({ model: opts.model, maxTokens, int, pick, text, post: (path, body, options) => send(path, body, opts.key, options), get, remove, tally, checkStatus, schema: SOAK_SCHEMA, users }) },
    // A body over the edge's limit, or the wrong key.
    { weight: 1, run: async () => {
      if (int(2) === 0) {
        const reply = await send('/v1/completions', Buffer.alloc(OVERSIZED_BYTES, 32));
        tally.count(`oversized ${reply.status}`);
        if (reply.status !== 413 && reply.status !== 0) tally.violate(`a ${OVERSIZED_BYTES}-byte body got ${reply.status}, not 413`);
      } else {
        const reply = await send('/v1/completions', JSON.stringify({ model: opts.model, prompt: 'Lily', max_tokens: 2 }), `${opts.key}-not`);
        tally.count(`wrong key ${reply.status}`);
        if (reply.status !== 401) tally.violate(`a wrong key got ${reply.status}, not 401`);
      }
    } },
  ];
  await runSoakClients(actions, random, opts.seconds, opts.concurrency, opts.stop);

  // Clients that hung up must not hold the key's slots: it is served again within the lease.
  const probe = JSON.stringify({ model: opts.model, prompt: 'Lily', max_tokens: 2, temperature: 0 });
  const settleBy = Date.now() + ((opts.leaseSeconds ?? 5) + (opts.settleMarginSeconds ?? 5)) * 1000;
  let last: SoakReply = { status: 0, retryAfter: null, text: '', complete: false };
  for (;;) {
    last = await send('/v1/completions', probe);
    if (last.status === 200 || Date.now() > settleBy) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  if (last.status !== 200) tally.violate(`after the soak the key is still refused: ${last.status} ${last.text.slice(0, 200)}`, true);
  await caches?.check(get, tally);
  agent.destroy();
  return tally.report();
}
