// 4504 right after a lost socket, against the real gateway: the client's network goes, but the
// gateway's side of that socket stays open and silent (as a crashed node's sockets stay counted
// until its registration expires), so it still holds the user's one slot until its pong timeout.
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { PamClient } from '../../src/index.js';
import { type Gateway, newUser, startGateway, until } from './gateway.js';

/** A TCP proxy to the gateway whose client sides can be lost while the gateway sides stay open, silent. */
class SilentProxy {
  private readonly pairs: Array<{ down: Socket; up: Socket; silent: boolean }> = [];
  private constructor(private readonly server: Server, readonly port: number) {}

  static async start(target: number): Promise<SilentProxy> {
    const server = createServer();
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const proxy = new SilentProxy(server, (server.address() as { port: number }).port);
    server.on('connection', (down) => {
      const up = connect(target, '127.0.0.1');
      const pair = { down, up, silent: false };
      proxy.pairs.push(pair);
      down.on('error', () => undefined);
      up.on('error', () => undefined);
      down.pipe(up);
      up.pipe(down);
      down.on('close', () => {
        if (!pair.silent) up.destroy();
      });
      up.on('close', () => down.destroy());
    });
    return proxy;
  }

  /** The client's network goes: its sockets reset (it sees 1006); the gateway hears nothing more. */
  loseClients(): void {
    for (const pair of this.pairs) {
      if (pair.silent || pair.down.destroyed) continue;
      pair.silent = true;
      pair.down.unpipe(pair.up);
      pair.up.unpipe(pair.down);
      pair.up.pause();
      pair.down.destroy();
    }
  }

  async stop(): Promise<void> {
    for (const pair of this.pairs) {
      pair.down.destroy();
      pair.up.destroy();
    }
    await new Promise<void>((done) => this.server.close(() => done()));
  }
}

let gateway: Gateway | undefined;
let proxy: SilentProxy | undefined;
let client: PamClient | undefined;
after(async () => {
  client?.close();
  await proxy?.stop();
  await gateway?.stop();
});

async function setUp(extra: Partial<ConstructorParameters<typeof PamClient>[0]> = {}) {
  client?.close();
  await proxy?.stop();
  await gateway?.stop();
  // One socket per user; a silent one is closed 3 s after its last frame.
  gateway = await startGateway({ env: { PAM_MAX_CONNECTIONS_PER_USER: '1', PAM_PING_INTERVAL_MS: '500', PAM_PONG_TIMEOUT_MS: '3000' } });
  proxy = await SilentProxy.start(gateway.port);
  const user = newUser();
  const g = gateway;
  client = new PamClient({
    url: `http://127.0.0.1:${proxy.port}`,
    getToken: () => g.token(user),
    backoff: { minMs: 50, baseMs: 100, maxMs: 300 },
    environment: null,
    ...extra,
  });
  const events: Array<[string, Record<string, unknown>]> = [];
  for (const name of ['live', 'reconnecting', 'resumed', 'resume_failed', 'stopped'] as const) {
    client.on(name, (payload) => events.push([name, payload as unknown as Record<string, unknown>]));
  }
  client.connect();
  await until(() => client!.state === 'live', 10_000, 'live');
  assert.ok((await client.chat('hello').result).text.length > 0);
  return events;
}

describe('4504 right after a lost socket (real gateway)', () => {
  it('is retried with backoff until the gateway lets go of the dead socket, then the stream resumes', async () => {
    const events = await setUp();
    proxy!.loseClients();
    await until(() => events.filter(([n]) => n === 'live').length === 2, 15_000, 'live again');
    const codes = events.filter(([n]) => n === 'reconnecting').map(([, e]) => e.code);
    assert.equal(codes[0], 1006, 'the loss');
    assert.ok(codes.slice(1).length >= 1 && codes.slice(1).every((c) => c === 4504), `then only 4504s: ${codes.join(', ')}`);
    assert.equal(events.filter(([n]) => n === 'stopped').length, 0);
    await until(() => events.some(([n]) => n === 'resumed' || n === 'resume_failed'), 10_000, 'the resume outcome');
    assert.ok((await client!.chat('still there?').result).text.length > 0);
  });

  it('with tooManyConnectionsRetryMs: 0 the same 4504 stops the client, as before', async () => {
    const events = await setUp({ tooManyConnectionsRetryMs: 0 });
    const chat = client!.chat('lost with the socket?'); // may be answered before the loss; either way no hang
    proxy!.loseClients();
    await until(() => client!.state === 'stopped', 10_000, 'stopped');
    assert.equal(events.find(([n]) => n === 'stopped')![1].code, 4504);
    await chat.result.catch((e: { code: string }) => assert.equal(e.code, 'TOO_MANY_CONNECTIONS'));
  });
});
