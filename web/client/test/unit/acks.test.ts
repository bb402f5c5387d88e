import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type FakeClock, type FakeSocket, harness, settle, welcome } from '../fakes.js';

interface SentAck {
  at: number;
  seq: number;
}

/** Records the `ack` frames `socket` sends, with the fake time each went out. */
function acksOf(socket: FakeSocket, clock: FakeClock): SentAck[] {
  const acks: SentAck[] = [];
  const send = socket.send.bind(socket);
  socket.send = (data: string) => {
    send(data);
    const frame = JSON.parse(data) as { type: string; seq: number };
    if (frame.type === 'ack') acks.push({ at: clock.now(), seq: frame.seq });
  };
  return acks;
}

/** The policy's bound: two acks less than 2 s apart are at least 64 frames apart (here: seqs). */
function assertRateBound(acks: SentAck[]): void {
  for (let i = 1; i < acks.length; i++) {
    const [a, b] = [acks[i - 1]!, acks[i]!];
    assert.ok(b.seq > a.seq, `acks move forward: ${JSON.stringify(acks)}`);
    assert.ok(b.at - a.at >= 2_000 || b.seq - a.seq >= 64, `ack ${i} came ${b.at - a.at} ms and ${b.seq - a.seq} frames after the previous one`);
  }
}

const delta = (seq: number) => ({ type: 'chat_delta', id: 'elsewhere', delta: '.', seq });
const timer = (id: string, seq: number) => ({
  type: 'timer_expired',
  seq,
  id,
  timer_id: `timer-${id}`,
  label: 'tyres',
  timer_type: 'timer',
  message: 'check the tyre pressure',
  fire_at: '2026-11-30T10:00:00Z',
  notification: { title: 'Timer', body: 'check the tyre pressure', requireInteraction: true, tag: id },
});
const alert = (id: string, seq: number) => ({
  type: 'proactive_alert',
  seq,
  id,
  timestamp: '2026-11-30T10:00:00Z',
  content: { type: 'proactive_alert', category: 'financial_guidance', alert_type: 'budget_alert', message: 'Fuel is at 80 %', priority: 'normal', actions: [] },
});

/** A connected v2 client welcomed on stream `s1` at seq 1, with its acks recorded. */
async function live() {
  const h = harness();
  h.client.connect();
  await settle();
  const acks = acksOf(h.ws.last(), h.clock);
  welcome(h.ws.last(), 's1', 1);
  return { ...h, acks };
}

describe('acks (v2 proof of receipt)', () => {
  it('a burst of 200 frames gets at most ceil(200/64)+1 acks, the last naming the last seq', async () => {
    const { client, clock, ws, acks } = await live();
    for (let seq = 2; seq <= 201; seq++) ws.last().push(delta(seq));
    await clock.advance(10_000);
    assert.ok(acks.length >= 1 && acks.length <= Math.ceil(200 / 64) + 1, `${acks.length} acks: ${JSON.stringify(acks)}`);
    assert.deepEqual(acks.map((a) => a.seq), [65, 129, 193, 201], 'every 64 frames, then the rest within 2 s');
    assertRateBound(acks);
    // The same burst spread over 1 s (5 ms apart): the 64-frame rule, not the timer, paces it.
    for (let seq = 202; seq <= 401; seq++) {
      ws.last().push(delta(seq));
      await clock.advance(5);
    }
    await clock.advance(10_000);
    const second = acks.filter((a) => a.seq > 201);
    assert.ok(second.length <= Math.ceil(200 / 64) + 1, `${second.length} acks: ${JSON.stringify(second)}`);
    // After a quiet spell the first frame is acked at once, then every 64th, then the rest within 2 s.
    assert.deepEqual(second.map((a) => a.seq), [202, 266, 330, 394, 401]);
    assertRateBound(acks);
    client.close();
  });

  it('frames trickling in are acked at most once per 2 s, and the last one is acked', async () => {
    const { client, clock, ws, acks } = await live();
    const start = clock.now();
    for (let seq = 2; seq <= 101; seq++) {
      ws.last().push(delta(seq)); // one every 100 ms for 10 s
      await clock.advance(100);
    }
    await clock.advance(2_000);
    assertRateBound(acks);
    for (let i = 1; i < acks.length; i++) assert.ok(acks[i]!.at - acks[i - 1]!.at >= 2_000, `acks ${i - 1} and ${i}: ${JSON.stringify(acks)}`);
    assert.ok(acks.length <= Math.ceil(10_000 / 2_000) + 1, `${acks.length} acks: ${JSON.stringify(acks)}`);
    assert.ok(acks.length >= 5, `acks keep coming while frames arrive: ${JSON.stringify(acks)}`);
    assert.equal(acks[0]!.at, start, 'the first frame after a quiet spell is acked at once');
    assert.equal(acks.at(-1)!.seq, 101);
    client.close();
  });

  it('a push is acked at once after a quiet spell, and within 2 s of the previous ack otherwise', async () => {
    const { client, clock, ws, acks, named } = await live();
    await clock.advance(5_000);
    const t0 = clock.now();
    ws.last().push(timer('t-1', 2));
    await clock.advance(0);
    assert.deepEqual(acks, [{ at: t0, seq: 2 }]);
    assert.equal(named('timer_expired').length, 1);
    await clock.advance(500);
    ws.last().push(alert('a-1', 3));
    await clock.advance(1_499);
    assert.equal(acks.length, 1, 'not within 2 s of the previous ack');
    await clock.advance(1);
    assert.deepEqual(acks, [
      { at: t0, seq: 2 },
      { at: t0 + 2_000, seq: 3 },
    ]);
    client.close();
  });

  it('sends no ack when nothing new arrived: pings are answered by their pong only', async () => {
    const { client, clock, ws, acks } = await live();
    ws.last().push({ type: 'ping', timestamp: 41, seq: 2 });
    await clock.advance(10_000);
    ws.last().push({ type: 'ping', timestamp: 42, seq: 3 });
    await clock.advance(10_000);
    assert.equal(acks.length, 0, 'no ack for pings and the welcome');
    assert.deepEqual(ws.last().ofType('pong'), [
      { type: 'pong', timestamp: 41 },
      { type: 'pong', timestamp: 42 },
    ], 'each ping answered with a pong echoing its timestamp');
    ws.last().push(delta(4));
    await clock.advance(20_000);
    ws.last().push({ type: 'ping', timestamp: 43, seq: 5 });
    await clock.advance(20_000);
    assert.deepEqual(acks.map((a) => a.seq), [4], 'one ack for the one new frame, none again for the same position');
    client.close();
  });

  it('sends no ack after close() and leaves no timer behind', async () => {
    const { client, clock, ws, acks } = await live();
    ws.last().push(delta(2));
    await clock.advance(0);
    ws.last().push(timer('t-1', 3)); // its ack waits for the 2 s window
    assert.equal(acks.length, 1);
    client.close();
    assert.deepEqual(clock.pending(), [], 'no timer keeps a closed client alive');
    await clock.advance(10_000);
    assert.equal(acks.length, 1);
    assert.equal(ws.last().ofType('ack').length, 1);
  });

  it('sends no ack on a socket that closed; the next socket acks only what it received', async () => {
    const { client, clock, ws, acks } = await live();
    ws.last().push(delta(2));
    await clock.advance(0);
    ws.last().push(delta(3)); // due, within the window
    ws.last().drop(1006);
    await clock.advance(3_000); // the window ends while the next socket waits for its welcome
    assert.equal(ws.sockets.length, 2);
    assert.deepEqual(ws.last().ofType('ack'), []);
    const next = acksOf(ws.last(), clock);
    welcome(ws.last(), 'fresh', 1);
    ws.last().push({ type: 'resumed', stream_id: 's1', replayed: 0, seq: 4 });
    await clock.advance(10_000);
    assert.deepEqual(acks.map((a) => a.seq), [2], 'nothing after the drop on the old socket');
    assert.deepEqual(next, [], 'a resume with nothing replayed is its own proof');
    client.close();
  });

  it('waits for the resume outcome, then acks the replayed push', async () => {
    const { client, clock, ws, acks, named } = await live();
    ws.last().push(delta(2));
    await clock.advance(0);
    ws.last().drop(1006);
    await clock.advance(1_000);
    const next = acksOf(ws.last(), clock);
    welcome(ws.last(), 'fresh', 1);
    assert.deepEqual(ws.last().ofType('resume'), [{ type: 'resume', stream_id: 's1', epoch: 'e1', last_seq: 2 }]);
    ws.last().push(timer('t-1', 4)); // replayed (seq 3 was a ping: not replayed)
    await clock.advance(5_000);
    assert.equal(next.length, 0, 'no ack before the resume outcome');
    assert.equal(named('timer_expired').length, 1);
    ws.last().push({ type: 'resumed', stream_id: 's1', replayed: 1, seq: 5 });
    await clock.advance(0);
    assert.deepEqual(next.map((a) => a.seq), [5]);
    assert.deepEqual(acks.map((a) => a.seq), [2]);
    client.close();
  });

  it('after resume_failed acks the fresh stream, covering a push it carried before the outcome', async () => {
    const { client, clock, ws } = await live();
    ws.last().drop(1006);
    await clock.advance(1_000);
    const next = acksOf(ws.last(), clock);
    welcome(ws.last(), 'fresh', 1);
    ws.last().push(alert('a-1', 2)); // waiting for this user, sent on connect
    ws.last().push({ type: 'resume_failed', stream_id: 'fresh', reason: 'unknown_stream', seq: 3 });
    await clock.advance(0);
    assert.deepEqual(next.map((a) => a.seq), [3]);
    client.close();
  });

  it('never acks past a seq it did not receive', async () => {
    const { client, clock, ws, acks } = await live();
    ws.last().push(delta(2));
    await clock.advance(0);
    ws.last().push(delta(4));
    ws.last().push(timer('t-1', 5));
    await clock.advance(10_000);
    assert.deepEqual(acks.map((a) => a.seq), [2]);
    client.close();
  });

  it('legacy sockets never send an ack', async () => {
    const { client, clock, ws, named } = harness({ dialect: 'legacy', userId: 'u1' });
    client.connect();
    await settle();
    ws.last().open();
    ws.last().push({ type: 'connection', status: 'connected', greeting: 'hi', timestamp: '2026-11-30T10:00:00Z', connection_id: 'c1', profile_integration: 'enabled' });
    const { seq: _s, ...push } = timer('t-1', 0);
    ws.last().push(push);
    ws.last().push({ type: 'ping', timestamp: 7 });
    await clock.advance(10_000);
    assert.equal(named('timer_expired').length, 1);
    assert.deepEqual(ws.last().ofType('pong'), [{ type: 'pong', timestamp: 7 }]);
    assert.deepEqual(ws.last().ofType('ack'), []);
    client.close();
  });
});

describe('pushes are given to the app once per id', () => {
  it('v2: a push re-sent after a reconnect, replayed or re-delivered, is not emitted again', async () => {
    const { client, clock, ws, named } = await live();
    ws.last().push(timer('t-1', 2));
    ws.last().push(alert('a-1', 3));
    ws.last().drop(1006);
    await clock.advance(1_000);
    // The stream is gone: the fresh one re-delivers both (no proof of receipt came) and a new alert.
    welcome(ws.last(), 'fresh', 1);
    ws.last().push(timer('t-1', 2));
    ws.last().push(alert('a-1', 3));
    ws.last().push({ type: 'resume_failed', stream_id: 'fresh', reason: 'unknown_stream', seq: 4 });
    ws.last().push(alert('a-2', 5));
    ws.last().drop(1012);
    await clock.advance(1_000);
    // The resume replays a re-send of a-2 (the server had no proof of it) and goes on live.
    welcome(ws.last(), 'fresh2', 1);
    ws.last().push(alert('a-2', 6));
    ws.last().push({ type: 'resumed', stream_id: 'fresh', replayed: 1, seq: 7 });
    ws.last().push(timer('t-1', 8));
    ws.last().push(timer('t-2', 9));
    assert.deepEqual(named('timer_expired').map((t) => t.id), ['t-1', 't-2']);
    assert.deepEqual(named('proactive_alert').map((a) => a.id), ['a-1', 'a-2']);
    client.close();
  });

  it('legacy: the undismissed timer re-sent on every connect is emitted once', async () => {
    const { client, clock, ws, named } = harness({ dialect: 'legacy', userId: 'u1' });
    client.connect();
    const hello = { type: 'connection', status: 'connected', greeting: 'hi', timestamp: '2026-11-30T10:00:00Z', connection_id: 'c1', profile_integration: 'enabled' };
    const { seq: _s, ...again } = timer('t-1', 0);
    for (let n = 0; n < 3; n++) {
      await settle();
      ws.last().open();
      ws.last().push(hello);
      ws.last().push(again);
      ws.last().drop(1006);
      await clock.advance(1_000);
    }
    const { seq: _a, ...other } = alert('a-1', 0);
    ws.last().open();
    ws.last().push(hello);
    ws.last().push(other);
    ws.last().push(other);
    assert.equal(ws.sockets.length, 4);
    assert.deepEqual(named('timer_expired').map((t) => t.id), ['t-1']);
    assert.deepEqual(named('proactive_alert').map((a) => a.id), ['a-1']);
    client.close();
  });

  it('remembers the last 512 ids: the least recently seen is forgotten first', async () => {
    const { client, ws, named } = await live();
    let seq = 1;
    for (let n = 0; n < 512; n++) ws.last().push(alert(`a${n}`, ++seq));
    assert.equal(named('proactive_alert').length, 512);
    ws.last().push(alert('a0', ++seq)); // remembered (and now the most recently seen)
    assert.equal(named('proactive_alert').length, 512);
    ws.last().push(alert('a512', ++seq)); // the 513th id: a1 is forgotten
    ws.last().push(alert('a0', ++seq));
    ws.last().push(alert('a2', ++seq));
    assert.deepEqual(named('proactive_alert').slice(512).map((a) => a.id), ['a512']);
    ws.last().push(alert('a1', ++seq));
    assert.deepEqual(named('proactive_alert').slice(512).map((a) => a.id), ['a512', 'a1'], 'a forgotten id is emitted again');
    client.close();
  });
});
