//! The legacy dialect (today's app): `connection` → chats one at a time, each answered by one
//! `chat_response`; client pings every 15 s and 3 missed pongs drop the socket. No ids, no
//! resume, no streaming: a chat in flight when a socket drops is sent again (and may be answered
//! twice — use v2 for exactly-once answers).

import type { PamClient } from './client.js';
import { PamError } from './errors.js';
import type { PendingChat } from './internal.js';
import { sendChatOverRest } from './rest.js';
import type { ChatResponse, ConnectionFrame, ProactiveAlert, TimerExpired } from './types.js';

/** @internal Handles one parsed legacy server frame from socket generation `gen`. */
export function onLegacyFrame(client: PamClient, gen: number, frame: Record<string, unknown>): void {
  client.missedPongs = 0;
  switch (frame.type) {
    case 'connection': {
      const hello = frame as unknown as ConnectionFrame;
      client.markLive(gen, { connectionId: hello.connection_id, dialect: 'legacy' });
      return client.flush();
    }
    case 'chat_response':
      return onAnswer(client, frame as unknown as ChatResponse);
    case 'error': {
      const code = String(frame.error_code ?? 'INTERNAL');
      const message = String(frame.message ?? '');
      const chat = inFlight(client);
      // Today's client resolves its pending chat with an error frame too.
      if (chat && code !== 'INVALID_JSON' && code !== 'UNKNOWN_TYPE') {
        client.settle(chat.handle.id);
        chat.handle.fail(new PamError(code, message, code === 'RATE_LIMIT_EXCEEDED'));
      } else {
        client.fire('server_error', { code, message, retryable: false });
      }
      return;
    }
    case 'ping':
      return client.send({ type: 'pong', timestamp: frame.timestamp });
    case 'timer_expired': {
      const { type: _t, ...push } = frame;
      return client.firePush('timer_expired', push as unknown as TimerExpired);
    }
    case 'proactive_alert': {
      const { type: _t, ...push } = frame;
      return client.firePush('proactive_alert', push as unknown as ProactiveAlert);
    }
  }
}

function inFlight(client: PamClient) {
  for (const chat of client.pending.values()) if (chat.sentOn === client.gen) return chat;
  return undefined;
}

function onAnswer(client: PamClient, answer: ChatResponse): void {
  const chat = inFlight(client);
  if (!chat) return;
  client.policyStrikes = 0;
  client.settle(chat.handle.id);
  if (chat.dropAnswer) return;
  if (answer.error) {
    chat.handle.fail(new PamError(answer.error_code ?? 'INTERNAL', answer.message, true));
    return;
  }
  const result = {
    id: chat.handle.id,
    text: answer.message || answer.content,
    uiActions: answer.ui_actions ?? [],
    via: 'legacy' as const,
    cached: false,
    model: answer.model,
    source: answer.source,
    latencyMs: answer.latency_ms,
    sessionId: answer.session_id,
  };
  chat.handle.end(result);
}

/** @internal Pings every `everyMs`; the third unanswered ping drops the socket (as today's app). */
export function startLegacyHeartbeat(client: PamClient, gen: number, everyMs: number): void {
  client.missedPongs = 0;
  const tick = () => {
    if (gen !== client.gen) return;
    if (client.missedPongs >= 3) return client.drop(gen, 1006, 'three pings went unanswered');
    client.missedPongs++;
    client.send({ type: 'ping', timestamp: client.clock.now() });
    client.heartbeat = client.clock.setTimeout(tick, everyMs);
  };
  client.heartbeat = client.clock.setTimeout(tick, everyMs);
}

/**
 * @internal As today's app: a legacy chat unanswered after `legacyAnswerTimeoutMs` (default 30 s)
 * is also sent over REST (its id as `Idempotency-Key`); whichever answer comes first wins, and
 * the socket's slot stays taken until its own answer, so later answers still match in order.
 */
export function armAnswerTimeout(client: PamClient, chat: PendingChat, gen: number): void {
  const after = client.options.legacyAnswerTimeoutMs ?? 30_000;
  if (after <= 0 || !client.options.fetch && typeof globalThis.fetch !== 'function') return;
  client.clock.setTimeout(() => {
    if (gen !== client.gen || chat.sentOn !== gen || chat.handle.finished) return;
    const viaRest = { handle: chat.handle, message: chat.message, sessionId: chat.sessionId, context: chat.context, sentOn: 0 };
    void sendChatOverRest(client.restContext(), viaRest, () => undefined);
  }, after);
}
