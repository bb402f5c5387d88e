/** Default of `answerDeadlineMs`: a chat in flight this long with no sign of progress is sent again once, then fails. */
export declare const DEFAULT_ANSWER_DEADLINE_MS = 60000;
/** Default of `chatRetries`: re-sends after retryable `error`s per chat before it fails. */
export declare const DEFAULT_CHAT_RETRIES = 5;
/**
 * Default of `chatRetryBackoff`. With equal jitter ({@link retryDelayMs}) the five re-sends wait
 * 1–2, 2–4, 4–8, 8–16 and 8–16 s: 23–46 s in all, past the ~15 s (`PAM_NODE_TTL_MS`) for which a
 * crashed node's claim on a chat makes another node answer "still being answered on another node".
 */
export declare const DEFAULT_CHAT_RETRY_BACKOFF: {
    readonly minMs: 1000;
    readonly baseMs: 2000;
    readonly maxMs: 16000;
};
/** Default of `tooManyConnectionsRetryMs`: how long after an unclean loss a 4504 is retried. */
export declare const DEFAULT_TOO_MANY_CONNECTIONS_RETRY_MS = 30000;
/** Close code 4504 `too_many_connections` (the per-user socket cap). */
export declare const TOO_MANY_CONNECTIONS = 4504;
/**
 * True for a close that lost the socket rather than ended it on purpose: 1006 (no close frame —
 * the TCP connection or the node died; also every socket the client dropped itself because the
 * server went silent) or 1005 (a close frame without a status). The node's count of that socket
 * against the per-user cap may outlive it by up to `PAM_NODE_TTL_MS`.
 */
export declare function isUncleanLoss(code: number): boolean;
