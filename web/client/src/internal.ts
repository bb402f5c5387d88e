//! Bookkeeping shapes shared by the client and the dialect handlers (not part of the public API).

import type { ChatHandle } from './chat.js';

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
