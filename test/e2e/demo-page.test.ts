// The demo page in headless Chromium (Debian's, installed by
// scripts/ensure-chromium.sh) against the real stack: it streams a completion
// and colours each piece of text by the draft source of its token.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../../launcher/stack';
import { startFlakyClientLink, type FlakyClientLink } from '../support/flaky-client-link';
import { startAll, startTestStack, type TestStack } from './stack-fixture';

let stack: TestStack;
let browser: BrowserContext;
let profileDir: string;
/** The browser's link to the edge, which stalls or drops a stream when told to. */
let link: FlakyClientLink;

beforeAll(async () => {
  execFileSync('bash', [path.join(repoRoot, 'scripts/ensure-chromium.sh')], { stdio: 'inherit' });
  profileDir = mkdtempSync(path.join(tmpdir(), 'sssd-chromium-'));
  [stack, browser] = await startAll([
    // A stream silent 0.25 s gets a comment: the page's stall watch (three times the edge's longest pause, 1.25 s here,
    // a resumed background stream's read a second being the longest) is 3.75 s. A pool silent 8 s has hung (past the
    // frozen pool's 4.5 s below): the edge's headers come within 8.5 s (with the 0.5 s heartbeat's grace), and the page
    // waits for them that and its stall watch, 12.25 s, not 34.5 s at 30 s.
    startTestStack({ vars: { SSSD_STREAM_QUIET_COMMENT_MS: '250', SSSD_POOL_STALL_SECONDS: '8' } }),
    // A fresh profile directory per run (playwright passes it as --user-data-dir).
    chromium.launchPersistentContext(profileDir, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
    }),
  ]);
  link = await startFlakyClientLink(stack.edgeUrl);
});

afterAll(async () => {
  await link?.close();
  await browser?.close();
  await stack?.dispose();
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
});

async function runDemo(prompt: string): Promise<{ text: string; sources: string[]; usage: string }> {
  const page = await browser.newPage();
  try {
    await page.goto(`${stack.edgeUrl}/#key=${encodeURIComponent(stack.devKey)}`);
    await page.fill('#prompt', prompt);
    await page.fill('#maxTokens', '64');
    await page.click('#go');
    await page.waitForSelector('body[data-state="done"]', { timeout: 30_000 });
    expect(await page.textContent('#error')).toBe('');
    const spans = await page.$$eval('#output span.tok', (els) => els.map((e) => ({ text: e.textContent ?? '', source: (e as HTMLElement).dataset.source ?? '', bg: getComputedStyle(e).backgroundColor })));
    // Every source has its own colour.
    const colours = new Map<string, string>();
    for (const s of spans) {
      const seen = colours.get(s.source);
      if (seen) expect(s.bg).toBe(seen);
      colours.set(s.source, s.bg);
    }
    expect(new Set(colours.values()).size).toBe(colours.size);
    return { text: spans.map((s) => s.text).join(''), sources: spans.map((s) => s.source), usage: (await page.textContent('#usage')) ?? '' };
  } finally {
    await page.close();
  }
}

/** The demo page through the flaky link, generating 400 tokens: its state once it stops streaming, and how long that took. */
async function throughLink(page: Page): Promise<{ error: string; output: string; button: string; ms: number }> {
  await page.goto(`${link.url}/#key=${encodeURIComponent(stack.devKey)}`);
  await page.fill('#prompt', 'Once upon a time, there was a little girl named Lily.');
  await page.fill('#maxTokens', '400');
  const clickedAt = performance.now();
  await page.click('#go');
  await page.waitForFunction(() => document.body.dataset.state !== 'streaming', undefined, { timeout: 30_000 });
  const ms = performance.now() - clickedAt;
  expect(await page.evaluate(() => document.body.dataset.state)).toBe('done');
  return { error: (await page.textContent('#error')) ?? '', output: (await page.textContent('#output')) ?? '', button: (await page.textContent('#go')) ?? '', ms };
}

describe('demo page', () => {
  it('streams a completion and colours tokens by their draft source', async () => {
    const prompt = 'Once upon a time, there was a big cat named Tim. Tim liked to sleep in the warm sun.';
    const first = await runDemo(prompt);
    expect(first.text.length).toBeGreaterThan(40);
    expect(first.sources).toContain('model');
    expect(first.usage).toMatch(/tokens/);
    // The same user again: the page's user drafts from their cache, coloured
    // as 'edge'. The cache is written after the response (waitUntil), and KV
    // is eventually consistent, so a run that came too early is repeated.
    let edgeTokens = 0;
    for (let attempt = 0; attempt < 4 && edgeTokens <= 5; attempt++) {
      await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
      const second = await runDemo(prompt);
      expect(second.text).toBe(first.text);
      edgeTokens = second.sources.filter((s) => s === 'edge').length;
      // The pool kept the first run's keys/values: the same prompt again is not prefilled but for its last token.
      expect(Number(/prompt tokens cached at the pool: (\d+)/.exec(second.usage)?.[1])).toBeGreaterThanOrEqual(16);
    }
    expect(edgeTokens).toBeGreaterThan(5);
  });

  it("shows the key in use by its end, and takes a link's key in place of the one saved in the browser only when asked; the page runs only its own code and is never framed", async () => {
    const res = await fetch(`${stack.edgeUrl}/`);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toMatch(/default-src 'none'.*frame-ancestors 'none'/);
    // Its own script and style by their hashes, nothing inline besides (the page's script running, below, checks the hash).
    expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/]+=*';/);
    expect(csp).not.toContain('unsafe-inline');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    const page = await browser.newPage();
    try {
      await page.goto(`${stack.edgeUrl}/`);
      // The style ran (its hash matched): the body is 56rem wide at most.
      expect(await page.evaluate(() => getComputedStyle(document.body).maxWidth)).toBe('896px');
      // No style attribute the policy would drop (hashes do not cover them): the user field is 10rem wide.
      expect(await page.evaluate(() => getComputedStyle(document.getElementById('user')!).width)).toBe('160px');
      expect(await page.evaluate(() => document.querySelectorAll('[style]').length)).toBe(0);
      // An inline script that is not the page's own does not run.
      await page.evaluate(() => {
        const injected = document.createElement('script');
        injected.textContent = 'document.body.dataset.injected = "ran"';
        document.body.appendChild(injected);
      });
      expect(await page.evaluate(() => document.body.dataset.injected ?? null)).toBeNull();
      await page.evaluate((k) => localStorage.setItem('sssd-key', k), stack.devKey);
      // Someone else's link (a fresh load: a change of fragment alone loads nothing): the saved key stays in use, and the link's is offered.
      await page.goto('about:blank');
      await page.goto(`${stack.edgeUrl}/#key=someone-elses-9z7q`);
      const saved = stack.devKey.slice(-4);
      expect(await page.textContent('#keyNote')).toBe(`key …${saved} saved in this browser; the link carries another, …9z7q`);
      expect(await page.inputValue('#key')).toBe(stack.devKey);
      // Taken only when asked: then it is the one sent (refused here), and the saved one is still kept.
      await page.click('#useLinkKey');
      expect(await page.textContent('#keyNote')).toBe('key …9z7q from the link');
      expect(await page.isHidden('#useLinkKey')).toBe(true);
      await page.click('#go');
      await page.waitForSelector('body[data-state="done"]', { timeout: 30_000 });
      expect(await page.textContent('#error')).toMatch(/API key/i);
      expect(await page.evaluate(() => localStorage.getItem('sssd-key'))).toBe(stack.devKey);
      // Without a link, the saved key, said so, and nothing offered.
      await page.goto('about:blank');
      await page.goto(`${stack.edgeUrl}/`);
      expect(await page.textContent('#keyNote')).toBe(`key …${saved} saved in this browser`);
      expect(await page.isHidden('#useLinkKey')).toBe(true);
    } finally {
      await page.close();
    }
  });

  it('is usable from the keyboard, and says what is wrong with a key it cannot send rather than send it', async () => {
    const page = await browser.newPage();
    const sent: string[] = [];
    page.on('request', (r) => {
      if (r.url().includes('/v1/')) sent.push(r.url());
    });
    try {
      await page.goto(`${stack.edgeUrl}/`);
      await page.evaluate(() => localStorage.clear());
      // Every field is named for a screen reader.
      for (const id of ['key', 'prompt', 'maxTokens', 'temperature', 'user']) {
        expect(await page.evaluate((i) => (document.getElementById(i) as HTMLInputElement).labels?.length || document.getElementById(i)!.getAttribute('aria-label'), id), id).toBeTruthy();
      }
      // No key, or one no key could be: said on the page; nothing sent, nothing saved.
      for (const [key, said] of [['', /Enter an API key/], ['ключ', /printable ASCII/]] as const) {
        await page.fill('#key', key);
        await page.click('#go');
        expect(await page.textContent('#error')).toMatch(said);
        expect(await page.textContent('#go')).toBe('Generate');
      }
      expect(sent).toEqual([]);
      expect(await page.evaluate(() => localStorage.getItem('sssd-key'))).toBeNull();
      // A key the edge refuses is not kept either (kept, it won over the next link's key).
      await page.fill('#key', 'not-a-key-of-this-edge');
      await page.click('#go');
      await page.waitForSelector('body[data-state="done"]', { timeout: 30_000 });
      expect(await page.textContent('#error')).toMatch(/API key/i);
      expect(await page.evaluate(() => localStorage.getItem('sssd-key'))).toBeNull();
      // Enter in a one-line field starts a generation, as a form would.
      await page.fill('#key', stack.devKey);
      await page.fill('#maxTokens', '16');
      await page.press('#maxTokens', 'Enter');
      await page.waitForSelector('body[data-state="done"]', { timeout: 30_000 });
      expect(await page.textContent('#error')).toBe('');
      expect(await page.evaluate(() => localStorage.getItem('sssd-key'))).toBe(stack.devKey);
      expect(await page.$$eval('#output span.tok', (els) => els.length)).toBeGreaterThan(0);
      // Enter in the prompt is a new line; Ctrl+Enter generates.
      await page.evaluate(() => (document.body.dataset.state = 'idle'));
      await page.press('#prompt', 'Enter');
      expect(await page.evaluate(() => document.body.dataset.state)).toBe('idle');
      await page.press('#prompt', 'Control+Enter');
      await page.waitForSelector('body[data-state="done"]', { timeout: 30_000 });
      expect(await page.textContent('#error')).toBe('');
    } finally {
      await page.close();
    }
  });

  it('stops its stream at a second click, so the next text is that generation\'s alone; the key leaves the address bar', async () => {
    const page = await browser.newPage();
    try {
      await page.goto(`${stack.edgeUrl}/#key=${encodeURIComponent(stack.devKey)}`);
      expect(page.url()).not.toContain('key=');
      await page.fill('#prompt', 'Once upon a time, there was a little girl named Lily.');
      await page.fill('#maxTokens', '400');
      // The first generation is held at the network until the second click: a story can end in a few ms (its end
      // token), and under load it was over before the click, which then started another (CI, 2026-12-07).
      let release = (): void => {};
      const held = new Promise<void>((resolve) => (release = resolve));
      await page.route('**/v1/completions', async (route) => {
        await held;
        // Stopped meanwhile: the page dropped the request, and there is nothing left to send on.
        await route.continue().catch(() => undefined);
      }, { times: 1 });
      await page.click('#go');
      expect(await page.textContent('#go')).toBe('Stop');
      // Two streams ran into one output before (a second click started another beside the first).
      await page.click('#go');
      release();
      await page.waitForSelector('body[data-state="stopped"]', { timeout: 30_000 });
      expect(await page.textContent('#go')).toBe('Generate');
      expect(await page.textContent('#error')).toBe('');
      await page.fill('#prompt', 'Tom had a red ball.');
      await page.fill('#maxTokens', '64');
      await page.click('#go');
      await page.waitForSelector('body[data-state="done"]', { timeout: 30_000 });
      const text = (await page.$$eval('#output span.tok', (els) => els.map((e) => e.textContent ?? ''))).join('');
      expect(text).toBe((await runDemo('Tom had a red ball.')).text);
    } finally {
      await page.close();
    }
  });

  it('says a reply was cut off when its stream closes before [DONE] (a proxy closing it), rather than show it as finished', async () => {
    const page = await browser.newPage();
    try {
      await page.route('**/v1/completions', (route) =>
        route.fulfill({ status: 200, contentType: 'text/event-stream', body: 'data: {"choices":[{"index":0,"text":"partial","sssd_sources":[{"text":"partial","source":"model"}]}]}\n\n' }),
      );
      await page.goto(`${stack.edgeUrl}/#key=${encodeURIComponent(stack.devKey)}`);
      await page.fill('#prompt', 'Tom had a red ball.');
      await page.click('#go');
      await page.waitForFunction(() => document.body.dataset.state !== 'streaming', undefined, { timeout: 30_000 });
      expect(await page.textContent('#error')).toBe('The reply was cut off before its end (7 characters arrived).');
      expect(await page.textContent('#output')).toBe('partial');
    } finally {
      await page.close();
    }
  });
  it('gives up on a stream silent past three times the edge\'s longest pause (a half-open connection), saying so and keeping what arrived', async () => {
    const page = await browser.newPage();
    link.mode = 'stall';
    const stalls = link.stalls;
    try {
      const seen = await throughLink(page);
      // The edge told the page its longest pause: a comment after 0.25 s of quiet, where a background stream read
      // again reads its kept events each second (1.25 s; stream-silence.ts).
      expect(await page.getAttribute('meta[name="sssd-stream-silence-ms"]', 'content')).toBe('1250');
      expect(link.stalls).toBe(stalls + 1);
      expect(seen.error).toBe('The connection stalled; the reply may be incomplete.');
      expect(seen.output.length).toBeGreaterThan(0);
      expect(seen.button).toBe('Generate');
      // Not before 3.75 s of silence; before, it streamed on for good (review h202).
      expect(seen.ms).toBeGreaterThanOrEqual(3_750);
    } finally {
      link.mode = 'pass';
      await page.close();
    }
  });

  it('says a reply was cut off, and how much of it arrived, when its connection is reset mid-reply, not the browser\'s "network error"', async () => {
    const page = await browser.newPage();
    link.mode = 'stall';
    try {
      // Reset once some text is on the page (a reset discards what the browser still holds unread), within the stall watch's 3.75 s.
      const shown = page.waitForSelector('#output span.tok', { timeout: 30_000 }).then(() => link.resetStalled());
      const seen = await throughLink(page);
      await shown;
      expect(seen.output.length).toBeGreaterThan(0);
      expect(seen.error).toBe(`The reply was cut off before its end (${seen.output.length} characters arrived).`);
      expect(seen.button).toBe('Generate');
    } finally {
      link.mode = 'pass';
      await page.close();
    }
  });

  it('waits out a pool frozen mid-reply past the page\'s stall watch: the edge\'s comments say the stream is alive', async () => {
    const page = await browser.newPage();
    // Frozen as the stream's headers pass (its first tokens came), for 4.5 s: past the page's 3.75 s, within the edge's 8 s stall window.
    let thawed: Promise<void> = Promise.resolve();
    link.onStream = () => {
      link.onStream = null;
      stack.pool.service.signal('SIGSTOP');
      thawed = new Promise((resolve) =>
        setTimeout(() => {
          stack.pool.service.signal('SIGCONT');
          resolve();
        }, 4_500),
      );
    };
    try {
      const seen = await throughLink(page);
      await thawed;
      expect(seen.error).toBe('');
      expect(seen.output.length).toBeGreaterThan(0);
      // The freeze fell within the reply: it ended after the thaw.
      expect(seen.ms).toBeGreaterThanOrEqual(4_500);
    } finally {
      link.onStream = null;
      await thawed;
      await page.close();
    }
  });
  it('takes a reply whole at its [DONE], whatever its link does after: a stall or a reset there is no error', async () => {
    for (const mode of ['stall-after-done', 'reset-after-done'] as const) {
      const page = await browser.newPage();
      link.mode = mode;
      const stalls = link.stalls;
      const resets = link.resetsAfterDone;
      try {
        await page.goto(`${link.url}/#key=${encodeURIComponent(stack.devKey)}`);
        await page.fill('#prompt', 'Once upon a time, there was a little girl named Lily.');
        await page.fill('#maxTokens', '32');
        await page.click('#go');
        // Over at [DONE] (before: streaming, Stop shown, until the page's 3.75 s stall watch said the link stalled).
        await page.waitForFunction(() => document.body.dataset.state !== 'streaming', undefined, { timeout: 30_000 });
        expect(link.stalls, mode).toBe(stalls + 1);
        if (mode === 'reset-after-done') {
          // The reset came, and said nothing on the page (before: "cut off" with the whole reply on it).
          await expect.poll(() => link.resetsAfterDone, { timeout: 5_000 }).toBe(resets + 1);
          await page.waitForTimeout(200);
        }
        expect(await page.evaluate(() => document.body.dataset.state), mode).toBe('done');
        expect(await page.textContent('#error'), mode).toBe('');
        expect(await page.textContent('#usage'), mode).toMatch(/tokens/);
        expect(((await page.textContent('#output')) ?? '').length, mode).toBeGreaterThan(0);
        expect(await page.textContent('#go'), mode).toBe('Generate');
      } finally {
        link.mode = 'pass';
        link.resetStalled();
        await page.close();
      }
    }
  });

  it('gives up on a request that no answer comes back for (a link lost as it went), past the edge\'s longest wait for a pool and its stall watch, and can generate again', async () => {
    const page = await browser.newPage();
    try {
      await page.goto(`${link.url}/#key=${encodeURIComponent(stack.devKey)}`);
      // The edge's longest wait before a stream's headers: one pool's 8 s stall window, and the 0.5 s heartbeat's grace.
      expect(await page.getAttribute('meta[name="sssd-headers-within-ms"]', 'content')).toBe('8500');
      await page.fill('#prompt', 'Tom had a red ball.');
      await page.fill('#maxTokens', '16');
      link.mode = 'withhold-answer';
      const stalls = link.stalls;
      const clickedAt = performance.now();
      await page.click('#go');
      // Before, it waited for good (review h208: still streaming after 45 s).
      await page.waitForFunction(() => document.body.dataset.state !== 'streaming', undefined, { timeout: 30_000 });
      const ms = performance.now() - clickedAt;
      expect(link.stalls).toBe(stalls + 1);
      expect(await page.evaluate(() => document.body.dataset.state)).toBe('done');
      expect(await page.textContent('#error')).toBe('No answer from the server; check your connection and try again.');
      expect(await page.textContent('#go')).toBe('Generate');
      // Not before the edge could have answered (8.5 s) and the page's 3.75 s stall watch more.
      expect(ms).toBeGreaterThanOrEqual(12_250);
      // The link back: Generate works again.
      link.mode = 'pass';
      await page.click('#go');
      await page.waitForSelector('body[data-state="done"]', { timeout: 30_000 });
      expect(await page.textContent('#error')).toBe('');
      expect(await page.$$eval('#output span.tok', (els) => els.length)).toBeGreaterThan(0);
    } finally {
      link.mode = 'pass';
      link.resetStalled();
      await page.close();
    }
  });
});
