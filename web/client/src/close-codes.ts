//! What a close code means for reconnecting. The table itself (names, plain-words reasons, the
//! server's reconnect advice) is generated from docs/schema/close-codes.json.

import { CLOSE_CODES, type CloseCodeRow } from './generated/close-codes.js';

/**
 * How the client reacts to a close:
 * - `reconnect`: back off and reconnect (1001, 1006, 1011, 1012, 1013, 4000–4499 but 4401);
 * - `refresh`: fetch a fresh token, then reconnect (4401);
 * - `no_loop`: the client's own frames caused it (1002, 1007, 1008, 1009): the chats sent on that
 *   socket and not yet acked fail (so the offending frame is not replayed), and the client
 *   reconnects once; a second such close before a chat completes stops it;
 * - `stop`: do not reconnect without user action (1000 from the server, 4500–4999, unknown codes
 *   outside the ranges above). One exception is the client's, not this table's: a 4504
 *   (`too_many_connections`) within `tooManyConnectionsRetryMs` (30 s) after a live socket was
 *   lost uncleanly is reconnected like `reconnect` — a crashed node's sockets still count
 *   against the per-user cap until its registration expires (recovery.ts).
 */
export type CloseClass = 'reconnect' | 'refresh' | 'no_loop' | 'stop';

/** The close table row for `code`, when the server documents it. */
export function closeCodeRow(code: number): CloseCodeRow | undefined {
  return CLOSE_CODES.find((row) => row.code === code);
}

/** Classifies a close code (see {@link CloseClass}). */
export function classifyClose(code: number): CloseClass {
  if (code === 4401) return 'refresh';
  if (code >= 4500 && code <= 4999) return 'stop';
  if (code >= 4000 && code <= 4499) return 'reconnect';
  switch (code) {
    case 1001: // going away / pong timeout
    case 1005: // no status (the peer sent an empty close)
    case 1006: // abnormal: the TCP connection dropped, or the upgrade failed
    case 1011:
    case 1012:
    case 1013:
    case 1014:
      return 'reconnect';
    case 1002:
    case 1007:
    case 1008:
    case 1009:
      return 'no_loop';
    default:
      return 'stop';
  }
}

/** A short plain-words reason for `code` (the server's `reason` wins when it sent one). */
export function describeClose(code: number, serverReason = ''): string {
  if (serverReason) return serverReason;
  if (code === 1006) return 'the connection was lost';
  if (code === 1005) return 'the connection closed without a reason';
  return closeCodeRow(code)?.reason ?? `closed with code ${code}`;
}
