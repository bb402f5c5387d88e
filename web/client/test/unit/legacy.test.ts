import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fakeFetch, harness, settle } from '../fakes.js';

const USER = '5e1f0c3a-7d2b-4c8e-9a41-d3e0000000a1';
const connection = { type: 'connection', status: 'connected', message: 'hi', timestamp: '2026-11-30T10:00:00Z', connection_id: 'c1', profile_integration: 'enabled' };
const answer = (message: string, extra: Record<string, unknown> = {}) => ({
  type: 'chat_response', message, content: message, ui_actions: [], session_id: 's', error: false, source: 'builtin', model: 'm', latency_ms: 3, timestamp: '2026-11-30T10:00:00Z', ...extra,
});

describe('legacy dialect', () => {
  it('connects with the user and token in the URL and goes live on `connection`', async () => {
    const { client, ws, named } = harness({ dialect: 'legacy', userId: USER, url: 'http://localhost:8080/' });
    client.connect();
    await settle();
    assert.equal(ws.last().url, `ws://localhost:8080/api/v1/pam/ws/${USER}?token=t1`);
    ws.last().open();
    ws.last().push(connection);
    assert.deepEqual(named('live'), [{ connectionId: 'c1', dialect: 'legacy' }]);
    client.close();
  });

  it('sends one chat at a time and matches each chat_response in order', async () => {
    const { client, ws } = harness({ dialect: 'legacy', userId: USER });
    client.connect();
    await settle();
    ws.last().open();
    ws.last().push(connection);
    const a = client.chat('first', { sessionId: 's' });
    const b = client.chat('second');
    assert.deepEqual(ws.last().ofType('chat'), [{ type: 'chat', message: 'first', session_id: 's' }]);
    ws.last().push(answer('one'));
    assert.deepEqual(ws.last().ofType('chat').map((f) => f.message), ['first', 'second']);
    ws.last().push(answer('two', { error: true, error_code: 'LLM_UNAVAILABLE', message: 'sorry' }));
    assert.equal((await a.result).text, 'one');
    assert.equal((await a.result).via, 'legacy');
    await assert.rejects(b.result, { code: 'LLM_UNAVAILABLE' });
    client.close();
  });

  it('pings every 15 s, answers server pings, and drops the socket after 3 unanswered pings', async () => {
    const { client, clock, ws } = harness({ dialect: 'legacy', userId: USER });
    client.connect();
    await settle();
    ws.last().open();
    ws.last().push(connection);
    ws.last().push({ type: 'ping', timestamp: 7 });
    assert.deepEqual(ws.last().ofType('pong'), [{ type: 'pong', timestamp: 7 }]);
    await clock.advance(15_000);
    assert.equal(ws.last().ofType('ping').length, 1);
    ws.last().push({ type: 'pong', timestamp: 1 });
    await clock.advance(45_000);
    assert.equal(ws.last().ofType('ping').length, 4);
    assert.equal(client.state, 'live');
    await clock.advance(15_000);
    assert.equal(client.state, 'reconnecting');
    client.close();
  });

  it('re-sends the unanswered chat after a reconnect', async () => {
    const { client, clock, ws } = harness({ dialect: 'legacy', userId: USER });
    client.connect();
    await settle();
    ws.last().open();
    ws.last().push(connection);
    const chat = client.chat('are you there?');
    ws.last().drop(1006);
    await clock.advance(1_000);
    ws.last().open();
    ws.last().push(connection);
    assert.deepEqual(ws.last().ofType('chat').map((f) => f.message), ['are you there?']);
    ws.last().push(answer('yes'));
    assert.equal((await chat.result).text, 'yes');
    client.close();
  });

  it('dismiss goes to the REST route today’s app calls', async () => {
    const rest = fakeFetch(() => [200, { dismissed: true }]);
    const { client } = harness({ dialect: 'legacy', userId: USER, fetch: rest.fetch });
    client.dismiss('timer-9');
    await settle();
    assert.equal(rest.calls[0]!.url, 'https://pam.test/api/v1/pam/internal/dismiss-timer');
    assert.deepEqual(rest.calls[0]!.body, { timer_id: 'timer-9', user_id: USER });
  });
});

describe('legacy answer timeout', () => {
  it('after 30 s without an answer the chat also goes over REST; the late socket answer keeps the order', async () => {
    const rest = fakeFetch(() => [200, { response: 'from REST', actions: [] }]);
    const { client, clock, ws } = harness({ dialect: 'legacy', userId: USER, fetch: rest.fetch });
    client.connect();
    await settle();
    ws.last().open();
    ws.last().push(connection);
    const slow = client.chat('slow one');
    const next = client.chat('next one');
    await clock.advance(29_999);
    assert.equal(rest.calls.length, 0);
    await clock.advance(1);
    assert.equal(rest.calls.length, 1);
    assert.equal(rest.calls[0]!.headers['Idempotency-Key'], slow.id);
    const result = await slow.result;
    assert.equal(result.via, 'rest');
    assert.deepEqual(ws.last().ofType('chat').map((f) => f.message), ['slow one'], 'the socket slot stays taken');
    ws.last().push(answer('late socket answer'));
    assert.equal(slow.text, 'from REST', 'the first answer wins');
    assert.deepEqual(ws.last().ofType('chat').map((f) => f.message), ['slow one', 'next one']);
    ws.last().push(answer('two'));
    assert.equal((await next.result).text, 'two');
    client.close();
  });
});
