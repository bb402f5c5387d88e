//! What a close code means for reconnecting. The table itself (names, plain-words reasons, the
//! server's reconnect advice) is generated from docs/schema/close-codes.json.
import { CLOSE_CODES } from './generated/close-codes.js';
/** The close table row for `code`, when the server documents it. */
export function closeCodeRow(code) {
    return CLOSE_CODES.find((row) => row.code === code);
}
/** Classifies a close code (see {@link CloseClass}). */
export function classifyClose(code) {
    if (code === 4401)
        return 'refresh';
    if (code >= 4500 && code <= 4999)
        return 'stop';
    if (code >= 4000 && code <= 4499)
        return 'reconnect';
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
export function describeClose(code, serverReason = '') {
    if (serverReason)
        return serverReason;
    if (code === 1006)
        return 'the connection was lost';
    if (code === 1005)
        return 'the connection closed without a reason';
    return closeCodeRow(code)?.reason ?? `closed with code ${code}`;
}
