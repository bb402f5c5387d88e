import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PamClient, type PamClientOptions, type ProactiveAlert, type TimerExpired } from '../../src/index.js';
import { ADMIN_TOKEN, CuttableSocket, type Gateway, newUser, startGateway, until } from './gateway.js';

let gateway: Gateway;
const clients: PamClient[] = [];

before(async () => {
  gateway = await startGateway();
});
after(async () => {
  for (const client of clients) client.close();
  await gateway?.stop();
});

function client(userId: string, extra: Partial<PamClientOptions> = {}): PamClient {
  const c = new PamClient({
    url: gateway.base,
    userId,
    getToken: () => gateway.token(userId),
    WebSocket: CuttableSocket,
    backoff: { minMs: 20, baseMs: 50, maxMs: 200 },
    environment: null,
    ...extra,
  });
  clients.push(c);
  return c.connect();
}

describe('against the real gateway (v2)', () => {
  it('a chat is acked, streams deltas and ends with the whole answer', async () => {
    const c = client(newUser());
    const chat = c.chat('hello, what can you do?', { sessionId: 'sdk-1' });
    let acked = false;
    chat.onAck(() => (acked = true));
    const deltas: string[] = [];
    for await (const delta of chat) deltas.push(delta);
    const result = await chat.result;
    assert.ok(acked, 'ack came before the answer');
    assert.ok(deltas.length > 1, `streamed in pieces (${deltas.length})`);
    assert.ok(result.text.length > 0);
    assert.equal(result.via, 'v2');
    assert.equal(result.cached, false);
    assert.equal(c.state, 'live');
  });

  it('a stream resumes after the network drops mid-answer: no delta lost or doubled', async () => {
    // Reconnect 300 ms after the cut, so the server has streamed on into the dead socket.
    const c = client(newUser(), { backoff: { minMs: 300, baseMs: 300, maxMs: 300 } });
    const resumed: Array<{ streamId: string; replayed: number }> = [];
    c.on('resumed', (r) => resumed.push(r));
    await new Promise<void>((r) => c.once('live', () => r()));
    const streamId = c.streamId;
    const chat = c.chat('hello, what can you do?');
    let cut = false;
    chat.onDelta(() => {
      if (!cut) {
        cut = true;
        CuttableSocket.all.at(-1)!.cut();
      }
    });
    const deltas: string[] = [];
    chat.onDelta((d) => deltas.push(d));
    const result = await chat.result;
    assert.ok(cut, 'the socket was cut during the answer');
    assert.equal(resumed.length, 1, 'resumed once');
    assert.ok(resumed[0]!.replayed > 0, 'the frames lost with the socket were replayed');
    assert.equal(resumed[0]!.streamId, streamId, 'the same stream continued');
    assert.equal(c.streamId, streamId);
    assert.equal(deltas.join(''), result.text, 'the deltas before and after the drop add up to the answer');
  });

  it('a repeated id is answered from storage, not run again', async () => {
    const user = newUser();
    const first = client(user);
    const original = await first.chat('what can you do?', { id: 'sdk-repeat-1' }).result;
    first.close();
    const second = client(user);
    const again = second.chat('what can you do?', { id: 'sdk-repeat-1' });
    let deltas = 0;
    again.onDelta(() => deltas++);
    const replay = await again.result;
    assert.equal(replay.cached, true);
    assert.equal(replay.text, original.text);
    assert.equal(deltas, 0, 'no model ran for the repeat');
    const ends = CuttableSocket.all.flatMap((s) => s.received).filter((f) => f.type === 'chat_end' && f.id === 'sdk-repeat-1');
    assert.equal(ends.length, 2, 'one answer per ask, the second from storage');
  });

  it('a server push arrives as a typed event, and dismiss is accepted', async () => {
    const user = newUser();
    const c = client(user);
    const alerts: ProactiveAlert[] = [];
    const timers: TimerExpired[] = [];
    const errors: unknown[] = [];
    c.on('proactive_alert', (a) => alerts.push(a));
    c.on('timer_expired', (t) => timers.push(t));
    c.on('server_error', (e) => errors.push(e));
    await new Promise<void>((r) => c.once('live', () => r()));
    const content = { type: 'proactive_alert', category: 'financial_guidance', alert_type: 'budget_alert', message: 'Fuel is at 80 % of its budget', priority: 'normal', actions: ['analyze_expenses'] };
    const push = async (body: Record<string, unknown>) => {
      const response = await fetch(`${gateway.base}/api/v1/pam/push`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ user_id: user, ...body }),
      });
      assert.equal(response.status, 202);
      return (await response.json()) as { id: string; online: boolean };
    };
    const sent = await push({ type: 'proactive_alert', content });
    assert.equal(sent.online, true);
    await until(() => alerts.length === 1, 10_000, 'the alert');
    assert.equal(alerts[0]!.id, sent.id);
    assert.deepEqual(alerts[0]!.content, content);
    const timer = await push({ type: 'timer_expired', label: 'tyres', timer_type: 'timer', message: 'check the tyre pressure' });
    await until(() => timers.length === 1, 10_000, 'the timer');
    assert.equal(timers[0]!.label, 'tyres');
    assert.equal(timers[0]!.timer_type, 'timer');
    c.dismiss(timer.id);
    // Proof of receipt: within 2 s the client acks a position at or past each push's seq.
    const socket = CuttableSocket.all.find((s) => s.received.some((f) => f.type === 'timer_expired' && f.id === timer.id))!;
    const pushSeqs = socket.received.filter((f) => f.id === sent.id || f.id === timer.id).map((f) => f.seq as number);
    const acked = () => Math.max(-1, ...socket.sent.filter((f) => f.type === 'ack').map((f) => f.seq as number));
    await until(() => acked() >= Math.max(...pushSeqs), 3_000, `an ack at or past seq ${Math.max(...pushSeqs)}`);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(errors, [], 'the gateway takes ack and dismiss without an error');
    assert.equal(c.state, 'live');
    assert.equal(socket.readyState, 1);
  });
});

describe('against the real gateway (the single-file bundle)', () => {
  it('dist/pam-client.min.js chats like the modules do', async () => {
    const bundle = (await import(new URL('../../../dist/pam-client.min.js', import.meta.url).href)) as { PamClient: typeof PamClient };
    const user = newUser();
    const c = new bundle.PamClient({ url: gateway.base, getToken: () => gateway.token(user), environment: null });
    clients.push(c);
    const result = await c.connect().chat('hello from the bundle').result;
    assert.equal(result.via, 'v2');
    assert.ok(result.text.length > 0);
  });
});

describe('against the real gateway (legacy and REST)', () => {
  it('legacy mode: one chat_response is the answer', async () => {
    const user = newUser();
    const c = client(user, { dialect: 'legacy' });
    const result = await c.chat('hello', { sessionId: 'legacy-1' }).result;
    assert.equal(result.via, 'legacy');
    assert.ok(result.text.length > 0);
  });

  it('when sockets are blocked, chats go over REST with an Idempotency-Key', async () => {
    const user = newUser();
    const Blocked = function () {
      throw new Error('blocked by a proxy');
    } as unknown as PamClientOptions['WebSocket'];
    const c = client(user, { WebSocket: Blocked, restFallbackAfter: 2 });
    const fallbacks: unknown[] = [];
    c.on('rest_fallback', (e) => fallbacks.push(e));
    const result = await c.chat('hello over http', { id: 'sdk-rest-1' }).result;
    assert.equal(result.via, 'rest');
    assert.ok(result.text.length > 0);
    assert.equal(fallbacks.length, 1);
    const again = await c.chat('hello over http', { id: 'sdk-rest-1' }).result;
    assert.equal(again.text, result.text, 'the retry with the same key gets the stored answer');
  });
});

describe('against the real gateway (history)', () => {
  it('history() reads a conversation back newest first, page by page; conversations() lists it; another user gets 404', async () => {
    const user = newUser();
    const c = client(user);
    await c.chat('first question', { sessionId: 'sdk-history', id: 'sdk-history-1' }).result;
    await c.chat('second question', { sessionId: 'sdk-history', id: 'sdk-history-2' }).result;
    // Both turns are stored (the answer row may land a moment after chat_end).
    let page = await c.history('sdk-history', { limit: 3 });
    for (let tries = 0; page.messages.length < 3 && tries < 100; tries++) {
      await new Promise((r) => setTimeout(r, 50));
      page = await c.history('sdk-history', { limit: 3 });
    }
    assert.deepEqual(page.messages.map((m) => m.role), ['assistant', 'user', 'assistant']);
    assert.equal(page.messages[1]!.content, 'second question');
    assert.equal(page.messages[1]!.clientMsgId, 'sdk-history-2', 'the chat id comes back with its message');
    assert.ok(page.nextBefore, 'an older page exists');
    const older = await c.history('sdk-history', { limit: 3, before: page.nextBefore! });
    assert.deepEqual(older.messages.map((m) => m.content), ['first question']);
    assert.equal(older.nextBefore, null);
    const list = await c.conversations();
    assert.deepEqual(list.map((x) => [x.sessionId, x.messageCount]), [['sdk-history', 4]]);
    const stranger = client(newUser());
    await assert.rejects(stranger.history('sdk-history'), (error: unknown) => (error as { status?: number }).status === 404);
  });
});
