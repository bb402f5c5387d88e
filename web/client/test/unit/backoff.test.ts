import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoff, ceilingMs, delayMs } from '../../src/index.js';
import { harness, settle } from '../fakes.js';

describe('full-jitter backoff', () => {
  const b = backoff();

  it('waits between 0.5 s and min(20 s, 1 s·2^attempt)', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const ceiling = Math.min(20_000, 1_000 * 2 ** attempt);
      assert.equal(ceilingMs(b, attempt), ceiling);
      assert.equal(delayMs(b, attempt, () => 0), 500, 'the floor is 0.5 s');
      assert.equal(delayMs(b, attempt, () => 0.999999), ceiling, 'the top is the ceiling');
    }
  });

  it('never waits longer than 20 s, however many attempts failed', () => {
    assert.equal(delayMs(b, 1_000, () => 0.9999999), 20_000);
    assert.equal(ceilingMs(b, Number.MAX_SAFE_INTEGER), 20_000);
  });

  it('spreads clients over the whole window (jitter), not on one schedule', () => {
    const draws = [0, 0.25, 0.5, 0.75].map((r) => delayMs(b, 4, () => r));
    assert.deepEqual(draws, [500, 4_375, 8_250, 12_125]);
  });

  it('clamps a random source that strays outside [0, 1)', () => {
    assert.equal(delayMs(b, 3, () => -1), 500);
    assert.equal(delayMs(b, 3, () => 7), 8_000);
  });

  it('reconnects after the drawn delay and grows the ceiling while attempts fail before welcome', async () => {
    const draws = [0.999999];
    const { client, clock, ws, named } = harness({ random: () => draws[0]! });
    client.connect();
    await settle();
    const delays: number[] = [];
    for (let i = 0; i < 7; i++) {
      ws.last().drop(1006);
      const event = named('reconnecting').at(-1)!;
      delays.push(event.delayMs as number);
      await clock.advance(event.delayMs as number);
    }
    assert.deepEqual(delays, [1_000, 2_000, 4_000, 8_000, 16_000, 20_000, 20_000]);
    assert.equal(ws.sockets.length, 8, 'one new socket per reconnect, none early');
    client.close();
  });

  it('counts an attempt as successful only after welcome, then starts over at 1 s', async () => {
    const { client, clock, ws, named } = harness({ random: () => 0.999999 });
    client.connect();
    await settle();
    ws.last().open();
    ws.last().drop(1006); // opened, but never welcomed: still a failure
    await clock.advance(1_000);
    ws.last().open();
    ws.last().drop(1012);
    assert.equal(named('reconnecting').at(-1)!.delayMs, 2_000);
    await clock.advance(2_000);
    ws.last().open();
    ws.last().push({ type: 'welcome', protocol: 'pam.v2', connection_id: 'c', stream_id: 's', epoch: 'e', heartbeat_ms: 25_000, resume_window_ms: 1, seq: 1 });
    ws.last().drop(1012);
    assert.equal(named('reconnecting').at(-1)!.delayMs, 1_000);
    client.close();
  });
});
