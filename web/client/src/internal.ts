//! Bookkeeping shapes shared by the client and the dialect handlers (not part of the public API).

import type { ChatHandle } from './chat.js';
import type { WebSocketLike } from './types.js';

/** @internal A chat the client still owes an answer for. `sentOn`: socket generation, 0 = unsent, -1 = REST. */
export interface PendingChat {
  handle: ChatHandle;
  message: string;
  sessionId: string | undefined;
  context: Record<string, unknown> | undefined;
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
