//! The v2 dialect: `welcome` → `resume` (when there is a stream to continue) → chats; `seq`
//! bookkeeping, per-chat `ack`/`chat_delta`/`chat_end`/`error`, in-band token refresh, pushes
//! (each id given to the app once) and the client's `ack {seq}` proof of receipt (acks.ts).

import type { PamClient } from './client.js';
import { PamError } from './errors.js';
import { progressed, retryAfterError } from './recovery.js';
import type { ChatEnd, ProactiveAlert, ResumeFailure, TimerExpired, V2ServerFrame, Welcome } from './types.js';

/** @internal Handles one parsed v2 server frame from socket generation `gen`. */
export function onV2Frame(client: PamClient, gen: number, raw: Record<string, unknown>): void {
  const frame = raw as V2ServerFrame;
  if (frame.type !== 'welcome' && frame.type !== 'resume_failed' && typeof frame.seq === 'number' && client.stream) {
    // Replayed and live frames of the stream being continued; max() so a fresh stream's
    // low-numbered frames before the resume outcome cannot move the position back.
    client.stream.lastSeq = Math.max(client.stream.lastSeq, frame.seq);
  }
  if (frame.type !== 'welcome' && frame.type !== 'resumed' && frame.type !== 'resume_failed' && typeof frame.seq === 'number') {
    client.acks.frame(gen, frame.type, frame.seq);
  }
  armWatchdog(client, gen);
  switch (frame.type) {
    case 'welcome':
      return onWelcome(client, gen, frame);
    case 'resumed':
      client.clock.clearTimeout(client.connectTimer);
      client.stream = { id: frame.stream_id, epoch: client.stream?.epoch ?? '', lastSeq: frame.seq };
      client.resuming = false;
      client.acks.settled(gen, frame.seq); // The replay filled the stream up to here.
      client.fire('resumed', { streamId: frame.stream_id, replayed: frame.replayed });
      return client.flush();
    case 'resume_failed':
      return onResumeFailed(client, gen, frame.stream_id, frame.reason, frame.seq);
    case 'ack': {
      const chat = client.pending.get(frame.id);
      // One waiting out a retry is not on the stream again until it is re-sent.
      if (chat && chat.retryTimer === undefined) {
        chat.acked = true;
        chat.handle.ack();
        progressed(client, chat);
      }
      return;
    }
    case 'chat_delta': {
      const chat = client.pending.get(frame.id);
      if (chat) {
        chat.handle.delta(frame.delta);
        progressed(client, chat);
      }
      return;
    }
    case 'chat_end':
      return onChatEnd(client, frame);
    case 'error':
      return onError(client, gen, frame);
    case 'auth_expiring':
      void refreshToken(client, gen);
      return;
    case 'ping':
      return client.send({ type: 'pong', timestamp: frame.timestamp });
    case 'pong':
      return;
    case 'timer_expired': {
      const { type: _t, seq: _s, ...push } = frame;
      return client.firePush('timer_expired', push as TimerExpired);
    }
    case 'proactive_alert': {
      const { type: _t, seq: _s, ...push } = frame;
      return client.firePush('proactive_alert', push as ProactiveAlert);
    }
  }
}

function onWelcome(client: PamClient, gen: number, welcome: Welcome & { seq: number }): void {
  const previous = client.stream;
  if (previous) {
    // Continue the earlier stream on whichever node this is; chats wait for the outcome
    // (the server refuses a resume once this socket runs a chat).
    client.resuming = true;
    client.acks.resuming(gen);
    client.send({ type: 'resume', stream_id: previous.id, epoch: previous.epoch, last_seq: previous.lastSeq });
  } else {
    client.stream = { id: welcome.stream_id, epoch: welcome.epoch, lastSeq: welcome.seq };
    client.acks.settled(gen, welcome.seq);
  }
  client.heartbeatMs = welcome.heartbeat_ms;
  armWatchdog(client, gen);
  client.markLive(gen, { connectionId: welcome.connection_id, streamId: welcome.stream_id, epoch: welcome.epoch, dialect: 'v2' });
  client.pendingEpoch = welcome.epoch;
  if (!previous) return client.flush();
  // A server that never answers the resume must not hold the queue forever: start afresh.
  client.connectTimer = client.clock.setTimeout(() => {
    if (gen !== client.gen || !client.resuming) return;
    abandonStream(client);
    client.drop(gen, 1006, 'the server did not answer the resume in time');
  }, client.options.connectTimeoutMs ?? 10_000);
}

function onResumeFailed(client: PamClient, gen: number, streamId: string, reason: ResumeFailure, seq: number): void {
  client.clock.clearTimeout(client.connectTimer);
  const resent = abandonStream(client);
  client.stream = { id: streamId, epoch: client.pendingEpoch ?? '', lastSeq: seq };
  client.resuming = false;
  client.acks.settled(gen, seq); // This socket carried the fresh stream from its welcome on.
  client.fire('resume_failed', { streamId, reason, resent });
  client.flush();
}

/**
 * Forgets the stream: everything unanswered goes back to the queue, to be sent again with the
 * same id (the server answers a stored one from storage and runs the rest: each answered once).
 * A chat waiting out a retry backoff keeps waiting, then goes out on the fresh stream.
 * Returns how many chats that is.
 */
function abandonStream(client: PamClient): number {
  client.stream = undefined;
  let resent = 0;
  for (const chat of client.pending.values()) {
    if (chat.sentOn === -1 || chat.handle.finished) continue;
    chat.acked = false;
    chat.sentOn = 0;
    chat.handle.restart();
    resent++;
  }
  return resent;
}

function onChatEnd(client: PamClient, end: ChatEnd): void {
  const chat = client.pending.get(end.id);
  if (!chat) return; // Already answered (a replay after a re-send): answered exactly once.
  client.policyStrikes = 0;
  progressed(client, chat); // The chats sent after it are next in the server's line.
  client.settle(end.id);
  chat.handle.end({
    id: end.id,
    text: end.message,
    uiActions: end.ui_actions,
    via: 'v2',
    cached: end.cached,
    model: end.model,
    source: end.source,
    latencyMs: end.latency_ms,
    firstTokenMs: end.first_token_ms,
  });
}

/**
 * An `error`: about a chat, a retryable one sends the chat again (same id) after a backoff — a
 * draining node's `SERVICE_RESTART`, a crashed node's orphaned turn, "still being answered on
 * another node", storage down — until its re-sends are used up; any other fails the chat.
 */
function onError(client: PamClient, gen: number, frame: Extract<V2ServerFrame, { type: 'error' }>): void {
  const chat = frame.id ? client.pending.get(frame.id) : undefined;
  if (!chat) {
    // About a chat answered already (e.g. its first run's error after a re-send was answered): not news.
    if (frame.id && client.finishedIds.has(frame.id)) return;
    client.fire('server_error', { code: frame.error_code, message: frame.message, retryable: frame.retryable });
    return;
  }
  progressed(client, chat); // Its turn is over: the chats sent after it are next in the server's line.
  if (frame.retryable && retryAfterError(client, chat, frame.error_code, gen, client.resuming)) return;
  client.settle(chat.handle.id);
  chat.handle.fail(new PamError(frame.error_code, frame.message, frame.retryable));
}

/** A silent socket (no frame for two heartbeats and a margin) is dropped and reconnected. */
function armWatchdog(client: PamClient, gen: number): void {
  const every = client.heartbeatMs;
  if (!every || gen !== client.gen) return;
  client.clock.clearTimeout(client.heartbeat);
  client.heartbeat = client.clock.setTimeout(() => client.drop(gen, 1006, 'no frame from the server in time'), every * 2 + 5_000);
}

/** Asks `getToken('expiring')` and sends `auth_refresh` (the server takes one per 5 s at most). */
async function refreshToken(client: PamClient, gen: number): Promise<void> {
  const wait = client.lastRefreshAt + 5_000 - client.clock.now();
  if (wait > 0) {
    client.clock.setTimeout(() => void refreshToken(client, gen), wait);
    return;
  }
  client.lastRefreshAt = client.clock.now();
  try {
    const token = await client.options.getToken('expiring');
    if (gen === client.gen && client.ws) client.send({ type: 'auth_refresh', token });
  } catch {
    // No fresh token: the server closes with 4401 at `exp` and the reconnect asks again.
  }
}
