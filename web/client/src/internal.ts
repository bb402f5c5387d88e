//! Bookkeeping shapes shared by the client and the dialect handlers (not part of the public API).

import type { ChatHandle } from './chat.js';
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

/** @internal Fails (and forgets) the chats that match. */
export function failWhere(pending: Map<string, PendingChat>, error: PamError, matches: (chat: PendingChat) => boolean): void {
  for (const chat of [...pending.values()]) {
    if (!matches(chat)) continue;
    pending.delete(chat.handle.id);
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
