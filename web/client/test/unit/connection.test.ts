import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeEnvironment, fakeFetch, harness, settle, welcome } from '../fakes.js';

describe('tokens', () => {
  it('sends the token in the first frame, never in the v2 URL', async () => {
    const { client, ws } = harness();
    client.connect();
    await settle();
    assert.equal(ws.last().url, 'wss://pam.test/api/v2/pam/ws');
    ws.last().open();
    assert.deepEqual(ws.last().sent, [{ type: 'auth', token: 't1' }]);
    client.close();
  });

  it('answers auth_expiring with auth_refresh and a fresh token, at most once per 5 s', async () => {
    const { client, clock, ws, tokens } = harness();
    client.connect();
    await settle();
    welcome(ws.last());
    ws.last().push({ type: 'auth_expiring', expires_in_ms: 60_000, seq: 2 });
    await settle();
    assert.deepEqual(tokens, ['connect', 'expiring']);
    assert.deepEqual(ws.last().ofType('auth_refresh'), [{ type: 'auth_refresh', token: 't2' }]);
    await clock.advance(1_000);
    ws.last().push({ type: 'auth_expiring', expires_in_ms: 59_000, seq: 3 });
    await settle();
    assert.equal(ws.last().ofType('auth_refresh').length, 1, 'not within 5 s of the last');
    await clock.advance(4_000);
    assert.deepEqual(ws.last().ofType('auth_refresh').map((f) => f.token), ['t2', 't3']);
    assert.equal(ws.sockets.length, 1, 'no reconnect for a refresh');
    client.close();
  });

  it('a getToken that throws counts as a failed attempt and is retried with backoff', async () => {
    let calls = 0;
    const { client, clock, ws, named } = harness({
      getToken: () => {
        if (++calls === 1) throw new Error('offline auth');
        return 'tok';
      },
    });
    client.connect();
    await settle();
    assert.equal(ws.sockets.length, 0);
    assert.equal(named('reconnecting')[0]!.code, 1006);
    await clock.advance(1_000);
    assert.equal(ws.sockets.length, 1);
    client.close();
  });
});

describe('heartbeats', () => {
  it('v2: answers ping with pong and drops a socket silent for two heartbeats', async () => {
    const { client, clock, ws, named } = harness();
    client.connect();
    await settle();
    welcome(ws.last());
    ws.last().push({ type: 'ping', timestamp: 42, seq: 2 });
    assert.deepEqual(ws.last().ofType('pong'), [{ type: 'pong', timestamp: 42 }]);
    await clock.advance(54_999);
    assert.equal(client.state, 'live');
    await clock.advance(1);
    assert.equal(client.state, 'reconnecting');
    assert.equal(named('reconnecting')[0]!.reason, 'no frame from the server in time');
    client.close();
  });

  it('drops a socket that is not welcomed within connectTimeoutMs', async () => {
    const { client, clock, ws } = harness({ connectTimeoutMs: 3_000 });
    client.connect();
    await settle();
    ws.last().open();
    await clock.advance(3_000);
    assert.equal(ws.last().closedWith?.code, 1000);
    assert.equal(client.state, 'reconnecting');
    client.close();
  });
});

describe('REST fallback', () => {
  it('after 3 failed upgrades without any welcome, chats go over REST with the id as Idempotency-Key', async () => {
    const rest = fakeFetch((_call, n) => (n === 1 ? [503, { error: 'STORAGE_UNAVAILABLE', message: 'busy' }] : [200, { response: 'Over REST', actions: [], session_id: 'default' }]));
    const { client, clock, ws, named } = harness({ fetch: rest.fetch });
    client.connect();
    await settle();
    const chat = client.chat('blocked sockets', { sessionId: 'trip' });
    for (let i = 0; i < 3; i++) {
      ws.last().drop(1006);
      if (i < 2) await clock.advance(named('reconnecting').at(-1)!.delayMs as number);
    }
    assert.deepEqual(named('rest_fallback'), [{ failedAttempts: 3 }]);
    assert.equal(client.transport, 'rest');
    await clock.advance(1_000);
    const result = await chat.result;
    assert.equal(result.text, 'Over REST');
    assert.equal(result.via, 'rest');
    assert.equal(rest.calls.length, 2, 'the 503 was retried');
    for (const call of rest.calls) {
      assert.equal(call.url, 'https://pam.test/api/v1/pam/chat');
      assert.equal(call.headers['Idempotency-Key'], chat.id);
      assert.equal(call.headers.Authorization?.startsWith('Bearer t'), true);
      assert.deepEqual(call.body, { message: 'blocked sockets', session_id: 'trip' });
    }
    client.close();
  });

  it('does not fall back once a socket has been welcomed (an outage, not a blocked network)', async () => {
    const rest = fakeFetch(() => [200, { response: 'x' }]);
    const { client, clock, ws, named } = harness({ fetch: rest.fetch });
    client.connect();
    await settle();
    welcome(ws.last());
    for (let i = 0; i < 5; i++) {
      ws.last().drop(1006);
      await clock.advance(named('reconnecting').at(-1)!.delayMs as number);
    }
    client.chat('wait for the socket');
    await settle();
    assert.equal(rest.calls.length, 0);
    assert.equal(named('rest_fallback').length, 0);
    client.close();
  });

  it('a failed REST chat reports the server code (not retried for 4xx)', async () => {
    const rest = fakeFetch(() => [413, { error: 'MESSAGE_TOO_LARGE', message: 'too long' }]);
    const { client, clock, ws } = harness({ fetch: rest.fetch, restFallbackAfter: 1 });
    client.connect();
    await settle();
    ws.last().drop(1006);
    const chat = client.chat('x'.repeat(3000));
    await clock.advance(0);
    await assert.rejects(chat.result, { code: 'MESSAGE_TOO_LARGE', status: 413 });
    assert.equal(rest.calls.length, 1);
    client.close();
  });
});

describe('browser signals', () => {
  it('waits while offline and reconnects at once when back online', async () => {
    const env = new FakeEnvironment();
    const { client, clock, ws, named } = harness({ environment: env });
    client.connect();
    await settle();
    welcome(ws.last());
    ws.last().drop(1006);
    env.navigator.onLine = false;
    env.fire('offline');
    assert.equal(client.state, 'offline');
    await clock.advance(120_000);
    assert.equal(ws.sockets.length, 1, 'no attempts while offline');
    env.navigator.onLine = true;
    env.fire('online');
    await settle();
    assert.equal(ws.sockets.length, 2);
    assert.deepEqual(named('offline'), [{}]);
    client.close();
  });

  it('a tab coming back into view reconnects without waiting out the backoff', async () => {
    const env = new FakeEnvironment();
    const { client, ws } = harness({ environment: env });
    client.connect();
    await settle();
    welcome(ws.last());
    ws.last().drop(1006);
    env.document.visibilityState = 'visible';
    env.fire('visibilitychange');
    await settle();
    assert.equal(ws.sockets.length, 2);
    client.close();
  });

  it('starts offline when the browser says so, and stops listening after close', async () => {
    const env = new FakeEnvironment();
    env.navigator.onLine = false;
    const { client, ws } = harness({ environment: env });
    client.connect();
    await settle();
    assert.equal(client.state, 'offline');
    client.close();
    env.navigator.onLine = true;
    env.fire('online');
    await settle();
    assert.equal(ws.sockets.length, 0);
  });
});

describe('pushes', () => {
  it('timer_expired and proactive_alert arrive as typed events; dismiss sends a frame (queued while away)', async () => {
    const { client, clock, ws, named } = harness();
    client.connect();
    await settle();
    welcome(ws.last());
    const timer = { id: 't-1', timer_id: 't-1', label: 'tyres', timer_type: 'timer', message: 'check the tyre pressure', fire_at: '2026-11-30T10:00:00Z', notification: { title: 'Timer', body: 'tyres', requireInteraction: true, tag: 't-1' } };
    ws.last().push({ type: 'timer_expired', seq: 2, ...timer });
    const alert = { id: 'a-1', timestamp: '2026-11-30T10:00:00Z', content: { type: 'proactive_alert', category: 'financial_guidance', alert_type: 'budget_alert', message: 'Fuel is at 80 %', priority: 'normal', actions: ['analyze_expenses'] } };
    ws.last().push({ type: 'proactive_alert', seq: 3, ...alert });
    assert.deepEqual(named('timer_expired'), [timer]);
    assert.deepEqual(named('proactive_alert'), [alert]);
    client.dismiss('t-1');
    assert.deepEqual(ws.last().ofType('dismiss'), [{ type: 'dismiss', id: 't-1' }]);
    ws.last().drop(1006);
    client.dismiss('a-1');
    await clock.advance(1_000);
    welcome(ws.last(), 's2');
    ws.last().push({ type: 'resumed', stream_id: 's1', replayed: 0, seq: 3 });
    assert.deepEqual(ws.last().ofType('dismiss'), [{ type: 'dismiss', id: 'a-1' }]);
    client.close();
  });

  it('an error without id is a server_error event', async () => {
    const { client, ws, named } = harness();
    client.connect();
    await settle();
    welcome(ws.last());
    ws.last().push({ type: 'error', seq: 2, error_code: 'UNKNOWN_TYPE', message: 'no such type', retryable: false });
    assert.deepEqual(named('server_error'), [{ code: 'UNKNOWN_TYPE', message: 'no such type', retryable: false }]);
    client.close();
  });
});
