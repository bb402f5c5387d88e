import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PamError } from '../../src/index.js';
import { fakeFetch, harness } from '../fakes.js';

const page = {
  session_id: 'trip-42',
  messages: [
    { id: 'a2', role: 'assistant', content: 'You have $148.15 left.', created_at: '2026-11-30T10:00:01.000Z', client_msg_id: 'm1', model: 'builtin', source: 'builtin', ui_actions: [] },
    { id: 'u1', role: 'user', content: 'How much budget is left?', created_at: '2026-11-30T10:00:00.000Z', client_msg_id: 'm1' },
  ],
  next_before: 'u1',
};

describe('history over REST', () => {
  it('history(sessionId) reads one page with the bearer token and camelCases it', async () => {
    const { fetch, calls } = fakeFetch(() => [200, page]);
    const { client } = harness({ fetch });
    const result = await client.history('trip-42', { limit: 2 });
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.method, 'GET');
    assert.equal(calls[0]!.url, 'https://pam.test/api/v1/pam/conversations/trip-42/messages?limit=2');
    assert.equal(calls[0]!.headers.Authorization, 'Bearer t1');
    assert.deepEqual(result, {
      sessionId: 'trip-42',
      messages: [
        { id: 'a2', role: 'assistant', content: 'You have $148.15 left.', createdAt: '2026-11-30T10:00:01.000Z', clientMsgId: 'm1', model: 'builtin', source: 'builtin', uiActions: [] },
        { id: 'u1', role: 'user', content: 'How much budget is left?', createdAt: '2026-11-30T10:00:00.000Z', clientMsgId: 'm1' },
      ],
      nextBefore: 'u1',
    });
  });

  it('pages further back with before, and the session id defaults to "default" and is encoded', async () => {
    const { fetch, calls } = fakeFetch(() => [200, { session_id: 'default', messages: [], next_before: null }]);
    const { client } = harness({ fetch });
    const result = await client.history(undefined, { before: 'u1' });
    assert.equal(calls[0]!.url, 'https://pam.test/api/v1/pam/conversations/default/messages?before=u1');
    assert.equal(result.nextBefore, null);
    await client.history('a/b c').catch(() => undefined);
    assert.equal(calls[1]!.url, 'https://pam.test/api/v1/pam/conversations/a%2Fb%20c/messages');
  });

  it('another user\'s (or no) conversation rejects with the server\'s 404 NOT_FOUND', async () => {
    const { fetch } = fakeFetch(() => [404, { error: 'NOT_FOUND', message: 'no such conversation' }]);
    const { client } = harness({ fetch });
    await assert.rejects(client.history('nope'), (error: unknown) => {
      assert.ok(error instanceof PamError);
      assert.equal(error.code, 'NOT_FOUND');
      assert.equal(error.status, 404);
      assert.equal(error.retryable, false);
      return true;
    });
  });

  it('a 401 gets one fresh token (reason "expired") and the read is retried', async () => {
    const { fetch, calls } = fakeFetch((_call, n) => (n === 1 ? [401, { error: 'TOKEN_EXPIRED', message: 'expired' }] : [200, page]));
    const { client, tokens } = harness({ fetch });
    const result = await client.history('trip-42');
    assert.equal(result.messages.length, 2);
    assert.deepEqual(tokens, ['connect', 'expired']);
    assert.deepEqual(calls.map((c) => c.headers.Authorization), ['Bearer t1', 'Bearer t2']);
  });

  it('conversations() lists the user\'s conversations, newest first as the server orders them', async () => {
    const { fetch, calls } = fakeFetch(() => [200, { conversations: [
      { session_id: 'trip-42', title: 'PAM Conversation', message_count: 6, last_activity: '2026-11-30T10:00:01.000Z', created_at: '2026-11-29T08:00:00.000Z', preview: 'You have $148.15 left.' },
      { session_id: 'default', message_count: 2 },
    ] }]);
    const { client } = harness({ fetch });
    const list = await client.conversations({ limit: 10 });
    assert.equal(calls[0]!.url, 'https://pam.test/api/v1/pam/conversations?limit=10');
    assert.deepEqual(list.map((c) => [c.sessionId, c.messageCount, c.preview]), [['trip-42', 6, 'You have $148.15 left.'], ['default', 2, null]]);
  });
});
