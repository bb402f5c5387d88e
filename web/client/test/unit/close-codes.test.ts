import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CLOSE_CODES, classifyClose, describeClose } from '../../src/index.js';
import { harness, settle, welcome } from '../fakes.js';

describe('close codes', () => {
  it('sorts every code the server documents into the class its table advises', () => {
    for (const row of CLOSE_CODES) {
      const kind = classifyClose(row.code);
      if (row.reconnect === 'do_not_reconnect' || row.reconnect === 'closed_normally') assert.equal(kind, 'stop', `${row.code}`);
      else assert.notEqual(kind, 'stop', `${row.code} may reconnect`);
    }
    assert.equal(classifyClose(1006), 'reconnect');
    assert.equal(classifyClose(4401), 'refresh');
    assert.equal(classifyClose(1008), 'no_loop');
    assert.equal(classifyClose(1009), 'no_loop');
    assert.equal(classifyClose(4999), 'stop');
  });

  it('gives plain-words reasons from the generated table', () => {
    assert.equal(describeClose(1012), 'server restarting, please reconnect');
    assert.equal(describeClose(1006), 'the connection was lost');
    assert.equal(describeClose(4503, 'token is for another user'), 'token is for another user');
  });

  for (const code of [4501, 4503, 4504, 4508]) {
    it(`stops on ${code}, reports code and reason, and opens no other socket`, async () => {
      const { client, clock, ws, named } = harness();
      client.connect();
      await settle();
      const chat = client.chat('hello');
      welcome(ws.last());
      ws.last().drop(code, 'server says no');
      await clock.advance(60_000);
      assert.equal(ws.sockets.length, 1);
      assert.equal(client.state, 'stopped');
      assert.deepEqual(named('stopped'), [{ code, reason: 'server says no' }]);
      await assert.rejects(chat.result, (e: { code: string }) => e.code === CLOSE_CODES.find((r) => r.code === code)!.errorCode);
    });
  }

  for (const code of [1001, 1006, 1011, 1012, 1013, 4408, 4429]) {
    it(`reconnects after ${code}`, async () => {
      const { client, clock, ws, named } = harness();
      client.connect();
      await settle();
      welcome(ws.last());
      ws.last().drop(code);
      assert.equal(client.state, 'reconnecting');
      const event = named('reconnecting')[0]!;
      assert.equal(event.code, code);
      assert.ok((event.delayMs as number) >= 500 && (event.delayMs as number) <= 1_000);
      await clock.advance(event.delayMs as number);
      assert.equal(ws.sockets.length, 2);
      client.close();
    });
  }

  it('does not loop on 1009: the oversized chat fails, one reconnect, a second 1009 stops', async () => {
    const { client, clock, ws, named } = harness();
    client.connect();
    await settle();
    welcome(ws.last());
    const big = client.chat('x'.repeat(70_000));
    ws.last().drop(1009, 'frame too big');
    await assert.rejects(big.result, (e: { code: string }) => e.code === 'MESSAGE_TOO_LARGE');
    await clock.advance(1_000);
    assert.equal(ws.sockets.length, 2);
    welcome(ws.last(), 's2');
    assert.equal(ws.last().ofType('chat').length, 0, 'the offending chat is not replayed');
    ws.last().drop(1009);
    await clock.advance(60_000);
    assert.equal(ws.sockets.length, 2);
    assert.equal(named('stopped')[0]!.code, 1009);
  });

  it('on 4401 asks for a fresh token (reason "expired") and reconnects with it', async () => {
    const { client, clock, ws, tokens } = harness();
    client.connect();
    await settle();
    welcome(ws.last());
    ws.last().drop(4401, 'token expired');
    assert.equal(client.state, 'reconnecting');
    await clock.advance(1_000);
    ws.last().open();
    assert.deepEqual(tokens, ['connect', 'expired']);
    assert.deepEqual(ws.last().ofType('auth'), [{ type: 'auth', token: 't2' }]);
    client.close();
  });

  it('close() stops for good with 1000 and fails what is unanswered', async () => {
    const { client, clock, ws, named } = harness();
    client.connect();
    await settle();
    welcome(ws.last());
    const chat = client.chat('hi');
    client.close();
    assert.equal(ws.last().closedWith?.code, 1000);
    await assert.rejects(chat.result, (e: { code: string }) => e.code === 'CLOSED');
    await clock.advance(60_000);
    assert.equal(ws.sockets.length, 1);
    assert.deepEqual(named('stopped'), [{ code: 1000, reason: 'closed by the app' }]);
  });
});
