import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PamClient, type PamClientOptions, type TokenReason } from '../../src/index.js';
import { CuttableSocket, type Gateway, newUser, signToken, startGateway, until } from './gateway.js';

const SECRET = 'sdk-test-jwt-secret-with-enough-bytes-0123456789';
let gateway: Gateway;
const clients: PamClient[] = [];

before(async () => {
  gateway = await startGateway({ jwtSecret: SECRET });
});
after(async () => {
  for (const client of clients) client.close();
  await gateway?.stop();
});

function client(getToken: PamClientOptions['getToken']): PamClient {
  const c = new PamClient({ url: gateway.base, getToken, WebSocket: CuttableSocket, backoff: { minMs: 20, baseMs: 50, maxMs: 200 }, environment: null });
  clients.push(c);
  return c;
}

describe('tokens against the real gateway', () => {
  it('auth_expiring is answered with auth_refresh: the socket outlives its first token', async () => {
    const user = newUser();
    const reasons: TokenReason[] = [];
    const c = client((reason) => {
      reasons.push(reason);
      return signToken(SECRET, user, reason === 'connect' ? 3 : 3600);
    });
    const reconnects: unknown[] = [];
    c.on('reconnecting', (e) => reconnects.push(e));
    c.connect();
    await until(() => reasons.includes('expiring'), 10_000, 'auth_expiring');
    await new Promise((r) => setTimeout(r, 4_000)); // past the first token's exp
    assert.equal(c.state, 'live');
    assert.deepEqual(reconnects, [], 'no 4401, no reconnect');
    const answer = await c.chat('hello').result;
    assert.ok(answer.text.length > 0);
  });

  it('without a refresh the server closes with 4401, and the client reconnects with a fresh token', async () => {
    const user = newUser();
    const reasons: TokenReason[] = [];
    const c = client((reason) => {
      reasons.push(reason);
      if (reason === 'expiring') throw new Error('the auth provider is down');
      return signToken(SECRET, user, reason === 'connect' && !reasons.includes('expired') ? 2 : 3600);
    });
    const reconnects: Array<{ code: number }> = [];
    c.on('reconnecting', (e) => reconnects.push(e));
    c.connect();
    await until(() => reconnects.length > 0, 15_000, 'the 4401 close');
    assert.equal(reconnects[0]!.code, 4401);
    await until(() => c.state === 'live', 10_000, 'live again');
    assert.ok(reasons.includes('expired'), `getToken was asked for a fresh token (${reasons.join(', ')})`);
    const answer = await c.chat('hello again').result;
    assert.ok(answer.text.length > 0);
  });

  it('a forged token stops the client with 4501 and a plain reason', async () => {
    const c = client(() => signToken('not-the-secret-not-the-secret-not-the-secret', newUser(), 3600));
    const stopped: Array<{ code: number; reason: string }> = [];
    c.on('stopped', (e) => stopped.push(e));
    c.connect();
    await until(() => stopped.length > 0, 10_000, 'stopped');
    assert.equal(stopped[0]!.code, 4501);
    assert.ok(stopped[0]!.reason.length > 0);
    assert.equal(c.state, 'stopped');
  });
});
