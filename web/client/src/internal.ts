//! Bookkeeping shapes shared by the client and the dialect handlers (not part of the public API).

import type { ChatHandle } from './chat.js';
import type { Clock, TimerHandle } from './clock.js';
import type { PamError } from './errors.js';
import type { WebSocketLike } from './types.js';

/** @internal A chat the client still owes an answer for. `sentOn`: socket generation, 0 = unsent, -1 = REST. */
export interface PendingChat {
  handle: ChatHandle;
  message: string;
  sessionId: string | undefined;
  context: Record<string, unknown> | undefined;
  /** Its size in the queue's byte bound: the message as UTF-8 plus the context as JSON. */
  bytes: number;
  sentOn: number;
  acked: boolean;
  /** Legacy: cancelled locally; its answer is still awaited (to keep answers in order) and dropped. */
  dropAnswer: boolean;
  /** v2: when it last went out, in the client's send order (a chat waits behind those sent before it). */
  order: number;
  /** v2: its answer deadline, while it is in flight on a live socket (recovery.ts). */
  deadline: TimerHandle | undefined;
  /** v2: the answer deadline passed once and the chat was sent again; the next one fails it. */
  deadlineResent: boolean;
  /** v2: re-sends after retryable `error`s so far. */
  retries: number;
  /** v2: waiting out the backoff before a re-send after a retryable `error`: not sent meanwhile. */
  retryTimer: TimerHandle | undefined;
  /** v2: the socket generation that refused it because its node is draining: not re-sent there. */
  notOn: number;
}

/** @internal A new chat's bookkeeping (nothing sent yet). */
export function newPendingChat(handle: ChatHandle, message: string, sessionId: string | undefined, context: Record<string, unknown> | undefined, bytes: number): PendingChat {
  return { handle, message, sessionId, context, bytes, sentOn: 0, acked: false, dropAnswer: false, order: 0, deadline: undefined, deadlineResent: false, retries: 0, retryTimer: undefined, notOn: 0 };
}

/** @internal Cancels a chat's deadline and retry timers (it finished, or the client stopped). */
export function clearChatTimers(clock: Clock, chat: PendingChat): void {
  clock.clearTimeout(chat.deadline);
  clock.clearTimeout(chat.retryTimer);
  chat.deadline = undefined;
  chat.retryTimer = undefined;
}

/** @internal The v2 stream this client resumes after a reconnect. */
export interface StreamPosition {
  id: string;
  epoch: string;
  lastSeq: number;
}

/** @internal Stops a socket's events from reaching the client (it is being replaced). */
export function detach(ws: WebSocketLike): void {
  ws.onopen = ws.onmessage = ws.onerror = null;
  ws.onclose = null;
}

/** @internal A v4-shaped uuid from `random`, where `crypto.randomUUID` is missing. */
export function fallbackId(random: () => number): string {
  const hex = (n: number) => Math.floor(random() * 16 ** n).toString(16).padStart(n, '0');
  return `${hex(8)}-${hex(4)}-4${hex(3)}-${(8 + Math.floor(random() * 4)).toString(16)}${hex(3)}-${hex(12)}`;
}

/** @internal Fails (and forgets) the chats that match, cancelling their timers. */
export function failWhere(pending: Map<string, PendingChat>, clock: Clock, error: PamError, matches: (chat: PendingChat) => boolean): void {
  for (const chat of [...pending.values()]) {
    if (!matches(chat)) continue;
    pending.delete(chat.handle.id);
    clearChatTimers(clock, chat);
    chat.handle.fail(error);
  }
}

/**
 * @internal Socket `gen` closed: its unacked chats go back to the queue (v2 re-sends them with
 * the same id; legacy, which has no ids or resume, re-sends whatever was unanswered).
 */
export function requeue(pending: Map<string, PendingChat>, gen: number, legacy: boolean): void {
  for (const chat of [...pending.values()]) {
    if (chat.sentOn !== gen || (chat.acked && !legacy)) continue;
    if (chat.dropAnswer) pending.delete(chat.handle.id);
    chat.sentOn = 0;
    chat.handle.markQueued();
  }
}

/** @internal Stands in for a socket that never opened (no token, constructor threw). */
export function closedSocket(): WebSocketLike {
  return { readyState: 3, send() {}, close() {}, onopen: null, onmessage: null, onclose: null, onerror: null };
}
