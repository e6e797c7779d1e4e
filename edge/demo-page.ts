/**
 * GET / — a small page that streams a completion through this edge and colours
 * each piece of text by where its draft came from (the chunks' `sssd_sources`):
 * the user's cache (edge), the request's context, the pool's datastore, or the
 * model itself (not drafted). The API key comes from the URL fragment
 * (`/#key=...`, printed by `npm start`) or the key field. A stream silent
 * past three times the edge's longest pause, or a request unanswered past
 * the edge's longest wait for a pool and that again, is given up as a lost
 * connection; a reply is over at its `[DONE]`, whatever the link does after.
 */
/** The page's one style element, as it stands between its tags (its CSP hash is of exactly this). */
const demoPageStyle = `
  body { font: 15px/1.5 system-ui, sans-serif; max-width: 56rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  textarea, input { font: inherit; width: 100%; box-sizing: border-box; }
  .row { display: flex; gap: .75rem; align-items: center; margin: .5rem 0; flex-wrap: wrap; }
  .row label { display: flex; gap: .3rem; align-items: center; }
  .row input[type=number] { width: 6rem; }
  #output { white-space: pre-wrap; border: 1px solid #ccc; border-radius: 6px; padding: .75rem; min-height: 6rem; margin-top: 1rem; }
  .tok-model { background: #eee; }
  .tok-edge { background: #ffd8a8; }
  .tok-context { background: #b2f2bb; }
  .tok-datastore { background: #a5d8ff; }
  .legend span { padding: 0 .4rem; border-radius: 3px; margin-right: .4rem; }
  #user { width: 10rem; }
  #usage { font-size: 13px; color: #555; margin-top: .5rem; }
  #error { color: #c92a2a; }
`;

/** The page's one script, as it stands between its tags (its CSP hash is of exactly this). */
const demoPageScript = `
const $ = (id) => document.getElementById(id);
const fragmentKey = new URLSearchParams(location.hash.slice(1)).get('key');
// Out of the address bar (and the history, and a shared screen) once read.
if (fragmentKey) history.replaceState(null, '', location.pathname + location.search);
// A link's key is not used in place of one this browser saved unless the user
// says so: a link sent by someone else would send this user's prompts under
// their key, into their user cache. Which key is in use shows by its end.
const savedKey = localStorage.getItem('sssd-key') || '';
const linkDiffers = Boolean(fragmentKey && savedKey && fragmentKey !== savedKey);
let keyFrom = savedKey ? 'saved in this browser' : fragmentKey ? 'from the link' : '';
$('key').value = savedKey || fragmentKey || '';
function showKey() {
  const k = $('key').value.trim();
  const other = linkDiffers && keyFrom !== 'from the link' ? '; the link carries another, …' + fragmentKey.slice(-4) : '';
  $('keyNote').textContent = k ? 'key …' + k.slice(-4) + (keyFrom ? ' ' + keyFrom : '') + other : '';
  $('useLinkKey').hidden = !other;
}
$('key').addEventListener('input', () => { keyFrom = 'typed here'; showKey(); });
$('useLinkKey').addEventListener('click', () => { $('key').value = fragmentKey; keyFrom = 'from the link'; showKey(); });
showKey();
let model = null;
/** The error an answer carries: its JSON error's message, else its status (a proxy's HTML page is no JSON). */
async function failure(res) {
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    if (body.error && body.error.message) return new Error(body.error.message);
  } catch {}
  return new Error(res.status + ' ' + res.statusText);
}
async function servedModel(key, signal) {
  if (model) return model;
  const res = await fetch('/v1/models', { signal, headers: { authorization: 'Bearer ' + key } });
  if (!res.ok) throw await failure(res);
  model = (await res.json()).data[0].id;
  return model;
}
// The edge never leaves a live stream silent longer than this (comments fill its pauses, stream-silence.ts): three
// times it without a byte is a connection lost (a half-open socket, which fetch never times out), with room for
// timers late on a busy edge and a mobile link that delivers in bursts.
const stallMs = 3 * Number(document.querySelector('meta[name="sssd-stream-silence-ms"]').content);
// Before its headers the edge may wait this long for a pool to take the generation (a hung pool's window, and a
// short one for each pool after it): a link lost as the request went leaves fetch waiting for good, so past that
// and a stall watch more, no answer is coming. 0: the edge sets no bound (its headers wait for the first tokens).
const headersWithinMs = Number(document.querySelector('meta[name="sssd-headers-within-ms"]').content);
const answerMs = headersWithinMs > 0 ? headersWithinMs + stallMs : 0;
/** Why a reply ended early, said with how much of it is on the page. */
function cutOff() {
  return 'The reply was cut off before its end (' + $('output').textContent.length + ' characters arrived).';
}
/** The generation on screen: a new one, or Stop, aborts it (its text must not run into the next one's). */
let current = null;
function stop() {
  if (current) current.abort();
  current = null;
  $('go').textContent = 'Generate';
}
/** Why the key cannot be sent (said on the page, nothing sent nor saved), or '' when it can. */
function keyProblem(key) {
  if (!key) return 'Enter an API key (npm start prints a link to this page with the development key).';
  // A bearer token is printable ASCII: anything else fails in fetch itself, in the browser's words.
  if (/[^\\x21-\\x7e]/.test(key)) return 'That API key holds characters no key has: keys are printable ASCII, without spaces.';
  return '';
}
async function generate() {
  if (current) return stop();
  const key = $('key').value.trim();
  const problem = keyProblem(key);
  if (problem) {
    $('error').textContent = problem;
    document.body.dataset.state = 'done';
    return;
  }
  const controller = new AbortController();
  current = controller;
  $('go').textContent = 'Stop';
  // What is asked is what the form said at the click.
  const ask = {
    prompt: $('prompt').value, stream: true,
    max_tokens: Number($('maxTokens').value), temperature: Number($('temperature').value),
    user: $('user').value, speculation: $('speculation').checked ? 'auto' : 'off',
    stream_options: { include_usage: true, smooth: $('smooth').checked, sources: true },
  };
  $('output').textContent = ''; $('usage').textContent = ''; $('error').textContent = '';
  document.body.dataset.state = 'streaming';
  let stalled = false;
  // Whether the reply's headers came: a silence before them is no answer at all, after them a stalled stream.
  let answered = false;
  let idle;
  const watch = (ms) => {
    clearTimeout(idle);
    if (ms > 0) idle = setTimeout(() => { stalled = true; controller.abort(); }, ms);
  };
  try {
    watch(answerMs);
    const served = await servedModel(key, controller.signal);
    watch(answerMs);
    const res = await fetch('/v1/completions', {
      method: 'POST',
      signal: controller.signal,
      headers: { 'content-type': 'application/json', authorization: 'Bearer ' + key },
      body: JSON.stringify({ model: served, ...ask }),
    });
    if (!res.ok) throw await failure(res);
    answered = true;
    // Kept once the edge took it: what the user typed, or a link's key where none was (a key refused, kept, won over the next link's).
    if (keyFrom === 'typed here' || !savedKey) localStorage.setItem('sssd-key', key);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let ended = false;
    reading: for (;;) {
      watch(stallMs);
      let next;
      try {
        next = await reader.read();
      } catch (err) {
        // A connection reset or a chunked body left incomplete (a mobile drop): the browser's words ("network error") say nothing.
        throw controller.signal.aborted ? err : new Error(cutOff());
      } finally {
        clearTimeout(idle);
      }
      const { value, done } = next;
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf('\\n\\n')) >= 0) {
        const line = buffer.slice(0, cut).trim(); buffer = buffer.slice(cut + 2);
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6);
        if (data === '[DONE]') { ended = true; break reading; }
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) showUsage(chunk.usage);
        const choice = chunk.choices && chunk.choices[0];
        if (!choice || !choice.sssd_sources) continue;
        for (const seg of choice.sssd_sources) {
          const span = document.createElement('span');
          span.className = 'tok tok-' + seg.source;
          span.dataset.source = seg.source;
          span.textContent = seg.text;
          $('output').appendChild(span);
        }
      }
    }
    // The edge always ends with [DONE]; a stream closed before it (a proxy, a dropped connection) was cut off.
    if (!ended) throw new Error(cutOff());
    // The reply is whole: what the link does after [DONE] (a drop, a stall before the body's end) is no part of it.
    reader.cancel().catch(() => {});
  } catch (err) {
    if (stalled) {
      $('error').textContent = answered ? 'The connection stalled; the reply may be incomplete.' : 'No answer from the server; check your connection and try again.';
    }
    else if (!controller.signal.aborted) $('error').textContent = String(err.message || err);
  } finally {
    clearTimeout(idle);
    if (current === controller) {
      current = null;
      $('go').textContent = 'Generate';
    }
    document.body.dataset.state = controller.signal.aborted && !stalled ? 'stopped' : 'done';
  }
}
function showUsage(u) {
  const s = u.speculation || {};
  $('usage').textContent = u.completion_tokens + ' tokens, ' + (s.steps ?? '?') + ' steps, mean acceptance length ' +
    (s.mean_acceptance_length ?? 0).toFixed(2) + ', from your cache: ' + (s.edge_accepted_tokens ?? 0) +
    ', prompt tokens cached at the pool: ' + ((u.prompt_tokens_details || {}).cached_tokens ?? 0);
}
$('go').addEventListener('click', generate);
// Enter in a one-line field, or Ctrl/Cmd+Enter in the prompt, starts a generation (a running one goes on).
for (const id of ['key', 'maxTokens', 'temperature', 'user', 'prompt']) {
  $(id).addEventListener('keydown', (e) => {
    if (e.key !== 'Enter' || e.isComposing || (id === 'prompt' && !(e.ctrlKey || e.metaKey))) return;
    e.preventDefault();
    if (!current) generate();
  });
}
`;

/**
 * The page, told the longest a live stream from this edge is silent
 * (longestStreamSilenceMs) and the longest its headers take
 * (longestWaitForHeadersMs; null: no bound, told as 0), for its watches.
 */
export function demoPageHtml(streamSilenceMs: number, headersWithinMs: number | null): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="sssd-stream-silence-ms" content="${Math.round(streamSilenceMs)}">
<meta name="sssd-headers-within-ms" content="${Math.round(headersWithinMs ?? 0)}">
<title>SSSD edge demo</title>
<style>${demoPageStyle}</style>
</head>
<body>
<h1>SSSD edge demo</h1>
<p class="legend">Draft source of each token:
  <span class="tok-edge">your cache (edge)</span><span class="tok-context">this prompt (context)</span><span class="tok-datastore">datastore</span><span class="tok-model">model (not drafted)</span></p>
<div class="row"><input id="key" type="password" placeholder="API key" aria-label="API key" autocomplete="off"> <span id="keyNote"></span> <button id="useLinkKey" hidden>Use the link's key</button></div>
<textarea id="prompt" rows="3" aria-label="Prompt (Ctrl+Enter generates)">Once upon a time, there was a little girl named Lily.</textarea>
<div class="row">
  <label>max tokens <input id="maxTokens" type="number" value="128" min="1"></label>
  <label>temperature <input id="temperature" type="number" value="0" min="0" max="2" step="0.1"></label>
  <label>user <input id="user" type="text" value="demo-user"></label>
  <label><input id="speculation" type="checkbox" checked> speculation</label>
  <label><input id="smooth" type="checkbox"> smooth</label>
  <button id="go">Generate</button>
</div>
<div id="output" aria-live="polite"></div>
<div id="usage"></div>
<div id="error"></div>
<script type="module">${demoPageScript}</script>
</body>
</html>
`;
}

async function cspHash(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  let binary = '';
  for (const byte of digest) binary += String.fromCharCode(byte);
  return `'sha256-${btoa(binary)}'`;
}

/**
 * The page keeps an API key in the browser: nothing but its own style and
 * script run on it (by their hashes: an injected inline script would not),
 * it is never framed (clickjacking), and it sends no referrer. Its HTML is
 * static: no request text is ever put into it.
 */
export async function demoPageHeaders(): Promise<Record<string, string>> {
  return {
    'content-security-policy': `default-src 'none'; script-src ${await cspHash(demoPageScript)}; style-src ${await cspHash(demoPageStyle)}; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
  };
}
