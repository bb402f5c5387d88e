import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { PamClient } from '../../src/index.js';
import { CuttableSocket, type Gateway, newUser, startGateway, until } from './gateway.js';

let gateway: Gateway | undefined;
let client: PamClient | undefined;
after(async () => {
  client?.close();
  await gateway?.stop();
});

describe('a gateway restart', () => {
  it('a chat in flight when the node goes away is resent with its id after resume_failed and answered once, from storage', async () => {
    const settings = { env: { PAM_SHUTDOWN_GRACE_MS: '500' } };
    gateway = await startGateway(settings);
    const { port, dir } = gateway;
    const user = newUser();
    client = new PamClient({
      url: gateway.base,
      getToken: () => gateway!.token(user),
      WebSocket: CuttableSocket,
      backoff: { minMs: 50, baseMs: 100, maxMs: 300 },
      environment: null,
    });
    const outcomes: string[] = [];
    client.on('resumed', () => outcomes.push('resumed'));
    client.on('resume_failed', (e) => outcomes.push(`resume_failed:${e.reason}:${e.resent}`));
    client.connect();
    await until(() => client!.state === 'live', 10_000, 'live');
    const before = CuttableSocket.all.length;
    const chat = client.chat('hello, what can you do?', { id: 'sdk-restart-1' });
    let ends = 0;
    chat.onEnd(() => ends++);
    // The network goes the moment the ack arrives: the builtin assistant answers at once, and an
    // answer that got through first would leave no chat in flight (nothing to resend).
    chat.onAck(() => CuttableSocket.all[before - 1]!.cut());
    await until(() => chat.status === 'acked', 10_000, 'the ack');
    await gateway.stop(true);
    gateway = await startGateway({ ...settings, port, dir });
    const result = await chat.result;
    await until(() => outcomes.length > 0, 10_000, 'the resume outcome');
    assert.ok(result.text.length > 0);
    assert.equal(ends, 1, 'answered once');
    const later = CuttableSocket.all.slice(before);
    const resumes = later.flatMap((s) => s.sent).filter((f) => f.type === 'resume');
    assert.ok(resumes.length >= 1, 'the new node was asked to resume');
    // The restarted node has a new epoch (its stream store was in memory): the stream is gone.
    assert.match(outcomes[0]!, /^resume_failed:(epoch_changed|unknown_stream):1$/);
    const resent = later.flatMap((s) => s.sent).filter((f) => f.type === 'chat');
    assert.deepEqual(resent.map((f) => f.id), ['sdk-restart-1'], 'resent with the same id');
    assert.equal(result.cached, true, 'answered from storage, not run again');
  });
});
