import { type CloseCodeRow } from './generated/close-codes.js';
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
export declare function closeCodeRow(code: number): CloseCodeRow | undefined;
/** Classifies a close code (see {@link CloseClass}). */
export declare function classifyClose(code: number): CloseClass;
/** A short plain-words reason for `code` (the server's `reason` wins when it sent one). */
export declare function describeClose(code: number, serverReason?: string): string;
