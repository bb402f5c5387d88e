import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { harness, settle, welcome } from '../fakes.js';

const end = (id: string, message: string, seq: number, extra: Record<string, unknown> = {}) => ({
  type: 'chat_end', id, seq, message, ui_actions: [{ type: 'reload_expenses' }], model: 'm', source: 'builtin', cached: false, first_token_ms: 5, latency_ms: 9, ...extra,
});

describe('chat', () => {
  it('streams deltas to callbacks and the iterator, and the final message replaces them', async () => {
    const { client, ws } = harness();
    client.connect();
    await settle();
    welcome(ws.last());
    const chat = client.chat('hi', { context: { page: 'expenses' } });
    assert.deepEqual(ws.last().ofType('chat'), [{ type: 'chat', id: 'm1', message: 'hi', context: { page: 'expenses' } }]);
    const seen: string[] = [];
    let acked = false;
    chat.onAck(() => (acked = true)).onDelta((_d, text) => seen.push(text));
    const collected = (async () => {
      const parts: string[] = [];
      for await (const delta of chat) parts.push(delta);
      return parts;
    })();
    ws.last().push({ type: 'ack', id: 'm1', seq: 2 });
    ws.last().push({ type: 'chat_delta', id: 'm1', delta: 'Hel', seq: 3 });
    ws.last().push({ type: 'chat_delta', id: 'm1', delta: 'lo wrld', seq: 4 });
    assert.equal(chat.text, 'Hello wrld');
    ws.last().push(end('m1', 'Hello world!', 5));
    const result = await chat.result;
    assert.ok(acked);
    assert.deepEqual(seen, ['Hel', 'Hello wrld']);
    assert.deepEqual(await collected, ['Hel', 'lo wrld']);
    assert.equal(result.text, 'Hello world!');
    assert.equal(chat.text, 'Hello world!');
    assert.equal(chat.status, 'done');
    assert.deepEqual(result.uiActions, [{ type: 'reload_expenses' }]);
    let ended = 0;
    chat.onEnd(() => ended++);
    assert.equal(ended, 1, 'a late onEnd still hears the answer');
    client.close();
  });

  it('answers each id once: a replayed chat_end for a finished id is ignored', async () => {
    const { client, ws } = harness();
    client.connect();
    await settle();
    welcome(ws.last());
    const chat = client.chat('hi');
    let ends = 0;
    chat.onEnd(() => ends++);
    ws.last().push(end(chat.id, 'one', 2));
    ws.last().push(end(chat.id, 'one', 3, { cached: true }));
    await chat.result;
    assert.equal(ends, 1);
    assert.equal(client.chat('again', { id: chat.id }).id, chat.id);
    client.close();
  });

  it('queues chats made before the socket is live and sends them in order after welcome', async () => {
    const { client, ws } = harness();
    const a = client.chat('a');
    const b = client.chat('b', { sessionId: 's' });
    client.connect();
    await settle();
    assert.equal(a.status, 'queued');
    welcome(ws.last());
    assert.deepEqual(ws.last().ofType('chat').map((f) => f.id), [a.id, b.id]);
    assert.equal(b.status, 'sent');
    client.close();
  });

  it('re-sends an unacked chat with the same id on the next socket (at least once)', async () => {
    const { client, clock, ws } = harness();
    client.connect();
    await settle();
    welcome(ws.last(), 's1');
    const chat = client.chat('hello?');
    ws.last().drop(1001);
    assert.equal(chat.status, 'queued');
    await clock.advance(1_000);
    welcome(ws.last(), 's2');
    ws.last().push({ type: 'resume_failed', stream_id: 's2', reason: 'unknown_stream', seq: 2 });
    assert.deepEqual(ws.last().ofType('chat').map((f) => f.id), [chat.id]);
    client.close();
  });

  it('fails a chat the server refuses, with its code', async () => {
    const { client, ws } = harness();
    client.connect();
    await settle();
    welcome(ws.last());
    const chat = client.chat(' ');
    let error: unknown;
    chat.onError((e) => (error = e));
    ws.last().push({ type: 'error', id: chat.id, seq: 2, error_code: 'EMPTY_MESSAGE', message: 'message is empty', retryable: false });
    await assert.rejects(chat.result, { code: 'EMPTY_MESSAGE' });
    assert.equal((error as { code: string }).code, 'EMPTY_MESSAGE');
    client.close();
  });

  it('cancel: sends cancel for a running chat, drops a queued one', async () => {
    const { client, ws } = harness();
    const queued = client.chat('never sent');
    queued.cancel();
    await assert.rejects(queued.result, { code: 'CANCELLED' });
    client.connect();
    await settle();
    welcome(ws.last());
    const running = client.chat('long story');
    running.cancel();
    assert.deepEqual(ws.last().ofType('cancel'), [{ type: 'cancel', id: running.id }]);
    assert.equal(ws.last().ofType('chat').length, 1);
    client.close();
  });
});

describe('queue bound', () => {
  it('refuses a chat with QUEUE_FULL once maxQueued are waiting', async () => {
    const { client } = harness({ maxQueued: 2 });
    client.chat('a');
    client.chat('b');
    await assert.rejects(client.chat('c').result, { code: 'QUEUE_FULL', retryable: true });
    client.close();
  });

  it('refuses a chat with QUEUE_FULL once the waiting chats would exceed maxQueuedBytes', async () => {
    const { client } = harness({ maxQueuedBytes: 40 });
    client.chat('é'.repeat(10)); // 20 bytes in UTF-8
    client.chat('x', { context: { k: 'vvvvvvvvv' } }); // 1 + 17 bytes ({"k":"vvvvvvvvv"}): 38 waiting
    await assert.rejects(client.chat('é'.repeat(3)).result, { code: 'QUEUE_FULL', retryable: true });
    const fits = client.chat('ab'); // exactly 40

    assert.notEqual(fits.status, 'failed', 'a chat that still fits is taken');
    client.close();
  });
});

describe('context', () => {
  it('updateContext is sent when live and again first thing on every new socket', async () => {
    const { client, clock, ws } = harness();
    client.updateContext({ page: 'trips', units: 'metric' });
    client.connect();
    await settle();
    welcome(ws.last(), 's1');
    assert.deepEqual(ws.last().sent.slice(1), [{ type: 'context_update', context: { page: 'trips', units: 'metric' } }]);
    client.updateContext({ page: 'expenses', units: undefined });
    assert.deepEqual(ws.last().ofType('context_update').at(-1), { type: 'context_update', context: { page: 'expenses' } });
    const chat = client.chat('hi');
    ws.last().drop(1006);
    await clock.advance(1_000);
    welcome(ws.last(), 's2');
    ws.last().push({ type: 'resume_failed', stream_id: 's2', reason: 'unknown_stream', seq: 2 });
    assert.deepEqual(ws.last().sent.slice(1).map((f) => f.type), ['resume', 'context_update', 'chat']);
    assert.equal(ws.last().ofType('chat')[0]!.id, chat.id);
    client.close();
  });
});
