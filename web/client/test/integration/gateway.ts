// Runs the real pam-gateway binary on a free loopback port with a throwaway SQLite database and
// dev auth, for the SDK's integration tests. The binary: $PAM_GATEWAY_BIN, else
// target/debug/pam-gateway (build it with `cargo build -p pam-gateway`).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createHmac, randomUUID } from 'node:crypto';
import type { WebSocketLike } from '../../src/index.js';

export const ADMIN_TOKEN = 'sdk-test-admin-token';

export interface Gateway {
  base: string;
  port: number;
  dir: string;
  /** Mints a dev token for `userId`. */
  token(userId: string): Promise<string>;
  /** Stops it (SIGTERM, then SIGKILL after 5 s); `keepDir` keeps its database for a restart. */
  stop(keepDir?: boolean): Promise<void>;
  log(): string;
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

/** How to start a gateway. */
export interface GatewayOptions {
  /** Verify HS256 tokens signed with this (no dev auth). */
  jwtSecret?: string;
  /** Reuse a port and directory (database) of a stopped gateway: a restart. */
  port?: number;
  dir?: string;
  /** Extra environment. */
  env?: Record<string, string>;
}

/** Starts a gateway (dev auth unless `jwtSecret`). */
export async function startGateway(options: GatewayOptions = {}): Promise<Gateway> {
  const repo = resolve(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '../../../../..');
  const bin = process.env.PAM_GATEWAY_BIN ?? join(repo, 'target/debug/pam-gateway');
  if (!existsSync(bin)) throw new Error(`no gateway binary at ${bin}: run \`cargo build -p pam-gateway\` (or set PAM_GATEWAY_BIN)`);
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'pam-sdk-'));
  const port = options.port ?? (await freePort());
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of ['SUPABASE_JWT_SECRET', 'SUPABASE_URL', 'PAM_JWKS_URL', 'PAM_JWT_ISSUER', 'PAM_JWT_AUDIENCE', 'PAM_DEV_AUTH', 'PAM_ALLOWED_ORIGINS', 'REDIS_URL', 'DATABASE_URL']) delete env[key];
  Object.assign(env, {
    PAM_LISTEN: `127.0.0.1:${port}`,
    DATABASE_URL: `sqlite://${dir}/gateway.db`,
    PAM_ADMIN_TOKEN: ADMIN_TOKEN,
    PAM_OUTBOX_JOURNAL: join(dir, 'outbox.jsonl'),
  });
  if (options.jwtSecret) Object.assign(env, { SUPABASE_JWT_SECRET: options.jwtSecret, PAM_DEV_AUTH: 'false' });
  Object.assign(env, options.env ?? {});
  const logFile = join(dir, 'gateway.log');
  const { openSync } = await import('node:fs');
  const out = openSync(logFile, 'a');
  const child: ChildProcess = spawn(bin, [], { cwd: dir, env, stdio: ['ignore', out, out] });
  const base = `http://127.0.0.1:${port}`;
  const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`the gateway exited (${child.exitCode}):\n${log().slice(-3000)}`);
    try {
      if ((await fetch(`${base}/health/live`)).ok) break;
    } catch {
      // Not listening yet.
    }
    if (i > 200) throw new Error(`the gateway did not answer /health/live in 20 s:\n${log().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base,
    port,
    dir,
    async token(userId) {
      const response = await fetch(`${base}/dev/token`, { method: 'POST', body: JSON.stringify({ user_id: userId }) });
      if (!response.ok) throw new Error(`/dev/token answered ${response.status}`);
      return ((await response.json()) as { token: string }).token;
    },
    async stop(keepDir = false) {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      if (!keepDir) rmSync(dir, { recursive: true, force: true });
    },
    log,
  };
}

export const newUser = () => randomUUID();

/**
 * A real WebSocket whose network can be cut: `cut()` stops delivering frames at once (those in
 * flight are lost, as on a dropped connection) and reports an abnormal close (1006).
 */
export class CuttableSocket implements WebSocketLike {
  static all: CuttableSocket[] = [];
  private readonly inner: WebSocket;
  private isCut = false;
  received: Array<Record<string, unknown>> = [];
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;

  constructor(url: string, protocols?: string | string[]) {
    this.inner = new WebSocket(url, protocols);
    CuttableSocket.all.push(this);
    this.inner.onopen = (e) => this.onopen?.(e);
    this.inner.onmessage = (e) => {
      if (this.isCut) return;
      this.received.push(JSON.parse(String(e.data)) as Record<string, unknown>);
      this.onmessage?.({ data: e.data });
    };
    this.inner.onclose = (e) => {
      if (!this.isCut) this.onclose?.({ code: e.code, reason: e.reason });
    };
    this.inner.onerror = (e) => this.onerror?.(e);
  }
  get readyState() {
    return this.inner.readyState;
  }
  sent: Array<Record<string, unknown>> = [];
  send(data: string) {
    if (this.isCut) return;
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
    this.inner.send(data);
  }
  close(code?: number, reason?: string) {
    this.inner.close(code, reason);
  }
  cut() {
    this.isCut = true;
    this.inner.close(4000, 'test cut the network');
    this.onclose?.({ code: 1006, reason: '' });
  }
}

/** Resolves when `check()` holds (polling every 20 ms), or rejects after `ms`. */
export async function until(check: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An HS256 Supabase-style access token for `userId` that expires `ttlS` seconds from now. */
export function signToken(secret: string, userId: string, ttlS: number): string {
  const now = Math.floor(Date.now() / 1000);
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const claims = { sub: userId, aud: 'authenticated', role: 'authenticated', iat: now, exp: now + ttlS, email: 'sdk@test.local' };
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}
