// What the browser checks run against: a pam-gateway process they can kill and restart on the
// same port and database, and a fake OpenAI-compatible model that streams at a known pace.
//
// The fake model answers `POST /v1/chat/completions` (stream: true) with Server-Sent Events like
// OpenAI's. A message containing "slow" gets SLOW_ANSWER word by word at SLOW_PACE_MS per word
// (long enough to kill the gateway mid-answer); anything else gets `You said: <message>` quickly.
// It counts the requests per message, so a check can tell "answered once" from "asked twice".

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SLOW_WORDS = Array.from({ length: 40 }, (_, i) => `word${i + 1}`);
export const SLOW_ANSWER = `Slow answer: ${SLOW_WORDS.join(' ')}.`;
const SLOW_PACE_MS = 150;
const FAST_PACE_MS = 15;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A port nobody listens on now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** The text of the newest user turn (the gateway merges an unanswered earlier turn into it). */
function lastUserText(messages) {
  const users = (messages || []).filter((m) => m && m.role === 'user');
  const last = users[users.length - 1];
  const content = typeof last?.content === 'string' ? last.content : (last?.content || []).map((p) => p.text || '').join('');
  const parts = content.split('\n\n').map((p) => p.trim()).filter(Boolean);
  return parts[parts.length - 1] || '';
}

/** Starts the fake model; `requests` maps each message to how often the model was asked. */
export async function startFakeModel() {
  const requests = new Map();
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', async () => {
      if (req.method !== 'POST' || !req.url.endsWith('/chat/completions')) {
        res.writeHead(404).end();
        return;
      }
      let request = {};
      try { request = JSON.parse(body); } catch (_) { /* answered as empty */ }
      const message = lastUserText(request.messages);
      requests.set(message, (requests.get(message) || 0) + 1);
      const slow = /slow/i.test(message);
      const words = slow ? SLOW_ANSWER.split(' ') : `You said: ${message}`.split(' ');
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const chunk = (delta, finish) =>
        `data: ${JSON.stringify({ id: 'fake', object: 'chat.completion.chunk', model: 'fake-model',
          choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      for (let i = 0; i < words.length; i++) {
        if (res.destroyed) return; // the gateway died mid-answer
        res.write(chunk({ content: (i ? ' ' : '') + words[i] }, null));
        await sleep(slow ? SLOW_PACE_MS : FAST_PACE_MS);
      }
      res.write(chunk({}, 'stop'));
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, requests, close: () => server.close() };
}

/**
 * A gateway binary run on a fixed loopback port and SQLite file across restarts, with dev auth on
 * and none of the caller's auth, origin or Redis settings.
 */
export class Gateway {
  constructor({ bin, port, env }) {
    this.bin = bin;
    this.port = port;
    this.dir = mkdtempSync(join(tmpdir(), 'pam-browser-'));
    this.env = env;
    this.child = null;
    this.log = [];
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The dev auth key the gateway keeps beside its database. */
  get keyFile() {
    return join(this.dir, 'gateway.db.dev-key');
  }

  /** Starts the process and waits until `/health/live` answers (at most 20 s). */
  async start() {
    const env = { ...process.env };
    for (const name of ['SUPABASE_JWT_SECRET', 'SUPABASE_URL', 'PAM_JWKS_URL', 'PAM_JWT_ISSUER', 'PAM_JWT_AUDIENCE',
      'PAM_DEV_AUTH', 'PAM_ALLOWED_ORIGINS', 'REDIS_URL', 'ANTHROPIC_API_KEY']) delete env[name];
    Object.assign(env, {
      PAM_LISTEN: `127.0.0.1:${this.port}`,
      DATABASE_URL: `sqlite://${join(this.dir, 'gateway.db')}`,
      PAM_OUTBOX_JOURNAL: join(this.dir, 'outbox.jsonl'),
      PAM_NODE_ID: 'browser-test',
      ...this.env,
    });
    const child = spawn(this.bin, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const keep = (data) => {
      this.log.push(...String(data).split('\n').filter(Boolean));
      if (this.log.length > 400) this.log.splice(0, this.log.length - 400);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(`exited (${code ?? signal})`)));
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const outcome = await Promise.race([exited, sleep(100).then(() => null)]);
      if (outcome) throw new Error(`the gateway ${outcome}; log tail:\n${this.tail()}`);
      try {
        const res = await fetch(`${this.url}/health/live`);
        if (res.ok) return;
      } catch (_) { /* not listening yet */ }
    }
    throw new Error(`the gateway did not answer /health/live within 20 s; log tail:\n${this.tail()}`);
  }

  /** Kills the process with SIGKILL (no drain: sockets drop, turns die mid-answer). */
  async kill() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await gone;
  }

  /** Stops the process with SIGTERM (a clean restart: the gateway drains, closing sockets with 1012). */
  async terminate() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const late = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await gone;
    clearTimeout(late);
  }

  tail(n = 30) {
    return this.log.slice(-n).join('\n');
  }

  async stop() {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
