// The demo chat page on the pam-client SDK (served at /pam-client.js): dev token, v2 socket with
// streaming, resume across server restarts (a clean restart is a status line, not an error),
// in-band token refresh, the tab's conversation loaded back with `client.history()` after a
// reload, pushes as toasts (at most three; they hide by themselves unless they need a decision).
// A module file of its own so the CSP needs no unsafe-inline.
//
// Test hooks (read by web/e2e): `?token_ttl=N` asks /dev/token for N-second tokens; #status
// carries data-state, data-sockets (sockets opened), data-refreshes (tokens fetched for an
// `auth_refresh`) and data-resumes; every chat's bubbles carry data-chat-id; bubbles loaded from
// history carry data-history, and #messages data-history-loaded (the number loaded) once read.
import { PamClient } from '/pam-client.js';

const $ = (id) => document.getElementById(id);
const statusEl = $('status'), list = $('messages'), scroller = $('scroller'), banner = $('banner'),
      form = $('composer'), input = $('input'), sendBtn = $('send'), counter = $('counter'), toasts = $('toasts');
const suggestions = Array.from(document.querySelectorAll('#suggestions button'));
const params = new URLSearchParams(location.search);
const TOKEN_TTL_S = Number(params.get('token_ttl')) || undefined;
// Server errors that refuse a message as written: its text goes back into the box.
const REFUSALS = new Set(['MESSAGE_TOO_LARGE', 'EMPTY_MESSAGE', 'VALIDATION_ERROR', 'RATE_LIMIT_EXCEEDED']);
// Where the demo traveller is parked: sent with every chat as the app's `user_location`, so PAM can
// say how far away each friend is.
const DEMO_LOCATION = { latitude: 44.291, longitude: -121.5492, name: 'Sisters, OR' };
// Toasts: at most this many at once; one that needs no decision hides after TOAST_HIDE_MS (not
// while the pointer or focus is on it).
const MAX_TOASTS = 3;
const TOAST_HIDE_MS = Number(params.get('toast_ms')) || 8_000;
// Messages loaded back per page of history.
const HISTORY_PAGE = 50;

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

function makeBubble(kind, text, chatId) {
  const el = document.createElement('div');
  el.className = 'msg ' + kind;
  if (chatId) el.dataset.chatId = chatId;
  const p = document.createElement('p');
  p.className = 'text';
  p.textContent = text;
  const meta = document.createElement('small');
  meta.className = 'meta';
  el.append(p, meta);
  return { el, text: p, meta };
}

function bubble(kind, text, chatId) {
  const b = makeBubble(kind, text, chatId);
  list.appendChild(b.el);
  scroller.scrollTop = scroller.scrollHeight;
  return b;
}

// "builtin · 3 ms", "openai · gpt-4o-mini · 850 ms": the provider once, the model only when it
// says something more.
function answerMeta({ source, model, latencyMs, cached, via, uiActions }) {
  const parts = [source, model && model !== source ? model : null, typeof latencyMs === 'number' ? Math.round(latencyMs) + ' ms' : null,
    cached ? 'from storage' : null, via && via !== 'v2' ? 'via ' + via : null];
  const actions = (uiActions || []).map((x) => x && x.type).filter(Boolean);
  if (actions.length) parts.push('actions: ' + actions.join(', '));
  return parts.filter(Boolean).join(' · ');
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
  const handle = client.chat(text, { sessionId: SESSION_ID, context: { source: 'demo-page', user_location: DEMO_LOCATION } });
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
    a.meta.textContent = answerMeta(result);
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

// ---- the conversation so far (after a reload) ----

const timeOf = (iso) => {
  const at = iso ? new Date(iso) : null;
  return at && !Number.isNaN(at.getTime()) ? at.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' }) : '';
};

// One page of stored messages (newest first from the server) as bubbles, oldest first.
function historyBubbles(messages) {
  const fragment = document.createDocumentFragment();
  for (const m of [...messages].reverse()) {
    const kind = m.role === 'user' ? 'user' : m.role === 'assistant' ? 'assistant' : 'system';
    const b = makeBubble(kind, m.content, m.clientMsgId);
    b.el.dataset.history = 'true';
    b.el.dataset.done = 'true';
    b.meta.textContent = [kind === 'assistant' ? answerMeta(m) : null, timeOf(m.createdAt)].filter(Boolean).join(' · ');
    fragment.appendChild(b.el);
  }
  return fragment;
}

let olderButton = null;
// Loads the tab's conversation back (SESSION_ID survives a reload): above whatever was sent since.
async function loadHistory(before) {
  let page;
  try {
    page = await client.history(SESSION_ID, { limit: HISTORY_PAGE, before });
  } catch (e) {
    if (e && e.status === 404) page = { messages: [], nextBefore: null }; // a new conversation
    else {
      system(`Could not load this conversation's earlier messages (${e && e.code ? e.code : e}).`, true);
      return;
    }
  }
  const loaded = Number(list.dataset.historyLoaded || 0) + page.messages.length;
  const fragment = historyBubbles(page.messages);
  if (page.messages.length && !before) {
    const divider = document.createElement('div');
    divider.className = 'msg system history-divider';
    divider.textContent = '↑ Earlier in this conversation, loaded again after the reload';
    fragment.appendChild(divider);
  }
  olderButton?.remove();
  olderButton = null;
  if (page.nextBefore) {
    olderButton = document.createElement('button');
    olderButton.type = 'button';
    olderButton.className = 'older';
    olderButton.textContent = 'Show earlier messages';
    olderButton.addEventListener('click', () => loadHistory(page.nextBefore));
    fragment.prepend(olderButton);
  }
  const keepBottom = !before;
  list.prepend(fragment);
  list.dataset.historyLoaded = String(loaded);
  if (keepBottom) scroller.scrollTop = scroller.scrollHeight;
}

// ---- pushes (toasts) ----

// A toast needs a decision when dismissing it matters: a timer or alarm is sent again on every
// connect until it is dismissed, and an alert that asks something waits for the answer. Those
// stay until acted on; the others hide after TOAST_HIDE_MS. At most MAX_TOASTS show: a new one
// first pushes out the oldest that needs no decision, else it waits in line (+N more).
const waiting = [];

function shownToasts() {
  return Array.from(toasts.querySelectorAll('.toast'));
}

function renderToastLine() {
  let more = toasts.querySelector('.toast-more');
  if (!waiting.length) {
    more?.remove();
    return;
  }
  if (!more) {
    more = document.createElement('p');
    more.className = 'toast-more';
  }
  more.textContent = `+${waiting.length} more waiting`;
  toasts.prepend(more); // on top: seen even when the toasts below need scrolling
}

function placeToast(el) {
  const shown = shownToasts();
  if (shown.length >= MAX_TOASTS) {
    const passing = shown.find((t) => !t.dataset.decision);
    if (!passing) {
      waiting.push(el);
      renderToastLine();
      return;
    }
    passing.remove();
  }
  toasts.appendChild(el);
  if (!el.dataset.decision) autoHide(el);
  renderToastLine();
}

function removeToast(el) {
  if (!el.isConnected) return; // already pushed out (its hide timer fires later)
  el.remove();
  const next = waiting.shift();
  if (next) placeToast(next);
  renderToastLine();
}

function autoHide(el) {
  let timer = null;
  const arm = () => { clearTimeout(timer); timer = setTimeout(() => removeToast(el), TOAST_HIDE_MS); };
  const hold = () => clearTimeout(timer);
  el.addEventListener('mouseenter', hold);
  el.addEventListener('focusin', hold);
  el.addEventListener('mouseleave', arm);
  el.addEventListener('focusout', arm);
  arm();
}

function toast(id, { kind, title, body, note, decision, actions = [] }) {
  if (!id || shownPushes.has(id)) return; // redelivered on reconnect: shown once
  shownPushes.add(id);
  const el = document.createElement('div');
  el.className = 'toast ' + kind;
  el.dataset.pushId = id;
  if (decision) el.dataset.decision = 'true';
  el.setAttribute('role', decision ? 'alertdialog' : 'status');
  el.setAttribute('aria-label', title);
  const h = document.createElement('strong');
  h.textContent = title;
  const p = document.createElement('p');
  p.textContent = body;
  el.append(h, p);
  if (note) {
    const small = document.createElement('small');
    small.className = 'note';
    small.textContent = note;
    el.append(small);
  }
  const buttons = document.createElement('div');
  buttons.className = 'actions';
  for (const action of actions) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = action.label;
    b.addEventListener('click', () => {
      action.run();
      client.dismiss(id);
      removeToast(el);
    });
    buttons.append(b);
  }
  const dismiss = document.createElement('button');
  dismiss.type = 'button';
  dismiss.textContent = 'Dismiss';
  dismiss.addEventListener('click', () => {
    client.dismiss(id);
    removeToast(el);
  });
  buttons.append(dismiss);
  el.append(buttons);
  placeToast(el);
}

function timerToast(t) {
  const fired = timeOf(t.fire_at);
  toast(t.id, {
    kind: 'timer',
    title: t.timer_type === 'alarm' ? `⏰ Alarm: ${t.label}` : `⏲️ Timer: ${t.label}`,
    body: t.message || '',
    // protocol: an undismissed timer is sent again on every connect (for 24 h after it fired).
    note: `${fired ? 'Went off ' + fired + '. ' : ''}It comes back each time you open PAM until you dismiss it.`,
    decision: true,
  });
}

function alertToast(a) {
  const content = a.content || {};
  const asks = /\?\s*$/.test(content.message || '');
  const savings = (content.actions || []).includes('analyze_expenses') && asks;
  toast(a.id, {
    kind: 'alert ' + (content.priority || 'normal'),
    title: content.alert_type ? `🔔 ${String(content.alert_type).replace(/_/g, ' ')}` : '🔔 PAM',
    body: content.message || '',
    decision: asks,
    actions: savings ? [{ label: 'Look for savings', run: () => send('Yes, look for savings') }] : [],
  });
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
    const outcome = resent ? `${resent} unanswered ${resent === 1 ? 'message' : 'messages'} sent again` : 'nothing was waiting for an answer';
    liveStatus = ['resumed', `Resumed — ${why}; ${outcome}`];
    setStatus(...liveStatus);
  });
  c.on('reconnecting', ({ delayMs, reason }) => showReconnecting(delayMs, reason));
  // The browser's network signal: said at once, even while the socket has not noticed yet.
  c.on('offline', () => setStatus('offline', 'Offline — messages wait until the network is back'));
  c.on('online', () => { if (c.state === 'live') setStatus(...liveStatus); });
  c.on('rest_fallback', () => system('The live connection keeps failing; messages go over plain HTTP for now.'));
  c.on('stopped', ({ code, reason }) => onStopped(code, reason));
  c.on('timer_expired', timerToast);
  c.on('proactive_alert', alertToast);
  c.on('server_error', (e) => {
    // A clean restart (drain): the server says so, closes with 1012 and the SDK reconnects and
    // resumes by itself. That is news for the status line, not an error.
    if (e.code === 'SERVICE_RESTART') setStatus('reconnecting', 'Server restarting — reconnecting…');
    else system(`${e.code}: ${e.message}`, true);
  });
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
  loadHistory();
  updateCounter();
  input.focus();
})();
