/**
 * Every frame a client sends on a legacy socket (/api/v1/pam/ws/{user_id} without the pam.v2 subprotocol).
 */
export type LegacyClientFrame = (LegacyChat & {
    type: 'chat';
}) | {
    /**
     * Any JSON value; echoed verbatim.
     */
    timestamp?: {
        [k: string]: unknown;
    };
    type: 'ping';
} | {
    /**
     * The server ping's timestamp.
     */
    timestamp?: {
        [k: string]: unknown;
    };
    type: 'pong';
} | {
    /**
     * Client context (within `PAM_MAX_CONTEXT_BYTES`, else `MESSAGE_TOO_LARGE`).
     */
    context?: {
        [k: string]: unknown;
    } | null;
    type: 'init';
} | {
    /**
     * Client context (within `PAM_MAX_CONTEXT_BYTES`, else `MESSAGE_TOO_LARGE`).
     */
    context?: {
        [k: string]: unknown;
    } | null;
    type: 'context_update';
} | {
    /**
     * A JWT.
     */
    token: string;
    type: 'auth';
} | {
    type: 'heartbeat';
} | {
    type: 'typing_indicator';
};
/**
 * A legacy chat. `message` (or its alias `content`) is the text; the user is always the
 * authenticated one, never `user_id` of the body.
 */
export interface LegacyChat {
    /**
     * Alias of `message`, read when `message` is absent.
     */
    content?: string | null;
    /**
     * Extra context for this chat (e.g. `user_location`), merged over `init`/`context_update`.
     */
    context?: {
        [k: string]: unknown;
    } | null;
    /**
     * The user's text (an empty or missing one is answered with `EMPTY_MESSAGE`).
     */
    message?: string | null;
    /**
     * The conversation; `default` when absent.
     */
    session_id?: string | null;
    /**
     * Ignored; today's client sends one.
     */
    timestamp?: {
        [k: string]: unknown;
    };
    /**
     * Ignored: today's client sends it; the token decides the user.
     */
    user_id?: string | null;
}
