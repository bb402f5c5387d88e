/** How the server says a client should react to a close code. */
export type ReconnectAdvice = 'closed_normally' | 'may_reconnect' | 'do_not_reconnect';
/** One row of the server's close-code table. */
export interface CloseCodeRow {
    code: number;
    name: string;
    reason: string;
    errorCode: string | null;
    reconnect: ReconnectAdvice;
}
/** Every close code the server sends (first row per code). */
export declare const CLOSE_CODES: readonly CloseCodeRow[];
