// Headless-Chromium end-to-end checks of the demo chat page (web/index.html + demo.js on the
// pam-client SDK) served by pam-gateway. Plain Node ESM script, no test framework:
//   node web/e2e/demo.spec.mjs path/to/pam-gateway
// It runs the gateway itself (so it can kill and restart it mid-answer, or restart it cleanly)
// against a fake streaming model (harness.mjs), and writes a screenshot per step to
// target/browser-screenshots/ (kept by CI). Besides the chat itself it measures what a first
// hour with the demo shows: text contrast (WCAG AA 4.5:1, from computed styles, light and dark),
// at most three toasts that never cover the status line or the input, the conversation shown
// again after a reload, and a clean restart shown on the status line, not as an error bubble.
// Prints `browser: N passed, M failed` and exits non-zero on any failure.

import { mkdirSync, rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { Gateway, SLOW_ANSWER, SLOW_WORDS, freePort, startFakeModel } from './harness.mjs';

const OVERALL_TIMEOUT_MS = 240_000;
const STEP_TIMEOUT_MS = 20_000;
const MAX_MESSAGE_CHARS = 200;
// Toasts that need no decision hide after this long (the page's `?toast_ms=`; 8 s by default).
const TOAST_MS = 2_500;
const MIN_CONTRAST = 4.5;
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

/**
 * Contrast of every visible piece of text on the page (WCAG 2 ratio, text colour composited over
 * the backgrounds behind it, from computed styles): each element's own text, the box's value and
 * placeholder, and text drawn by ::before. Disabled controls are exempt (WCAG 1.4.3). Large text
 * (24 px, or 18.66 px bold) needs 3:1, the rest 4.5:1.
 */
async function contrastReport(page) {
  return page.evaluate(() => {
    const parse = (text) => {
      const m = /rgba?\(([^)]+)\)/.exec(text || '');
      if (!m) return null;
      const p = m[1].split(/[\s,/]+/).filter(Boolean).map(Number);
      return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
    };
    const over = (top, under) => ({ r: top.r * top.a + under.r * (1 - top.a), g: top.g * top.a + under.g * (1 - top.a),
      b: top.b * top.a + under.b * (1 - top.a), a: 1 });
    const background = (el) => {
      const layers = [];
      for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
        const bg = parse(getComputedStyle(node).backgroundColor);
        if (bg && bg.a > 0) layers.push(bg);
      }
      const canvas = parse(getComputedStyle(document.documentElement).backgroundColor);
      let color = canvas && canvas.a > 0 ? over(canvas, { r: 255, g: 255, b: 255, a: 1 }) : { r: 255, g: 255, b: 255, a: 1 };
      for (const layer of layers.reverse()) color = over(layer, color);
      return color;
    };
    const luminance = ({ r, g, b }) => {
      const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const ratio = (fg, bg) => {
      const [a, b] = [luminance(over(fg, bg)), luminance(bg)];
      return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    };
    const visible = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden' && !el.closest('[hidden], [aria-hidden="true"]');
    const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\s+/).join('.') : '');
    const results = [];
    const measure = (el, style, text, what) => {
      const size = parseFloat(style.fontSize);
      const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
      const fg = parse(style.color);
      if (!fg) return;
      const value = ratio(fg, background(el));
      results.push({ what: `${name(el)}${what} ${JSON.stringify(text.slice(0, 40))}`, ratio: Math.round(value * 100) / 100, needed: large ? 3 : 4.5 });
    };
    for (const el of document.body.querySelectorAll('*')) {
      if (!visible(el) || el.matches(':disabled') || ['SCRIPT', 'STYLE'].includes(el.tagName)) continue;
      const own = Array.from(el.childNodes).filter((n) => n.nodeType === 3).map((n) => n.textContent).join('').trim();
      if (own) measure(el, getComputedStyle(el), own, '');
      if (el.tagName === 'INPUT') {
        if (el.value) measure(el, getComputedStyle(el), el.value, ' (value)');
        else if (el.placeholder) measure(el, getComputedStyle(el, '::placeholder'), el.placeholder, '::placeholder');
      }
      const before = getComputedStyle(el, '::before');
      const content = before.content && before.content !== 'none' && before.content !== 'normal' ? before.content.replace(/^"|"$/g, '') : '';
      // Letters only: the status dot ("●") is a mark, not text.
      if (/[A-Za-z]/.test(content)) measure(el, before, content, '::before');
    }
    const failures = results.filter((r) => r.ratio < r.needed);
    const min = results.reduce((m, r) => Math.min(m, r.ratio), Infinity);
    const hint = results.filter((r) => r.what.startsWith('small.meta') && r.what.includes('answered'));
    return { checked: results.length, min, failures, answeredHint: hint.length ? Math.min(...hint.map((h) => h.ratio)) : null };
  });
}

async function assertContrast(page, when) {
  const report = await contrastReport(page);
  assert(report.checked > 10, `only ${report.checked} text elements measured (${when})`);
  assert(report.failures.length === 0, `text under ${MIN_CONTRAST}:1 (${when}): ${report.failures.map((f) => `${f.what} ${f.ratio}:1`).join('; ')}`);
  return report;
}

/** The boxes of the visible toasts, the status line and the composer: no toast may overlap either. */
async function toastOverlaps(page) {
  return page.evaluate(() => {
    const box = (el) => el.getBoundingClientRect();
    const overlap = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
    // What of a toast shows: its box cut to the toast area's (which scrolls when they do not fit).
    const area = box(document.querySelector('#toasts'));
    const shown = (r) => ({ left: Math.max(r.left, area.left), right: Math.min(r.right, area.right),
      top: Math.max(r.top, area.top), bottom: Math.min(r.bottom, area.bottom) });
    const guarded = ['#status', '#composer'].map((sel) => [sel, box(document.querySelector(sel))]);
    const found = [];
    for (const toast of document.querySelectorAll('#toasts .toast, #toasts .toast-more')) {
      const t = shown(box(toast));
      if (t.bottom <= t.top || t.right <= t.left) continue;
      for (const [sel, b] of guarded) if (overlap(t, b)) found.push(`${toast.dataset.pushId || 'more'} covers ${sel}`);
    }
    return found;
  });
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

  await check('the page loads with a CSP and goes live on the SDK; every text has at least 4.5:1 contrast', async () => {
    const response = await page.goto(`${gateway.url}/?toast_ms=${TOAST_MS}`, { waitUntil: 'domcontentloaded' });
    assert(response && response.status() === 200, `GET / returned ${response && response.status()}`);
    const csp = (await response.allHeaders())['content-security-policy'] || '';
    assert(csp.includes("script-src 'self'"), `CSP is ${JSON.stringify(csp)}`);
    await waitFor(page, statusIn(page, ['live']), 'going live');
    assert(/^Live/.test(await page.locator('#status').textContent()), 'status text does not say Live');
    await page.waitForSelector('#messages[data-history-loaded]', { state: 'attached' });
    assert((await page.locator('#messages .msg').count()) === 0, 'a new tab starts with an empty conversation');
    const report = await assertContrast(page, 'first load');
    figures.push(`contrast on first load: min ${report.min.toFixed(2)}:1 over ${report.checked} text elements`);
    await screenshot(page, 'first-load');
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
    const meta = await answer.locator('.meta').textContent();
    const parts = meta.split(' · ');
    assert(parts[0] === 'openai' && /^\d+ ms$/.test(parts.at(-1)) && new Set(parts).size === parts.length,
      `the answer's footer names the provider once, then the model and the time: ${JSON.stringify(meta)}`);
    const report = await assertContrast(page, 'answered chats');
    assert(report.answeredHint !== null && report.answeredHint >= MIN_CONTRAST, `the "answered" hint has ${report.answeredHint}:1`);
    figures.push(`contrast with answers (light): min ${report.min.toFixed(2)}:1 over ${report.checked} text elements; "answered" hint ${report.answeredHint}:1`);
    await screenshot(page, 'streamed-answer');
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
    const note = await toastOf(timer).locator('.note').textContent();
    assert(/comes back each time you open PAM until you dismiss it/.test(note), `the timer toast explains its return: ${JSON.stringify(note)}`);
    await screenshot(page, 'timer-toast');
    // Undismissed, the timer comes back on the next connect.
    await page.reload({ waitUntil: 'domcontentloaded' });
    await waitFor(page, toastOf(timer), 'the undismissed timer toast after a reload');
    // The conversation so far is shown again, oldest first, from `client.history()`.
    await page.waitForSelector('#messages[data-history-loaded]', { state: 'attached' });
    const users = await page.locator('#messages .msg.user[data-history] .text').allTextContents();
    assert(JSON.stringify(users) === JSON.stringify(['Hi PAM', 'tell me something slow', 'offline message one', 'offline message two']),
      `the questions shown after the reload: ${JSON.stringify(users)}`);
    const answers = await page.locator('#messages .msg.assistant[data-history] .text').allTextContents();
    assert(answers[0] === 'You said: Hi PAM' && answers[1] === SLOW_ANSWER && answers.length === 4, `the answers shown after the reload: ${JSON.stringify(answers)}`);
    await waitFor(page, page.locator('#messages .history-divider'), 'the "earlier in this conversation" divider');
    await screenshot(page, 'reload-history');
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

  await check('toasts: at most three at once, the ones needing no decision hide, the rest wait in line; none covers the status line or the input', async () => {
    await page.evaluate(() => {
      window.__maxToasts = 0;
      const box = document.querySelector('#toasts');
      new MutationObserver(() => {
        window.__maxToasts = Math.max(window.__maxToasts, box.querySelectorAll('.toast').length);
      }).observe(box, { childList: true });
    });
    const alerts = [];
    for (let i = 1; i <= 5; i++) {
      alerts.push(await push({ type: 'proactive_alert', content: { type: 'alert', category: 'general', alert_type: 'trip_tip', message: `Tip ${i}: top up water before the pass`, priority: 'normal' } }));
    }
    const timer = await push({ type: 'timer_expired', label: 'Move the van', timer_type: 'alarm', message: 'Time to move the van' });
    const question = await push({ type: 'proactive_alert', content: { type: 'proactive_suggestion', category: 'financial_guidance', alert_type: 'budget_alert',
      message: "You've gone over your fuel budget: $412.00 spent of $400.00 this month (103%). Want me to look for savings?", priority: 'high', actions: ['analyze_expenses'] } });
    const toastOf = (id) => page.locator(`#toasts .toast[data-push-id="${id}"]`);
    await waitFor(page, toastOf(question), 'the budget question toast');
    await waitFor(page, toastOf(timer), 'the alarm toast');
    assert((await toastOf(question).getByRole('button', { name: 'Look for savings' }).count()) === 1, 'the question offers its answer as a button');
    // Those needing no decision hide by themselves; the alarm and the question stay.
    await page.waitForFunction(() => document.querySelectorAll('#toasts .toast').length === 2, null, { timeout: TOAST_MS * 3 });
    assert((await toastOf(timer).count()) === 1 && (await toastOf(question).count()) === 1, 'the toasts needing a decision are still shown');
    // Three more alarms: one waits in line behind the three shown.
    const more = [];
    for (const label of ['Check the tyres', 'Call the campground', 'Close the awning']) {
      more.push(await push({ type: 'timer_expired', label, timer_type: 'timer', message: label }));
    }
    await waitFor(page, page.locator('#toasts .toast-more', { hasText: '+2 more waiting' }), 'the "+2 more waiting" line');
    assert((await page.locator('#toasts .toast').count()) === 3, 'three toasts shown');
    const covering = await toastOverlaps(page);
    assert(covering.length === 0, covering.join('; '));
    const report = await assertContrast(page, 'toasts shown');
    await page.emulateMedia({ colorScheme: 'dark' });
    const dark = await assertContrast(page, 'dark scheme');
    await screenshot(page, 'toasts-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    figures.push(`contrast with toasts: min ${report.min.toFixed(2)}:1 (light, ${report.checked} texts), min ${dark.min.toFixed(2)}:1 (dark, ${dark.checked} texts)`);
    // A phone-sized window: the toasts stay inside the conversation area.
    await page.setViewportSize({ width: 390, height: 700 });
    const narrow = await toastOverlaps(page);
    await screenshot(page, 'toasts-narrow');
    await page.setViewportSize({ width: 900, height: 800 });
    assert(narrow.length === 0, `on a narrow window: ${narrow.join('; ')}`);
    await screenshot(page, 'toasts-stacked');
    // Dismissing lets the ones in line in, never more than three at once.
    for (const id of [timer, question, ...more]) {
      await waitFor(page, toastOf(id), `toast ${id}`);
      await toastOf(id).getByRole('button', { name: 'Dismiss' }).click();
    }
    await page.waitForFunction(() => document.querySelectorAll('#toasts .toast, #toasts .toast-more').length === 0);
    const max = await page.evaluate(() => window.__maxToasts);
    assert(max <= 3, `${max} toasts were shown at once`);
    figures.push(`toasts: ${alerts.length + more.length + 2} pushed, at most ${max} shown at once`);
  });

  // Before any restart: the second tab must still be on its first socket.
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

  await check('a clean restart (SIGTERM, close 1012) shows on the status line — reconnecting, then resumed — not as an error bubble', async () => {
    const errorsBefore = await page.locator('#messages .msg.system.error').count();
    await page.evaluate(() => {
      const status = document.querySelector('#status');
      window.__statusLog = [];
      new MutationObserver(() => {
        const entry = `${status.dataset.state}: ${status.textContent}`;
        if (window.__statusLog[window.__statusLog.length - 1] !== entry) window.__statusLog.push(entry);
      }).observe(status, { attributes: true, childList: true, characterData: true, subtree: true });
    });
    await gateway.terminate();
    await waitFor(page, statusIn(page, ['reconnecting', 'connecting']), 'the status line saying it reconnects');
    await screenshot(page, 'clean-restart-reconnecting');
    await gateway.start();
    await waitFor(page, statusIn(page, ['resumed']), 'resuming after the restart', { timeout: 30_000 });
    await screenshot(page, 'clean-restart-resumed');
    const log = await page.evaluate(() => window.__statusLog);
    assert(log.some((e) => e.startsWith('reconnecting: ')), `the status line said it was reconnecting: ${JSON.stringify(log)}`);
    assert((await page.locator('#messages .msg.system.error').count()) === errorsBefore, 'a clean restart added an error bubble');
    const text = await page.locator('#messages').textContent();
    assert(!text.includes('SERVICE_RESTART'), 'SERVICE_RESTART is shown in the conversation');
    console.log(`       status: ${log.join(' → ')}`);
    const after = await sendTyped(page, 'still here after the restart');
    await waitFor(page, doneAnswer(page, after), 'an answer after the clean restart');
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
