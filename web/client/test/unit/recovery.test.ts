// Crash recovery (v2): re-sends after a failed resume or a retryable error, answer deadlines,
// and the 4504 grace after a socket was lost uncleanly.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoff, retryDelayMs, type PamClientOptions, type PamError } from '../../src/index.js';
import { type FakeSocket, harness, settle, welcome } from '../fakes.js';

// A heartbeat long enough that the watchdog stays out of the way of minute-long waits.
const QUIET = { heartbeat_ms: 10_000_000 };

async function live(extra: Partial<PamClientOptions> = {}) {
  const h = harness(extra);
  h.client.connect();
  await settle();
  welcome(h.ws.last(), 's1', 1, QUIET);
  return h;
}

/** Reconnects after a drop: opens the next socket and welcomes it on `streamId` (a resume follows). */
async function reconnect(h: Awaited<ReturnType<typeof live>>, streamId: string): Promise<FakeSocket> {
  await h.clock.advance(h.named('reconnecting').at(-1)!.delayMs as number);
  const socket = h.ws.last();
  welcome(socket, streamId, 1, QUIET);
  return socket;
}

const end = (id: string, seq: number, extra: Record<string, unknown> = {}) => ({
  type: 'chat_end', id, seq, message: `answer to ${id}`, ui_actions: [], model: 'm', source: 'builtin', cached: false, first_token_ms: 1, latency_ms: 2, ...extra,
});
const error = (id: string, seq: number, code: string, retryable = true) => ({ type: 'error', id, seq, error_code: code, message: `${code} for ${id}`, retryable });
const chatIds = (socket: FakeSocket) => socket.ofType('chat').map((f) => f.id);

describe('re-send after a failed resume', () => {
  for (const reason of ['unknown_stream', 'too_old', 'ahead', 'epoch_changed', 'busy']) {
    it(`resume_failed (${reason}) re-sends every open chat once each, with its id, on the fresh stream`, async () => {
      const h = await live();
      const streaming = h.client.chat('acked and streaming');
      const unacked = h.client.chat('sent, never acked');
      const socket = h.ws.last();
      socket.push({ type: 'ack', id: streaming.id, seq: 2 });
      socket.push({ type: 'chat_delta', id: streaming.id, delta: 'Half an ans', seq: 3 });
      socket.drop(1006);
      const offline = h.client.chat('typed while offline');
      const fresh = await reconnect(h, 'fresh');
      assert.deepEqual(chatIds(fresh), [], 'nothing before the resume outcome');
      fresh.push({ type: 'resume_failed', stream_id: 'fresh', reason, seq: 2 });
      assert.deepEqual(chatIds(fresh), [streaming.id, unacked.id, offline.id]);
      assert.equal(h.named('resume_failed')[0]!.resent, 3);
      assert.equal(streaming.text, '', 'the re-sent chat starts its text over');
      await h.clock.advance(59_000);
      assert.deepEqual(chatIds(fresh), [streaming.id, unacked.id, offline.id], 'each once');
      h.client.close();
    });
  }
});

describe('re-send after a retryable error', () => {
  it('re-sends the same id after an equal-jitter backoff, and gives the last error to the app after chatRetries', async () => {
    const h = await live({ chatRetries: 5 });
    const chat = h.client.chat('are you there?');
    const socket = h.ws.last();
    let errors = 0;
    chat.onError(() => errors++);
    // random = 0.5: 1.5, 3, 6, 12, 12 s (the middle of 1–2, 2–4, 4–8, 8–16, 8–16 s).
    const waits = [1_500, 3_000, 6_000, 12_000, 12_000];
    let seq = 2;
    for (const [n, wait] of waits.entries()) {
      socket.push({ type: 'ack', id: chat.id, seq: seq++ });
      socket.push(error(chat.id, seq++, 'LLM_UNAVAILABLE'));
      assert.equal(chat.status, 'queued');
      await h.clock.advance(wait - 1);
      assert.equal(chatIds(socket).length, n + 1, `re-send ${n + 1} waits its backoff`);
      await h.clock.advance(1);
      assert.equal(chatIds(socket).length, n + 2, `re-send ${n + 1} after ${wait} ms`);
    }
    assert.deepEqual(new Set(chatIds(socket)), new Set([chat.id]), 'always the same id');
    assert.deepEqual(h.named('chat_retry').map((e) => [e.reason, e.code, e.attempt, e.delayMs]), waits.map((w, n) => ['error', 'LLM_UNAVAILABLE', n + 1, w]));
    socket.push(error(chat.id, seq++, 'LLM_UNAVAILABLE'));
    assert.equal(chat.status, 'failed', 'the sixth error is final');
    await assert.rejects(chat.result, (e: PamError) => e.code === 'LLM_UNAVAILABLE' && e.retryable);
    await h.clock.advance(120_000);
    assert.equal(chatIds(socket).length, 6, 'no seventh send');
    assert.equal(errors, 1);
    h.client.close();
  });

  it('a re-sent chat is answered: STORAGE_UNAVAILABLE, then the answer', async () => {
    const h = await live();
    const chat = h.client.chat('log 40 dollars of fuel');
    h.ws.last().push(error(chat.id, 2, 'STORAGE_UNAVAILABLE'));
    await h.clock.advance(1_500);
    assert.deepEqual(chatIds(h.ws.last()), [chat.id, chat.id]);
    h.ws.last().push({ type: 'ack', id: chat.id, seq: 3 });
    h.ws.last().push(end(chat.id, 4));
    assert.equal((await chat.result).text, `answer to ${chat.id}`);
    h.client.close();
  });

  for (const outcome of ['resumed', 'resume_failed'] as const) {
    it(`waits out the backoff across a reconnect (${outcome}), then sends once on the new socket`, async () => {
      const h = await live();
      const chat = h.client.chat('x');
      h.ws.last().push(error(chat.id, 2, 'LLM_UNAVAILABLE'));
      h.ws.last().drop(1006);
      const fresh = await reconnect(h, 's2'); // the reconnect (0.75 s) comes before the re-send (1.5 s)
      if (outcome === 'resumed') fresh.push({ type: 'resumed', stream_id: 's1', replayed: 0, seq: 2 });
      else fresh.push({ type: 'resume_failed', stream_id: 's2', reason: 'unknown_stream', seq: 2 });
      assert.deepEqual(chatIds(fresh), [], 'still waiting out its backoff');
      await h.clock.advance(750);
      assert.deepEqual(chatIds(fresh), [chat.id]);
      await h.clock.advance(30_000);
      assert.deepEqual(chatIds(fresh), [chat.id], 'once');
      h.client.close();
    });
  }

  it('SERVICE_RESTART refusing a new chat (a draining node) re-sends it on the next socket, not the draining one', async () => {
    const h = await live();
    const chat = h.client.chat('x');
    const draining = h.ws.last();
    draining.push(error(chat.id, 2, 'SERVICE_RESTART'));
    await h.clock.advance(30_000);
    assert.deepEqual(chatIds(draining), [chat.id], 'not sent to the draining node again');
    draining.drop(1012);
    const next = await reconnect(h, 's2');
    next.push({ type: 'resumed', stream_id: 's1', replayed: 0, seq: 2 });
    assert.deepEqual(chatIds(next), [chat.id]);
    h.client.close();
  });

  it("a crashed node's orphaned turn (SERVICE_RESTART in the resume's replay) is re-sent on the resumed socket", async () => {
    const h = await live();
    const chat = h.client.chat('x');
    h.ws.last().push({ type: 'ack', id: chat.id, seq: 2 });
    h.ws.last().drop(1006);
    const next = await reconnect(h, 's2');
    next.push(error(chat.id, 3, 'SERVICE_RESTART')); // "the node answering this chat stopped"
    next.push({ type: 'resumed', stream_id: 's1', replayed: 1, seq: 3 });
    await h.clock.advance(1_500);
    assert.deepEqual(chatIds(next), [chat.id]);
    next.push(end(chat.id, 4));
    assert.equal((await chat.result).text, `answer to ${chat.id}`);
    h.client.close();
  });

  it("…and so is one whose ack died with the node (the replay's error is not a live refusal by this node)", async () => {
    const h = await live();
    const chat = h.client.chat('x');
    h.ws.last().drop(1006); // the node took the chat in, then died before its ack got out
    const next = await reconnect(h, 's2');
    next.push(error(chat.id, 2, 'SERVICE_RESTART'));
    next.push({ type: 'resumed', stream_id: 's1', replayed: 1, seq: 2 });
    assert.deepEqual(chatIds(next), [], 'waits out its backoff first');
    await h.clock.advance(1_500);
    assert.deepEqual(chatIds(next), [chat.id]);
    h.client.close();
  });

  it('fails at once on a non-retryable error, and leaves RATE_LIMIT_EXCEEDED to the app', async () => {
    const h = await live();
    const refused = h.client.chat('x');
    const limited = h.client.chat('y');
    h.ws.last().push(error(refused.id, 2, 'VALIDATION_ERROR', false));
    h.ws.last().push(error(limited.id, 3, 'RATE_LIMIT_EXCEEDED', true));
    assert.deepEqual([refused.status, limited.status], ['failed', 'failed']);
    await assert.rejects(refused.result, { code: 'VALIDATION_ERROR', retryable: false });
    await assert.rejects(limited.result, { code: 'RATE_LIMIT_EXCEEDED', retryable: true });
    await h.clock.advance(60_000);
    assert.equal(chatIds(h.ws.last()).length, 2);
    assert.deepEqual(h.named('chat_retry'), []);
    h.client.close();
  });
});

describe('answered once', () => {
  it('a re-sent chat whose answer arrives twice (its replay) resolves and emits once; a late error about it is ignored', async () => {
    const h = await live();
    const chat = h.client.chat('x');
    let acks = 0;
    let ends = 0;
    let fails = 0;
    chat.onAck(() => acks++).onEnd(() => ends++).onError(() => fails++);
    const socket = h.ws.last();
    socket.push({ type: 'ack', id: chat.id, seq: 2 });
    socket.push(error(chat.id, 3, 'LLM_UNAVAILABLE')); // "still being answered on another node"
    await h.clock.advance(1_500);
    socket.push({ type: 'ack', id: chat.id, seq: 4 });
    socket.push(end(chat.id, 5, { cached: true }));
    assert.equal(chat.status, 'done');
    socket.push(end(chat.id, 6, { cached: true })); // the other run's answer, replayed
    socket.push(error(chat.id, 7, 'SERVICE_RESTART'));
    await h.clock.advance(120_000);
    assert.equal((await chat.result).cached, true);
    assert.deepEqual([acks, ends, fails], [1, 1, 0]);
    assert.deepEqual(h.named('server_error'), [], 'an error about a chat already answered is not news');
    assert.equal(chatIds(socket).length, 2, 'no re-send once answered');
    h.client.close();
  });
});

describe('answer deadline', () => {
  it('re-sends the id once when no answer came within answerDeadlineMs, then fails with NO_ANSWER', async () => {
    const h = await live({ answerDeadlineMs: 60_000 });
    const chat = h.client.chat('x');
    const socket = h.ws.last();
    let errors = 0;
    chat.onError(() => errors++);
    socket.push({ type: 'ack', id: chat.id, seq: 2 });
    await h.clock.advance(59_999);
    assert.equal(chatIds(socket).length, 1);
    await h.clock.advance(1);
    assert.deepEqual(chatIds(socket), [chat.id, chat.id], 'sent again with its id, on the same socket');
    assert.deepEqual(h.named('chat_retry'), [{ id: chat.id, reason: 'deadline', attempt: 1, delayMs: 0 }]);
    await h.clock.advance(59_999);
    assert.equal(chat.status, 'sent');
    await h.clock.advance(1);
    assert.equal(chat.status, 'failed', 'the second deadline is final');
    await assert.rejects(chat.result, (e: PamError) => e.code === 'NO_ANSWER' && e.retryable && /60000 ms/.test(e.message));
    assert.equal(errors, 1);
    await h.clock.advance(600_000);
    assert.equal(chatIds(socket).length, 2, 'never a third send');
    h.client.close();
  });

  it('chat_deltas extend the deadline', async () => {
    const h = await live({ answerDeadlineMs: 60_000 });
    const chat = h.client.chat('a long story');
    const socket = h.ws.last();
    for (let i = 0; i < 4; i++) {
      await h.clock.advance(50_000);
      socket.push({ type: 'chat_delta', id: chat.id, delta: `part ${i} `, seq: 2 + i });
    }
    await h.clock.advance(59_999);
    assert.equal(chatIds(socket).length, 1, '200 s, but never 60 s without a delta');
    await h.clock.advance(1);
    assert.equal(chatIds(socket).length, 2);
    h.client.close();
  });

  it('a chat waiting behind a long answer is not timed out; its deadline runs from that answer’s end', async () => {
    const h = await live({ answerDeadlineMs: 60_000 });
    const first = h.client.chat('plan the whole trip');
    const second = h.client.chat('and the fuel cost?');
    const socket = h.ws.last();
    socket.push({ type: 'ack', id: first.id, seq: 2 });
    socket.push({ type: 'ack', id: second.id, seq: 3 });
    for (let i = 0; i < 3; i++) {
      await h.clock.advance(40_000);
      socket.push({ type: 'chat_delta', id: first.id, delta: '…', seq: 4 + i });
    }
    socket.push(end(first.id, 7));
    await h.clock.advance(59_999);
    assert.deepEqual(chatIds(socket), [first.id, second.id], '180 s in, nothing re-sent');
    await h.clock.advance(1);
    assert.deepEqual(chatIds(socket), [first.id, second.id, second.id]);
    h.client.close();
  });

  it('progress of a later chat does not extend an earlier one (it should have been answered first)', async () => {
    const h = await live({ answerDeadlineMs: 60_000 });
    const lost = h.client.chat('lost');
    const later = h.client.chat('later');
    const socket = h.ws.last();
    await h.clock.advance(30_000);
    socket.push({ type: 'chat_delta', id: later.id, delta: '…', seq: 2 });
    await h.clock.advance(30_000);
    assert.deepEqual(chatIds(socket), [lost.id, later.id, lost.id]);
    h.client.close();
  });

  it('time without a live socket does not count: the deadline starts again on the resumed stream', async () => {
    const h = await live({ answerDeadlineMs: 60_000 });
    const chat = h.client.chat('x');
    h.ws.last().push({ type: 'ack', id: chat.id, seq: 2 });
    await h.clock.advance(50_000);
    h.ws.last().drop(1006);
    const next = await reconnect(h, 's2');
    next.push({ type: 'resumed', stream_id: 's1', replayed: 0, seq: 2 });
    await h.clock.advance(59_999);
    assert.deepEqual(chatIds(next), [], 'acked on the resumed stream: not re-sent');
    await h.clock.advance(1);
    assert.deepEqual(chatIds(next), [chat.id], 'its deadline, 60 s after the resume');
    h.client.close();
  });

  it('answerDeadlineMs: 0 turns it off', async () => {
    const h = await live({ answerDeadlineMs: 0 });
    const chat = h.client.chat('x');
    await h.clock.advance(600_000);
    assert.deepEqual(chatIds(h.ws.last()), [chat.id]);
    assert.equal(chat.status, 'sent');
    h.client.close();
  });
});

describe('4504 right after a crash', () => {
  it('after an unclean loss (1006) a 4504 is retried with backoff, and the chat goes out once a socket gets in', async () => {
    const h = await live();
    const chat = h.client.chat('x');
    h.ws.last().push({ type: 'ack', id: chat.id, seq: 2 });
    h.ws.last().drop(1006);
    for (let i = 0; i < 3; i++) {
      await h.clock.advance(h.named('reconnecting').at(-1)!.delayMs as number);
      h.ws.last().open();
      h.ws.last().drop(4504, 'too many connections');
      assert.equal(h.client.state, 'reconnecting', `4504 number ${i + 1} is retried`);
    }
    assert.deepEqual(h.named('reconnecting').slice(1).map((e) => e.code), [4504, 4504, 4504]);
    const next = await reconnect(h, 's2');
    next.push({ type: 'resume_failed', stream_id: 's2', reason: 'unknown_stream', seq: 2 });
    assert.deepEqual(chatIds(next), [chat.id]);
    assert.equal(h.named('stopped').length, 0);
    h.client.close();
  });

  it('gives up after tooManyConnectionsRetryMs: a 4504 past the window stops as before', async () => {
    const h = await live({ tooManyConnectionsRetryMs: 30_000 });
    const chat = h.client.chat('x');
    const lostAt = h.clock.now();
    h.ws.last().drop(1006);
    for (let i = 0; h.client.state !== 'stopped'; i++) {
      assert.ok(i < 50, 'stops within 50 attempts');
      await h.clock.advance(h.named('reconnecting').at(-1)!.delayMs as number);
      h.ws.last().open();
      h.ws.last().drop(4504);
    }
    assert.ok(h.clock.now() - lostAt > 30_000, 'retried for the whole window');
    assert.ok(h.named('reconnecting').slice(1).every((e) => e.code === 4504));
    assert.deepEqual(h.named('stopped'), [{ code: 4504, reason: 'too many connections for this user' }]);
    await assert.rejects(chat.result, { code: 'TOO_MANY_CONNECTIONS' });
  });

  it('the client dropping a silent socket counts as an unclean loss', async () => {
    const h = harness();
    h.client.connect();
    await settle();
    welcome(h.ws.last()); // heartbeat 25 s: dropped after 55 s of silence
    await h.clock.advance(55_000);
    assert.equal(h.named('reconnecting')[0]!.reason, 'no frame from the server in time');
    await h.clock.advance(h.named('reconnecting').at(-1)!.delayMs as number);
    h.ws.last().open();
    h.ws.last().drop(4504);
    assert.equal(h.client.state, 'reconnecting');
    h.client.close();
  });

  it('4504 on a fresh start (no socket lost) stops at once', async () => {
    const h = harness();
    h.client.connect();
    await settle();
    h.ws.last().open();
    h.ws.last().drop(4504);
    assert.equal(h.client.state, 'stopped');
    await h.clock.advance(60_000);
    assert.equal(h.ws.sockets.length, 1);
  });

  it('4504 after a clean close (1012, a drain) stops at once', async () => {
    const h = await live();
    h.ws.last().drop(1012);
    await h.clock.advance(h.named('reconnecting').at(-1)!.delayMs as number);
    h.ws.last().open();
    h.ws.last().drop(4504);
    assert.equal(h.client.state, 'stopped');
  });
});

describe('retry backoff', () => {
  it('equal jitter: re-send n waits within [max(min, c/2), c], c = min(max, base·2^n)', () => {
    const b = backoff({ minMs: 1_000, baseMs: 2_000, maxMs: 16_000 });
    const bounds = [0, 1, 2, 3, 4, 5].map((n) => [retryDelayMs(b, n, () => 0), retryDelayMs(b, n, () => 0.999999)]);
    assert.deepEqual(bounds, [[1_000, 2_000], [2_000, 4_000], [4_000, 8_000], [8_000, 16_000], [8_000, 16_000], [8_000, 16_000]]);
    const tiny = backoff({ minMs: 500, baseMs: 500, maxMs: 500 });
    assert.equal(retryDelayMs(tiny, 0, () => 0), 500, 'never below minMs');
  });
});
