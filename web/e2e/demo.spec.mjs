// Headless-Chromium end-to-end checks of the demo chat page (web/index.html + demo.js on the
// pam-client SDK) served by pam-gateway. Plain Node ESM script, no test framework:
//   node web/e2e/demo.spec.mjs path/to/pam-gateway
// It runs the gateway itself (so it can kill and restart it mid-answer) against a fake streaming
// model (harness.mjs), and writes a screenshot per step to target/browser-screenshots/.
// Prints `browser: N passed, M failed` and exits non-zero on any failure.

import { mkdirSync, rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { Gateway, SLOW_ANSWER, SLOW_WORDS, freePort, startFakeModel } from './harness.mjs';

const OVERALL_TIMEOUT_MS = 240_000;
const STEP_TIMEOUT_MS = 20_000;
const MAX_MESSAGE_CHARS = 200;
const ADMIN_TOKEN = 'browser-test-admin-token-0123456789';
const DEMO_USER = '5e1f0c3a-7d2b-4c8e-9a41-d3e0000000a1';
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SHOTS = resolve(REPO_ROOT, 'target', 'browser-screenshots');

const bin = process.argv[2];
if (!bin) {
  console.error('usage: node web/e2e/demo.spec.mjs path/to/pam-gateway');
  process.exit(2);
}

let passed = 0;
let failed = 0;
let browser = null;
let gateway = null;
let model = null;
const figures = [];

function summary() {
  for (const figure of figures) console.log(`figure - ${figure}`);
  console.log(`browser: ${passed} passed, ${failed} failed`);
}

async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  if (gateway) await gateway.stop().catch(() => {});
  if (model) model.close();
}

// Hard stop: whatever hangs, the script ends within the overall timeout.
const watchdog = setTimeout(async () => {
  console.error(`FAIL: overall timeout of ${OVERALL_TIMEOUT_MS / 1000} s reached`);
  failed++;
  summary();
  await cleanup();
  process.exit(1);
}, OVERALL_TIMEOUT_MS);
watchdog.unref();

// Runs one named check; a failed check stops the run (later checks build on the page's state).
async function check(name, fn) {
  const started = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok   - ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed++;
    console.error(`FAIL - ${name}: ${e && e.message ? e.message : e}`);
    throw new Error('stopping after a failed check');
  }
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

let shot = 0;
async function screenshot(page, name) {
  shot++;
  const path = resolve(SHOTS, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path, fullPage: true });
}

async function describe(page) {
  const status = page.locator('#status');
  const state = await status.getAttribute('data-state').catch(() => '?');
  const text = await status.textContent().catch(() => '?');
  const messages = await page.locator('#messages .msg').allTextContents().catch(() => []);
  return `status ${state} ${JSON.stringify(text)}; messages ${JSON.stringify(messages.slice(-6))}`;
}

/** Waits for `locator`, failing with what the page shows. */
async function waitFor(page, locator, what, options = {}) {
  try {
    await locator.waitFor({ state: 'visible', ...options });
  } catch (e) {
    throw new Error(`${what} did not happen: ${await describe(page)}`);
  }
}

const statusIn = (page, states) => page.locator(states.map((s) => `#status[data-state="${s}"]`).join(', '));
const counter = async (page, name) => Number(await page.locator('#status').getAttribute(`data-${name}`));

/** Types `text` into the box and sends it; returns the chat id the page gave it. */
async function sendTyped(page, text) {
  const input = page.locator('#input');
  await input.fill(text);
  await input.press('Enter');
  const mine = page.locator('#messages .msg.user', { hasText: text }).last();
  await mine.waitFor();
  return mine.getAttribute('data-chat-id');
}

const answerOf = (page, chatId) => page.locator(`#messages .msg.assistant[data-chat-id="${chatId}"]`);
const doneAnswer = (page, chatId) => page.locator(`#messages .msg.assistant[data-done][data-chat-id="${chatId}"]`);

async function push(body) {
  const res = await fetch(`${gateway.url}/api/v1/pam/push`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ user_id: DEMO_USER, ...body }),
  });
  const text = await res.text();
  assert(res.status === 202, `POST /api/v1/pam/push answered ${res.status}: ${text}`);
  return JSON.parse(text).id;
}

async function main() {
  rmSync(SHOTS, { recursive: true, force: true });
  mkdirSync(SHOTS, { recursive: true });
  model = await startFakeModel();
  gateway = new Gateway({
    bin,
    port: await freePort(),
    env: {
      OPENAI_API_KEY: 'fake-key-for-the-browser-test',
      OPENAI_BASE_URL: model.url,
      PAM_MAX_MESSAGE_CHARS: String(MAX_MESSAGE_CHARS),
      PAM_ADMIN_TOKEN: ADMIN_TOKEN,
    },
  });
  await gateway.start();
  console.log(`       gateway ${gateway.url}, fake model ${model.url}`);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: STEP_TIMEOUT_MS,
  });
  const context = await browser.newContext({ viewport: { width: 900, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  const pageErrors = [];
  page.on('pageerror', (err) => pageErrors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    // A killed gateway makes Chromium log failed socket/HTTP attempts; only script errors count.
    if (msg.type() === 'error' && !/WebSocket|Failed to load resource|ERR_/.test(msg.text())) pageErrors.push(`console: ${msg.text()}`);
  });

  // A second tab, in a context of its own (not taken offline), holds a 90 s token and idles
  // while the other checks run; it must still be on its first socket past the token's exp.
  const tabContext = await browser.newContext({ viewport: { width: 900, height: 800 } });
  const tab = await tabContext.newPage();
  tab.setDefaultTimeout(STEP_TIMEOUT_MS);
  tab.on('pageerror', (err) => pageErrors.push(`tab pageerror: ${err.message}`));
  let refreshSeenAt = null;
  const refreshedAt = () => refreshSeenAt ?? Date.now();
  const tabLoadedAt = Date.now();
  await check('a tab with a 90 s dev token goes live', async () => {
    await tab.goto(`${gateway.url}/?token_ttl=90`, { waitUntil: 'domcontentloaded' });
    await waitFor(tab, statusIn(tab, ['live']), 'the tab going live');
    tab.waitForFunction(() => Number(document.querySelector('#status').dataset.refreshes) >= 1, null, { timeout: 80_000 })
      .then(() => { refreshSeenAt = Date.now(); }, () => {});
  });

  await check('the page loads with a CSP and goes live on the SDK', async () => {
    const response = await page.goto(`${gateway.url}/`, { waitUntil: 'domcontentloaded' });
    assert(response && response.status() === 200, `GET / returned ${response && response.status()}`);
    const csp = (await response.allHeaders())['content-security-policy'] || '';
    assert(csp.includes("script-src 'self'"), `CSP is ${JSON.stringify(csp)}`);
    await waitFor(page, statusIn(page, ['live']), 'going live');
    assert(/^Live/.test(await page.locator('#status').textContent()), 'status text does not say Live');
    await screenshot(page, 'live');
  });

  await check('a chat is answered, and a slow answer streams in before it ends', async () => {
    const hi = await sendTyped(page, 'Hi PAM');
    await waitFor(page, doneAnswer(page, hi), 'the answer to "Hi PAM"');
    const text = await answerOf(page, hi).locator('.text').textContent();
    assert(text === 'You said: Hi PAM', `answer is ${JSON.stringify(text)}`);
    assert((await page.locator('#input').inputValue()) === '', 'the box was not cleared after sending');

    const slow = await sendTyped(page, 'tell me something slow');
    const answer = answerOf(page, slow);
    await waitFor(page, page.locator(`#messages .msg.assistant.streaming[data-chat-id="${slow}"]`), 'streaming');
    await page.waitForFunction((id) => {
      const el = document.querySelector(`#messages .msg.assistant[data-chat-id="${id}"] .text`);
      return el && el.textContent.split(' ').length >= 5;
    }, slow);
    const partial = await answer.locator('.text').textContent();
    assert(partial.length < SLOW_ANSWER.length && SLOW_ANSWER.startsWith(partial), `mid-stream text ${JSON.stringify(partial)}`);
    await screenshot(page, 'streaming');
    await waitFor(page, doneAnswer(page, slow), 'the slow answer ending');
    assert((await answer.locator('.text').textContent()) === SLOW_ANSWER, 'the streamed answer differs from the model\'s');
  });

  await check(`the box is held to the server's PAM_MAX_MESSAGE_CHARS (${MAX_MESSAGE_CHARS}, learnt from /dev/config); refused text stays in the box`, async () => {
    const input = page.locator('#input');
    const long = '🚐'.repeat(MAX_MESSAGE_CHARS + 1); // code points, as the server counts
    await input.fill(long);
    assert((await page.locator('#counter').textContent()) === `${MAX_MESSAGE_CHARS + 1} / ${MAX_MESSAGE_CHARS}`, 'counter is wrong');
    assert((await page.locator('#input').getAttribute('aria-invalid')) === 'true', 'the box is not marked invalid over the limit');
    await input.press('Enter');
    await waitFor(page, page.locator('#messages .msg.system.error', { hasText: `at most ${MAX_MESSAGE_CHARS}` }), 'the refusal note');
    assert((await input.inputValue()) === long, 'the refused text was not kept in the box');
    await screenshot(page, 'input-limit');
    // Within the limit but refused by the server (a NUL character): the text comes back too.
    const refused = 'keep this \u0000 text';
    await input.fill(refused);
    await input.press('Enter');
    await waitFor(page, page.locator('#messages .msg.system.error', { hasText: 'VALIDATION_ERROR' }), 'the server refusing the message');
    await page.waitForFunction((text) => document.querySelector('#input').value === text, refused);
    await input.fill('');
  });

  await check('offline → two messages typed → online: each is answered once', async () => {
    await context.setOffline(true);
    await page.evaluate(() => window.dispatchEvent(new Event('offline')));
    const first = await sendTyped(page, 'offline message one');
    const second = await sendTyped(page, 'offline message two');
    await waitFor(page, statusIn(page, ['offline']), 'showing offline');
    await page.waitForTimeout(1_000);
    assert((await answerOf(page, first).count()) + (await answerOf(page, second).count()) === 0, 'answered while offline');
    await screenshot(page, 'offline-typed');
    await context.setOffline(false);
    await page.evaluate(() => window.dispatchEvent(new Event('online')));
    for (const id of [first, second]) {
      await waitFor(page, doneAnswer(page, id), `the answer to chat ${id}`, { timeout: 30_000 });
      assert((await answerOf(page, id).count()) === 1, `chat ${id} has more than one answer`);
    }
    assert((await answerOf(page, first).locator('.text').textContent()) === 'You said: offline message one', 'first answer');
    assert((await answerOf(page, second).locator('.text').textContent()) === 'You said: offline message two', 'second answer');
    for (const message of ['offline message one', 'offline message two']) {
      assert(model.requests.get(message) === 1, `the model was asked ${model.requests.get(message)} times for "${message}"`);
    }
    await waitFor(page, statusIn(page, ['live', 'resumed']), 'showing the connection again after going online');
    await screenshot(page, 'offline-answered');
  });

  await check('a pushed alert and timer show as toasts; Dismiss stops their redelivery (reload → none)', async () => {
    const alert = await push({ type: 'proactive_alert', content: { type: 'alert', category: 'financial_guidance', alert_type: 'budget_alert',
      message: 'Fuel is at 85% of its budget', priority: 'high', actions: ['analyze_expenses'] } });
    const timer = await push({ type: 'timer_expired', label: 'Check the tyre pressure', timer_type: 'timer', message: 'Time to check the tyre pressure' });
    const toastOf = (id) => page.locator(`#toasts .toast[data-push-id="${id}"]`);
    await waitFor(page, toastOf(alert), 'the alert toast');
    await waitFor(page, toastOf(timer), 'the timer toast');
    await screenshot(page, 'toasts');
    // Undismissed, the timer comes back on the next connect.
    await page.reload({ waitUntil: 'domcontentloaded' });
    await waitFor(page, toastOf(timer), 'the undismissed timer toast after a reload');
    for (const id of [alert, timer]) {
      if (await toastOf(id).count()) await toastOf(id).getByRole('button', { name: 'Dismiss' }).click();
      assert((await toastOf(id).count()) === 0, `toast ${id} is still shown after Dismiss`);
    }
    await page.waitForTimeout(1_000); // the dismiss frame reaches the server
    await page.reload({ waitUntil: 'domcontentloaded' });
    await waitFor(page, statusIn(page, ['live']), 'going live after the reload');
    await page.waitForTimeout(2_000);
    assert((await page.locator('#toasts .toast').count()) === 0, 'a dismissed push came back after a reload');
    await screenshot(page, 'dismissed-reloaded');
  });

  await check('the 90 s token of the second tab is refreshed in-band (auth_refresh): still one socket past its exp', async () => {
    // auth_expiring comes 60 s before exp: ~30 s after the tab fetched its token.
    await tab.waitForFunction(() => Number(document.querySelector('#status').dataset.refreshes) >= 1, null, { timeout: 60_000 });
    figures.push(`token refreshed ${((refreshedAt() - tabLoadedAt) / 1000).toFixed(1)} s after the tab loaded (token TTL 90 s)`);
    // Without the refresh the server closes with 4401 at the old token's exp (90 s).
    const wait = tabLoadedAt + 95_000 - Date.now();
    if (wait > 0) await tab.waitForTimeout(wait);
    assert((await counter(tab, 'sockets')) === 1, `the tab reconnected (${await counter(tab, 'sockets')} sockets)`);
    assert((await tab.locator('#status').getAttribute('data-state')) === 'live', await describe(tab));
    const after = await sendTyped(tab, 'still here after the refresh');
    await waitFor(tab, doneAnswer(tab, after), 'an answer after the refresh');
    await screenshot(tab, 'token-refreshed-tab');
  });

  await check('the gateway is killed mid-answer and restarted: the page resumes and shows the whole answer once', async () => {
    const asked = model.requests.get('slow answer across a restart') || 0;
    const id = await sendTyped(page, 'slow answer across a restart');
    await page.waitForFunction((chat) => {
      const el = document.querySelector(`#messages .msg.assistant[data-chat-id="${chat}"] .text`);
      return el && el.textContent.split(' ').length >= 8;
    }, id);
    const before = await answerOf(page, id).locator('.text').textContent();
    await screenshot(page, 'before-kill');
    const killedAt = Date.now();
    await gateway.kill();
    await waitFor(page, statusIn(page, ['reconnecting', 'connecting']), 'noticing the dead server');
    await screenshot(page, 'reconnecting');
    await gateway.start();
    const readyAt = Date.now();
    await waitFor(page, statusIn(page, ['resumed']), 'resuming', { timeout: 30_000 });
    const resumedAt = Date.now();
    await screenshot(page, 'resumed');
    await waitFor(page, doneAnswer(page, id), 'the answer ending after the restart', { timeout: 30_000 });
    const doneAt = Date.now();
    const text = await answerOf(page, id).locator('.text').textContent();
    assert(text === SLOW_ANSWER, `answer after the restart is ${JSON.stringify(text)}`);
    assert((await answerOf(page, id).count()) === 1, 'more than one answer bubble');
    assert((await page.locator(`#messages .msg.user[data-chat-id="${id}"]`).count()) === 1, 'the question shows twice');
    for (const word of SLOW_WORDS.slice(0, 3)) {
      assert(text.split(word + ' ').length === 2, `"${word}" appears more than once: text was duplicated`);
    }
    assert((model.requests.get('slow answer across a restart') || 0) - asked === 2, 'the model was not asked exactly twice (before and after the kill)');
    figures.push(`resume after restart: kill → page "resumed" ${((resumedAt - killedAt) / 1000).toFixed(2)} s ` +
      `(gateway answering /health/live → "resumed" ${((resumedAt - readyAt) / 1000).toFixed(2)} s; ` +
      `kill → whole answer shown ${((doneAt - killedAt) / 1000).toFixed(2)} s; ${before.split(' ').length} words had streamed before the kill)`);
    console.log(`       status: ${await page.locator('#status').textContent()}`);
    await screenshot(page, 'answer-after-restart');
  });

  await check('a gateway with a new dev key closes 4501: the page fetches a new token once and goes live', async () => {
    await gateway.kill();
    rmSync(gateway.keyFile, { force: true });
    await gateway.start();
    await waitFor(page, statusIn(page, ['resumed']), 'reconnecting with a new token', { timeout: 30_000 });
    await screenshot(page, 'new-key-new-token');
  });

  await check('no script errors on the page', async () => {
    assert(pageErrors.length === 0, pageErrors.join(' | '));
  });
}

try {
  await main();
} catch (e) {
  if (!/stopping after a failed check/.test(String(e && e.message))) {
    failed++;
    console.error(`FAIL - browser run: ${e && e.message ? e.message : e}`);
  }
  if (gateway) console.error(`gateway log tail:\n${gateway.tail()}`);
}
console.log(`       screenshots: ${SHOTS}`);
await cleanup();
clearTimeout(watchdog);
summary();
process.exit(failed === 0 && passed > 0 ? 0 : 1);
