// The demo chat page on the pam-client SDK (served at /pam-client.js): dev token, v2 socket with
// streaming, resume across server restarts, in-band token refresh, pushes as toasts. A module
// file of its own so the CSP needs no unsafe-inline.
//
// Test hooks (read by web/e2e): `?token_ttl=N` asks /dev/token for N-second tokens; #status
// carries data-state, data-sockets (sockets opened), data-refreshes (tokens fetched for an
// `auth_refresh`) and data-resumes; every chat's bubbles carry data-chat-id.
import { PamClient } from '/pam-client.js';

const $ = (id) => document.getElementById(id);
const statusEl = $('status'), list = $('messages'), scroller = $('scroller'), banner = $('banner'),
      form = $('composer'), input = $('input'), sendBtn = $('send'), counter = $('counter'), toasts = $('toasts');
const suggestions = Array.from(document.querySelectorAll('#suggestions button'));
const params = new URLSearchParams(location.search);
const TOKEN_TTL_S = Number(params.get('token_ttl')) || undefined;
// Server errors that refuse a message as written: its text goes back into the box.
const REFUSALS = new Set(['MESSAGE_TOO_LARGE', 'EMPTY_MESSAGE', 'VALIDATION_ERROR', 'RATE_LIMIT_EXCEEDED']);

let maxChars = null;
let auth = null;
let client = null;
let refetchedAfter4501 = false;
let countdown = null;
let everLive = false;
// What the status said last while connected, shown again when the browser comes back online.
let liveStatus = ['live', 'Live'];
const counts = { sockets: 0, refreshes: 0, resumes: 0 };
const shownPushes = new Set();

// Per-tab conversation id: letters, digits, '-' and '_' only.
const SESSION_ID = (() => {
  const key = 'pam-demo-session-id', valid = /^[A-Za-z0-9_-]{1,64}$/;
  let sid = null;
  try { sid = sessionStorage.getItem(key); } catch (_) { /* storage unavailable */ }
  if (!sid || !valid.test(sid)) {
    const bytes = new Uint8Array(8);
    crypto.getRandomValues(bytes);
    sid = 'demo-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    try { sessionStorage.setItem(key, sid); } catch (_) { /* ignore */ }
  }
  return sid;
})();

function setStatus(state, text) {
  clearInterval(countdown);
  countdown = null;
  statusEl.dataset.state = state;
  statusEl.textContent = text;
  const stopped = state === 'stopped' || state === 'error';
  suggestions.forEach((b) => { b.disabled = stopped; });
  updateCounter();
}

function publishCounts() {
  statusEl.dataset.sockets = String(counts.sockets);
  statusEl.dataset.refreshes = String(counts.refreshes);
  statusEl.dataset.resumes = String(counts.resumes);
}

function bubble(kind, text, chatId) {
  const el = document.createElement('div');
  el.className = 'msg ' + kind;
  if (chatId) el.dataset.chatId = chatId;
  const p = document.createElement('p');
  p.className = 'text';
  p.textContent = text;
  const meta = document.createElement('small');
  meta.className = 'meta';
  el.append(p, meta);
  list.appendChild(el);
  scroller.scrollTop = scroller.scrollHeight;
  return { el, text: p, meta };
}

function system(text, isError) {
  const b = bubble('system', text);
  if (isError) b.el.classList.add('error');
}

// ---- token and limits from the dev server ----

async function fetchToken() {
  const body = TOKEN_TTL_S ? { ttl_s: TOKEN_TTL_S } : {};
  const res = await fetch('/dev/token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error('POST /dev/token returned HTTP ' + res.status);
  const token = await res.json().catch(() => null);
  if (!token || typeof token.token !== 'string' || typeof token.user_id !== 'string') throw new Error('POST /dev/token returned an unexpected body');
  return token;
}

async function fetchLimits() {
  const res = await fetch('/dev/config');
  if (!res.ok) throw new Error('GET /dev/config returned HTTP ' + res.status);
  const config = await res.json();
  if (!Number.isInteger(config.max_message_chars)) throw new Error('GET /dev/config has no max_message_chars');
  return config.max_message_chars;
}

// The SDK asks for a token per socket ('connect'), before `exp` ('expiring': sent in-band as
// `auth_refresh`, no reconnect) and after a 4401 ('expired').
async function getToken(reason) {
  const nearlyExpired = !auth || auth.expires_at * 1000 < Date.now() + 15_000;
  if (reason !== 'connect' || nearlyExpired) {
    auth = await fetchToken();
    if (reason === 'expiring') {
      counts.refreshes++;
      publishCounts();
    }
  }
  return auth.token;
}

// ---- the input limit (PAM_MAX_MESSAGE_CHARS, counted in code points like the server) ----

const length = (text) => [...text].length;

function updateCounter() {
  const n = length(input.value);
  const over = maxChars !== null && n > maxChars;
  counter.textContent = maxChars === null ? '' : `${n} / ${maxChars}`;
  counter.classList.toggle('over', over);
  input.setAttribute('aria-invalid', over ? 'true' : 'false');
  // Send stays enabled over the limit: pressing it says why nothing was sent (and keeps the text).
  sendBtn.disabled = !client || statusEl.dataset.state === 'stopped';
}

// ---- chats ----

function send(raw, { fromInput = false } = {}) {
  const text = String(raw || '').trim();
  if (!text || !client) return false;
  if (maxChars !== null && length(text) > maxChars) {
    system(`That message is ${length(text)} characters; PAM takes at most ${maxChars}. Your text is still in the box.`, true);
    return false;
  }
  const handle = client.chat(text, { sessionId: SESSION_ID, context: { source: 'demo-page' } });
  const mine = bubble('user', text, handle.id);
  mine.meta.textContent = client.state === 'live' ? 'sending…' : 'queued — sent once connected';
  let answer = null;
  const answerBubble = () => answer || (answer = bubble('assistant', '', handle.id));
  handle.onAck(() => { mine.meta.textContent = 'delivered'; });
  handle.onDelta((_delta, soFar) => {
    // After a server restart the chat starts over: `soFar` is the new text, never appended twice.
    const a = answerBubble();
    a.el.classList.add('streaming');
    a.text.textContent = soFar;
    scroller.scrollTop = scroller.scrollHeight;
  });
  handle.onEnd((result) => {
    const a = answerBubble();
    a.el.classList.remove('streaming');
    a.el.dataset.done = 'true';
    a.text.textContent = result.text || '(empty answer)';
    const meta = [result.source, result.model, typeof result.latencyMs === 'number' ? Math.round(result.latencyMs) + ' ms' : null,
      result.cached ? 'from storage' : null, result.via !== 'v2' ? 'via ' + result.via : null];
    const actions = (result.uiActions || []).map((x) => x && x.type).filter(Boolean);
    if (actions.length) meta.push('actions: ' + actions.join(', '));
    a.meta.textContent = meta.filter(Boolean).join(' · ');
    mine.meta.textContent = 'answered';
    scroller.scrollTop = scroller.scrollHeight;
  });
  handle.onError((error) => {
    if (answer) answer.el.classList.remove('streaming');
    mine.meta.textContent = 'not answered';
    system(`${error.code}: ${error.message}`, true);
    if (fromInput && REFUSALS.has(error.code) && !input.value) {
      input.value = text;
      updateCounter();
    }
  });
  return true;
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  if (send(input.value, { fromInput: true })) input.value = '';
  updateCounter();
  input.focus();
});
input.addEventListener('input', updateCounter);
suggestions.forEach((b) => b.addEventListener('click', () => send(b.textContent)));

// ---- pushes ----

function toast(id, kind, title, body) {
  if (!id || shownPushes.has(id)) return; // redelivered on reconnect: shown once
  shownPushes.add(id);
  const el = document.createElement('div');
  el.className = 'toast ' + kind;
  el.dataset.pushId = id;
  el.setAttribute('role', 'alert');
  const h = document.createElement('strong');
  h.textContent = title;
  const p = document.createElement('p');
  p.textContent = body;
  const dismiss = document.createElement('button');
  dismiss.type = 'button';
  dismiss.textContent = 'Dismiss';
  dismiss.addEventListener('click', () => {
    client.dismiss(id);
    el.remove();
  });
  el.append(h, p, dismiss);
  toasts.appendChild(el);
}

// ---- connection state ----

function showReconnecting(delayMs, reason) {
  const until = Date.now() + delayMs;
  const render = () => {
    const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
    statusEl.textContent = `Reconnecting in ${left} s — ${reason}`;
  };
  setStatus('reconnecting', '');
  render();
  countdown = setInterval(render, 250);
}

function wire(c) {
  c.on('connecting', ({ attempt }) => {
    counts.sockets++;
    publishCounts();
    setStatus('connecting', attempt ? `Connecting… (attempt ${attempt + 1})` : 'Connecting…');
  });
  c.on('live', () => {
    if (everLive) return; // a reconnect: the resume outcome says what happened
    everLive = true;
    liveStatus = ['live', 'Live'];
    setStatus(...liveStatus);
  });
  c.on('resumed', ({ replayed }) => {
    counts.resumes++;
    publishCounts();
    liveStatus = ['resumed', `Resumed — reconnected and caught up (${replayed} missed ${replayed === 1 ? 'frame' : 'frames'} replayed)`];
    setStatus(...liveStatus);
  });
  c.on('resume_failed', ({ reason, resent }) => {
    counts.resumes++;
    publishCounts();
    const why = { epoch_changed: 'the server restarted', unknown_stream: 'the server no longer had this conversation stream',
      too_old: 'too much was missed', busy: 'the server was busy' }[reason] || reason.replace(/_/g, ' ');
    liveStatus = ['resumed', `Resumed — ${why}; ${resent} unanswered ${resent === 1 ? 'message' : 'messages'} sent again`];
    setStatus(...liveStatus);
  });
  c.on('reconnecting', ({ delayMs, reason }) => showReconnecting(delayMs, reason));
  // The browser's network signal: said at once, even while the socket has not noticed yet.
  c.on('offline', () => setStatus('offline', 'Offline — messages wait until the network is back'));
  c.on('online', () => { if (c.state === 'live') setStatus(...liveStatus); });
  c.on('rest_fallback', () => system('The live connection keeps failing; messages go over plain HTTP for now.'));
  c.on('stopped', ({ code, reason }) => onStopped(code, reason));
  c.on('timer_expired', (t) => toast(t.id, 'timer', t.timer_type === 'alarm' ? `⏰ Alarm: ${t.label}` : `⏲️ Timer: ${t.label}`, t.message || ''));
  c.on('proactive_alert', (a) => {
    const content = a.content || {};
    toast(a.id, 'alert ' + (content.priority || 'normal'), content.alert_type ? `🔔 ${String(content.alert_type).replace(/_/g, ' ')}` : '🔔 PAM', content.message || '');
  });
  c.on('server_error', (e) => system(`${e.code}: ${e.message}`, true));
}

async function onStopped(code, reason) {
  // 4501: the token no longer verifies (e.g. a gateway with another dev key): fetch a new one, once.
  if (code === 4501 && !refetchedAfter4501) {
    refetchedAfter4501 = true;
    setStatus('connecting', 'The server refused the token; fetching a new one…');
    try {
      auth = await fetchToken();
      client.connect();
      return;
    } catch (e) {
      reason = `${reason}; a new dev token could not be fetched (${e.message})`;
    }
  }
  setStatus('stopped', `Stopped — ${reason} (code ${code}). Reload the page to try again.`);
}

(async () => {
  setStatus('connecting', 'Getting a dev token…');
  publishCounts();
  try {
    [auth, maxChars] = await Promise.all([fetchToken(), fetchLimits()]);
  } catch (e) {
    banner.textContent = 'This page needs the gateway in dev mode (dev auth on). ' + e.message;
    banner.hidden = false;
    setStatus('error', 'Not connected — no dev token');
    return;
  }
  client = new PamClient({ url: location.origin, getToken, dialect: 'v2' });
  wire(client);
  client.connect();
  updateCounter();
  input.focus();
})();
