// The demo chat page: dev token, legacy WebSocket, reconnects (a file of its own so the CSP needs no unsafe-inline).
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const statusEl = $('status'), list = $('messages'), scroller = $('scroller'), thinking = $('thinking'),
        banner = $('banner'), form = $('composer'), input = $('input'), sendBtn = $('send');
  const suggestions = Array.from(document.querySelectorAll('#suggestions button'));
  const PING_MS = 15000, MAX_TRIES = 10, MAX_MISSED_PONGS = 3, MAX_BACKOFF_MS = 30000;

  let auth = null, ws = null, pingTimer = null, retryTimer = null;
  let tries = 0, missedPongs = 0, pending = 0, needFreshToken = false;

  // Per-tab chat session id: letters, digits, '-' and '_' only.
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
    statusEl.dataset.state = state;
    statusEl.textContent = text;
    const off = state !== 'open';
    sendBtn.disabled = off;
    suggestions.forEach((b) => { b.disabled = off; });
  }

  function addMsg(kind, text, meta, isError) {
    const el = document.createElement('div');
    el.className = 'msg ' + kind + (isError ? ' error' : '');
    const p = document.createElement('p');
    p.className = 'text';
    p.textContent = text;
    el.appendChild(p);
    if (meta) {
      const small = document.createElement('small');
      small.className = 'meta';
      small.textContent = meta;
      el.appendChild(small);
    }
    list.appendChild(el);
    scroller.scrollTop = scroller.scrollHeight;
  }

  function setPending(n) {
    pending = Math.max(0, n);
    thinking.hidden = pending === 0;
    if (pending) scroller.scrollTop = scroller.scrollHeight;
  }

  async function fetchToken() {
    let res;
    try {
      res = await fetch('/dev/token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    } catch (e) {
      throw new Error('could not reach the gateway');
    }
    if (!res.ok) throw new Error('POST /dev/token returned HTTP ' + res.status);
    const body = await res.json().catch(() => null);
    if (!body || typeof body.token !== 'string' || typeof body.user_id !== 'string') {
      throw new Error('POST /dev/token returned an unexpected body');
    }
    return body;
  }

  function sendFrame(obj) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  function stopPing() { clearInterval(pingTimer); pingTimer = null; }

  function startPing() {
    stopPing();
    pingTimer = setInterval(() => {
      if (missedPongs >= MAX_MISSED_PONGS) {
        const dead = ws;
        ws = null;
        try { dead.close(4000, 'missed pongs'); } catch (_) { /* ignore */ }
        onClosed(4000, 'no pong from the server');
        return;
      }
      if (sendFrame({ type: 'ping', timestamp: Date.now() })) missedPongs++;
    }, PING_MS);
  }

  function connect() {
    clearTimeout(retryTimer);
    setStatus('connecting', tries ? `Connecting… (try ${tries}/${MAX_TRIES})` : 'Connecting…');
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const url = `${scheme}://${location.host}/api/v1/pam/ws/${encodeURIComponent(auth.user_id)}?token=${encodeURIComponent(auth.token)}`;
    let sock;
    try { sock = new WebSocket(url); } catch (e) { onClosed(1006, 'could not open the socket'); return; }
    ws = sock;
    sock.onopen = () => {
      if (sock !== ws) return;
      tries = 0;
      missedPongs = 0;
      setStatus('open', 'Connected');
      startPing();
    };
    sock.onmessage = (ev) => { if (sock === ws) onFrame(ev.data); };
    sock.onclose = (ev) => { if (sock === ws) { ws = null; onClosed(ev.code, ev.reason); } };
    sock.onerror = () => { /* a close event always follows */ };
  }

  function onClosed(code, reason) {
    stopPing();
    if (pending) {
      setPending(0);
      addMsg('system', 'The connection dropped before PAM answered — please ask again.');
    }
    const what = `Closed (code ${code}${reason ? ': ' + reason : ''})`;
    if (code === 1000) { setStatus('closed', what); return; }
    if (code === 4401) needFreshToken = true;
    scheduleRetry(what);
  }

  function scheduleRetry(what) {
    if (tries >= MAX_TRIES) {
      setStatus('closed', `${what} — gave up after ${MAX_TRIES} tries; reload the page to try again.`);
      return;
    }
    const delay = Math.min(1000 * 2 ** tries, MAX_BACKOFF_MS);
    tries++;
    setStatus('closed', `${what} — reconnecting in ${Math.round(delay / 1000)} s (try ${tries}/${MAX_TRIES})`);
    retryTimer = setTimeout(reconnect, delay);
  }

  async function reconnect() {
    const expired = typeof auth.expires_at === 'number' && auth.expires_at * 1000 < Date.now() + 10000;
    if (needFreshToken || expired) {
      setStatus('connecting', 'Fetching a fresh dev token…');
      try {
        auth = await fetchToken();
        needFreshToken = false;
      } catch (e) {
        scheduleRetry('Could not refresh the dev token (' + e.message + ')');
        return;
      }
    }
    connect();
  }

  function onFrame(data) {
    let m;
    try { m = JSON.parse(data); } catch (_) { return; }
    if (!m || typeof m !== 'object') return;
    switch (m.type) {
      case 'ping':
        sendFrame({ type: 'pong', timestamp: m.timestamp });
        return;
      case 'pong':
        missedPongs = 0;
        return;
      case 'connection':
        if (m.message) addMsg('system', String(m.message));
        return;
      case 'chat_response': {
        const text = [m.message, m.content, m.response].find((v) => typeof v === 'string' && v) || '(empty answer)';
        const meta = [];
        if (m.source) meta.push(String(m.source));
        if (m.model) meta.push(String(m.model));
        if (typeof m.latency_ms === 'number') meta.push(Math.round(m.latency_ms) + ' ms');
        if (m.error === true && m.error_code) meta.push(String(m.error_code));
        if (Array.isArray(m.ui_actions) && m.ui_actions.length) {
          const kinds = m.ui_actions.map((a) => a && a.type).filter((t) => typeof t === 'string');
          if (kinds.length) meta.push('actions: ' + kinds.join(', '));
        }
        addMsg('assistant', text, meta.join(' · '), m.error === true);
        setPending(pending - 1);
        return;
      }
      case 'error':
        addMsg('system', `${m.error_code || 'ERROR'}: ${m.message || 'something went wrong'}`, '', true);
        setPending(pending - 1);
        return;
      default:
        return; // unknown / ignored types (proactive_alert, timer_expired, …)
    }
  }

  function send(raw) {
    const text = String(raw || '').trim();
    if (!text) return;
    const ok = sendFrame({
      type: 'chat',
      message: text,
      session_id: SESSION_ID,
      context: { source: 'demo-page' },
      timestamp: Date.now(),
    });
    if (!ok) { addMsg('system', 'Not connected — your message was not sent.', '', true); return; }
    addMsg('user', text);
    setPending(pending + 1);
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    send(input.value);
    input.value = '';
    input.focus();
  });
  suggestions.forEach((b) => b.addEventListener('click', () => send(b.textContent)));

  (async () => {
    setStatus('connecting', 'Getting a dev token…');
    try {
      auth = await fetchToken();
    } catch (e) {
      banner.textContent = 'Dev auth is off: this page only works when the gateway runs with dev auth. (' + e.message + ')';
      banner.hidden = false;
      setStatus('error', 'Not connected — no dev token');
      return;
    }
    connect();
    input.focus();
  })();
})();
