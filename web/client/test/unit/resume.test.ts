import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { harness, settle, welcome } from '../fakes.js';

describe('resume', () => {
  it('resumes the earlier stream from the last seq seen, before sending any chat', async () => {
    const { client, clock, ws, named } = harness();
    client.connect();
    await settle();
    welcome(ws.last(), 'old', 1);
    const first = client.chat('first');
    ws.last().push({ type: 'ack', id: first.id, seq: 2 });
    ws.last().push({ type: 'chat_delta', id: first.id, delta: 'Hel', seq: 3 });
    ws.last().drop(1006);
    const second = client.chat('second, typed while offline');
    await clock.advance(1_000);
    welcome(ws.last(), 'fresh', 1, { epoch: 'e1' });
    assert.deepEqual(ws.last().sent.slice(1), [{ type: 'resume', stream_id: 'old', epoch: 'e1', last_seq: 3 }], 'only the resume until its outcome');
    // The replay: what the old socket missed, then `resumed`.
    ws.last().push({ type: 'chat_delta', id: first.id, delta: 'lo', seq: 4 });
    ws.last().push({ type: 'resumed', stream_id: 'old', replayed: 1, seq: 4 });
    assert.deepEqual(named('resumed'), [{ streamId: 'old', replayed: 1 }]);
    assert.deepEqual(ws.last().ofType('chat').map((f) => f.id), [second.id], 'the acked chat goes on on the stream; the queued one is sent');
    ws.last().push({ type: 'chat_end', id: first.id, seq: 5, message: 'Hello', ui_actions: [], model: 'm', source: 'builtin', cached: false, first_token_ms: 1, latency_ms: 2 });
    assert.equal((await first.result).text, 'Hello');
    assert.equal(client.streamId, 'old');
    ws.last().drop(1012);
    await clock.advance(1_000);
    welcome(ws.last(), 'fresh2');
    assert.deepEqual(ws.last().ofType('resume'), [{ type: 'resume', stream_id: 'old', epoch: 'e1', last_seq: 5 }]);
    client.close();
  });

  it('re-sends an unacked chat with the same id after a successful resume', async () => {
    const { client, clock, ws } = harness();
    client.connect();
    await settle();
    welcome(ws.last(), 'old', 1);
    const chat = client.chat('lost in transit');
    ws.last().drop(1006);
    await clock.advance(1_000);
    welcome(ws.last(), 'fresh', 1);
    ws.last().push({ type: 'resumed', stream_id: 'old', replayed: 0, seq: 1 });
    assert.deepEqual(ws.last().ofType('chat'), [{ type: 'chat', id: chat.id, message: 'lost in transit' }]);
    client.close();
  });

  it('after resume_failed re-sends every unanswered chat with its id and goes on with the fresh stream', async () => {
    const { client, clock, ws, named } = harness();
    client.connect();
    await settle();
    welcome(ws.last(), 'old', 1);
    const chat = client.chat('where was I?', { sessionId: 'trip-1' });
    ws.last().push({ type: 'ack', id: chat.id, seq: 2 });
    ws.last().push({ type: 'chat_delta', id: chat.id, delta: 'You were', seq: 3 });
    ws.last().drop(1006);
    await clock.advance(1_000);
    welcome(ws.last(), 'fresh', 1, { epoch: 'e2' });
    ws.last().push({ type: 'resume_failed', stream_id: 'fresh', reason: 'epoch_changed', seq: 2 });
    assert.deepEqual(named('resume_failed'), [{ streamId: 'fresh', reason: 'epoch_changed', resent: 1 }]);
    assert.deepEqual(ws.last().ofType('chat'), [{ type: 'chat', id: chat.id, message: 'where was I?', session_id: 'trip-1' }]);
    assert.equal(chat.text, '', 'the text starts over');
    ws.last().push({ type: 'chat_end', id: chat.id, seq: 3, message: 'You were in Broome.', ui_actions: [], model: 'm', source: 'cache', cached: true, first_token_ms: null, latency_ms: 1 });
    assert.equal((await chat.result).cached, true);
    assert.equal(client.streamId, 'fresh');
    ws.last().drop(1006);
    await clock.advance(1_000);
    welcome(ws.last(), 'fresh3');
    assert.deepEqual(ws.last().ofType('resume'), [{ type: 'resume', stream_id: 'fresh', epoch: 'e2', last_seq: 3 }]);
    client.close();
  });
});

describe('resume that gets no answer', () => {
  it('drops the socket after connectTimeoutMs and starts a fresh stream, re-sending the acked chat', async () => {
    const { client, clock, ws } = harness({ connectTimeoutMs: 5_000 });
    client.connect();
    await settle();
    welcome(ws.last(), 'old', 1);
    const chat = client.chat('still there?');
    ws.last().push({ type: 'ack', id: chat.id, seq: 2 });
    ws.last().drop(1006);
    await clock.advance(1_000);
    welcome(ws.last(), 'fresh', 1);
    assert.equal(ws.last().ofType('resume').length, 1);
    await clock.advance(5_000);
    assert.equal(client.state, 'reconnecting');
    await clock.advance(1_000);
    welcome(ws.last(), 'fresh2', 1);
    assert.equal(ws.last().ofType('resume').length, 0, 'no resume of a stream given up on');
    assert.deepEqual(ws.last().ofType('chat').map((f) => f.id), [chat.id]);
    client.close();
  });
});
