// Headless-Chromium end-to-end check of the demo chat page (web/index.html) served by pam-gateway.
// Plain Node ESM script, no test framework:
//   node web/e2e/demo.spec.mjs http://127.0.0.1:PORT
// Needs a gateway running with dev auth on (scripts/browser-test.sh starts one).
// Prints `browser: N passed, M failed` and exits non-zero on any failure.

import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const OVERALL_TIMEOUT_MS = 60_000;
const STEP_TIMEOUT_MS = 15_000;
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCREENSHOT = resolve(REPO_ROOT, 'target', 'browser-demo.png');

const baseUrl = process.argv[2];
if (!baseUrl || !/^https?:\/\//.test(baseUrl)) {
  console.error('usage: node web/e2e/demo.spec.mjs http://127.0.0.1:PORT');
  process.exit(2);
}

let passed = 0;
let failed = 0;
let browser = null;

function summary() {
  console.log(`browser: ${passed} passed, ${failed} failed`);
}

// Hard stop: whatever hangs, the script ends within the overall timeout.
const watchdog = setTimeout(() => {
  console.error(`FAIL: overall timeout of ${OVERALL_TIMEOUT_MS / 1000} s reached`);
  failed++;
  summary();
  if (browser) browser.close().catch(() => {});
  process.exit(1);
}, OVERALL_TIMEOUT_MS);
watchdog.unref();

// Runs one named check; a failing check fails the run but later independent checks still run
// only when `fatal` is false (checks that later ones depend on are fatal).
async function check(name, fn, { fatal = true } = {}) {
  try {
    await fn();
    passed++;
    console.log(`ok   - ${name}`);
    return true;
  } catch (e) {
    failed++;
    console.error(`FAIL - ${name}: ${e && e.message ? e.message.split('\n')[0] : e}`);
    if (fatal) throw new Error('stopping after a failed check');
    return false;
  }
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

async function main() {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: STEP_TIMEOUT_MS,
  });
  const context = await browser.newContext({ viewport: { width: 900, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);

  const consoleErrors = [];
  const notes = [];
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const url = (msg.location() && msg.location().url) || '';
    // Chromium's own favicon probe: the gateway serves no /favicon.ico. Noted, not failed.
    if (/^https?:\/\/[^/]+\/favicon\.ico$/.test(url) && /status of 404/.test(msg.text())) {
      notes.push(`GET /favicon.ico returned 404 (browser favicon probe; ignored)`);
      return;
    }
    consoleErrors.push(`console: ${msg.text()}${url ? ` (${url})` : ''}`);
  });
  page.on('pageerror', (err) => consoleErrors.push(`pageerror: ${err.message}`));

  const assistant = page.locator('#messages .msg.assistant');
  let response = null;

  try {
    await check('page loads with a CSP header', async () => {
      response = await page.goto(baseUrl + '/', { waitUntil: 'domcontentloaded' });
      assert(response, 'no response for GET /');
      assert(response.status() === 200, `GET / returned HTTP ${response.status()}`);
      const csp = (await response.allHeaders())['content-security-policy'];
      assert(csp && csp.trim(), 'no Content-Security-Policy header on GET /');
      console.log(`       CSP: ${csp}`);
    });

    await check('status shows connected', async () => {
      try {
        await page.locator('#status[data-state="open"]').waitFor({ state: 'attached' });
      } catch (e) {
        const state = await page.locator('#status').getAttribute('data-state').catch(() => '?');
        const text = await page.locator('#status').textContent().catch(() => '?');
        const banner = await page.locator('#banner').textContent().catch(() => '');
        throw new Error(`#status never reached data-state="open" (state=${state}, text=${JSON.stringify(text)}` +
          `${banner ? `, banner=${JSON.stringify(banner)}` : ''})`);
      }
      const text = (await page.locator('#status').textContent()) || '';
      assert(/connected/i.test(text), `#status text is ${JSON.stringify(text)}, expected "Connected"`);
    });

    await check('"What can you do?" suggestion gets an answer about PAM/budget', async () => {
      const button = page.getByRole('button', { name: 'What can you do?', exact: true });
      await button.click();
      await page.locator('#messages .msg.user', { hasText: 'What can you do?' }).waitFor();
      const answer = assistant.filter({ hasText: /PAM|budget/ }).first();
      try {
        await answer.waitFor();
      } catch (e) {
        const all = await page.locator('#messages .msg').allTextContents();
        throw new Error(`no assistant message mentioning PAM or budget; messages: ${JSON.stringify(all)}`);
      }
      const n = await assistant.count();
      assert(n === 1, `expected 1 assistant message, found ${n}`);
    });

    await check('typed "Hi PAM" + Enter gets a second answer starting "Hi there"', async () => {
      const input = page.locator('#input');
      await input.click();
      await input.pressSequentially('Hi PAM');
      await input.press('Enter');
      await page.locator('#messages .msg.user', { hasText: 'Hi PAM' }).waitFor();
      try {
        await assistant.nth(1).waitFor();
      } catch (e) {
        const all = await page.locator('#messages .msg').allTextContents();
        throw new Error(`no second assistant message; messages: ${JSON.stringify(all)}`);
      }
      const text = ((await assistant.nth(1).locator('.text').textContent()) || '').trim();
      assert(text.startsWith('Hi there'), `second answer starts ${JSON.stringify(text.slice(0, 60))}, expected "Hi there"`);
      assert((await input.inputValue()) === '', 'input was not cleared after sending');
      await page.locator('#thinking').waitFor({ state: 'hidden' });
    });
  } catch (e) {
    // A fatal check failed; fall through to the screenshot and console check.
  }

  await check('no console errors or page errors', async () => {
    assert(consoleErrors.length === 0, consoleErrors.join(' | '));
  }, { fatal: false });
  for (const note of new Set(notes)) console.log(`note - ${note}`);

  try {
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    console.log(`       screenshot: ${SCREENSHOT}`);
  } catch (e) {
    console.error(`warning: could not save the screenshot: ${e.message}`);
  }

  await browser.close();
  browser = null;
}

try {
  await main();
} catch (e) {
  failed++;
  console.error(`FAIL - browser run: ${e && e.message ? e.message.split('\n')[0] : e}`);
  if (browser) await browser.close().catch(() => {});
}
clearTimeout(watchdog);
summary();
process.exit(failed === 0 && passed > 0 ? 0 : 1);
