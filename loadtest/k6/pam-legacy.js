// pam-legacy.js — the `legacy-chat` scenario of pam-loadtest as a k6 script: USERS virtual users
// each hold one legacy-protocol socket, send a chat every INTERVAL_MS (at most one outstanding),
// answer the server's JSON pings with pongs like the browser client, and time each chat_response.
//
//   k6 run -e BASE_URL=ws://127.0.0.1:8080 -e SUPABASE_JWT_SECRET=... loadtest/k6/pam-legacy.js
//   k6 run -e BASE_URL=ws://127.0.0.1:8080 -e TOKEN_URL=http://127.0.0.1:8080/dev/token loadtest/k6/pam-legacy.js
//
// Env: BASE_URL (default ws://127.0.0.1:8080), SUPABASE_JWT_SECRET (tokens are signed HS256 in the
// script) or TOKEN_URL (a dev-auth gateway's POST /dev/token), USERS (100), DURATION_S (60),
// INTERVAL_MS (2000). Thresholds: chat_latency p95 < 2 s, connect success ≥ 95 %, chat success ≥ 95 %.
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import http from 'k6/http';
import ws from 'k6/ws';
import { Rate, Trend } from 'k6/metrics';

const BASE_URL = (__ENV.BASE_URL || 'ws://127.0.0.1:8080').replace(/\/$/, '');
const SECRET = __ENV.SUPABASE_JWT_SECRET || '';
const TOKEN_URL = __ENV.TOKEN_URL || '';
const USERS = parseInt(__ENV.USERS || '100', 10);
const DURATION_S = parseInt(__ENV.DURATION_S || '60', 10);
const INTERVAL_MS = parseInt(__ENV.INTERVAL_MS || '2000', 10);
const QUESTIONS = [
  'How much have I spent on fuel this month?',
  'How much budget is left?',
  'Which friends are travelling nearby?',
  'Any events coming up?',
];

const chatLatency = new Trend('chat_latency', true);
const connectSuccess = new Rate('connect_success');
const chatSuccess = new Rate('chat_success');

export const options = {
  scenarios: {
    legacy_chat: {
      executor: 'per-vu-iterations',
      vus: USERS,
      iterations: 1,
      maxDuration: `${DURATION_S + 60}s`,
    },
  },
  thresholds: {
    chat_latency: ['p(95)<2000'],
    connect_success: ['rate>=0.95'],
    chat_success: ['rate>=0.95'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
};

function userId(n) {
  return `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
}

function b64url(text) {
  return encoding.b64encode(text, 'rawurl');
}

// A Supabase-shaped HS256 access token, like the gateway's SUPABASE_JWT_SECRET expects.
function mint(user) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = b64url(JSON.stringify({ sub: user, aud: 'authenticated', role: 'authenticated', iat: now, exp: now + 3600 }));
  const signature = crypto.hmac('sha256', SECRET, `${header}.${claims}`, 'base64rawurl');
  return `${header}.${claims}.${signature}`;
}

function tokenFor(user) {
  if (SECRET) return mint(user);
  if (!TOKEN_URL) throw new Error('set SUPABASE_JWT_SECRET or TOKEN_URL');
  const res = http.post(TOKEN_URL, JSON.stringify({ user_id: user }), { headers: { 'Content-Type': 'application/json' } });
  return res.json('token');
}

export default function () {
  const n = __VU - 1;
  const user = userId(n);
  const url = `${BASE_URL}/api/v1/pam/ws/${user}?token=${tokenFor(user)}`;
  // Ramp: spread the first chats over one interval.
  const offset = (INTERVAL_MS * n) / USERS;
  let welcomed = false;
  const res = ws.connect(url, {}, (socket) => {
    const deadline = Date.now() + DURATION_S * 1000;
    let sentAt = null;
    let turn = 0;
    const sendChat = () => {
      if (Date.now() >= deadline) {
        socket.close();
        return;
      }
      sentAt = Date.now();
      const message = QUESTIONS[(n + turn) % QUESTIONS.length];
      turn += 1;
      socket.send(JSON.stringify({ type: 'chat', message, session_id: `k6-${n}` }));
    };
    socket.on('message', (data) => {
      const frame = JSON.parse(data);
      if (frame.type === 'ping') {
        socket.send(JSON.stringify({ type: 'pong', timestamp: frame.timestamp }));
      } else if (frame.type === 'connection' && !welcomed) {
        welcomed = true;
        connectSuccess.add(true);
        socket.setTimeout(sendChat, Math.max(1, offset)); // k6 refuses a 0 ms timer
      } else if (frame.type === 'chat_response' && sentAt !== null) {
        const elapsed = Date.now() - sentAt;
        chatLatency.add(elapsed);
        chatSuccess.add(frame.error !== true);
        sentAt = null;
        socket.setTimeout(sendChat, Math.max(1, INTERVAL_MS - elapsed));
      } else if (frame.type === 'error') {
        chatSuccess.add(false);
      }
    });
    socket.on('close', () => {
      if (sentAt !== null) chatSuccess.add(false);
    });
    // A socket that never answers still ends.
    socket.setTimeout(() => socket.close(), (DURATION_S + 30) * 1000);
  });
  if (!res || res.status !== 101 || !welcomed) connectSuccess.add(false);
}
