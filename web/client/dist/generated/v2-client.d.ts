/**
 * Every frame a client sends on a v2 socket (/api/v2/pam/ws, or a legacy path with Sec-WebSocket-Protocol: pam.v2).
 */
export type V2ClientFrame = {
    /**
     * A Supabase access token (JWT).
     */
    token: string;
    type: 'auth';
} | (V2Chat & {
    type: 'chat';
}) | {
    /**
     * The chat's `id`.
     */
    id: string;
    type: 'cancel';
} | {
    /**
     * The push's `id` (a timer's `timer_id`).
     */
    id: string;
    type: 'dismiss';
} | {
    /**
     * The `welcome.epoch` that socket saw; another epoch fails with `epoch_changed`.
     */
    epoch?: string | null;
    /**
     * The last `seq` the client saw.
     */
    last_seq: number;
    /**
     * The `welcome.stream_id` of the earlier socket.
     */
    stream_id: string;
    type: 'resume';
} | {
    /**
     * A fresh JWT for the same user.
     */
    token: string;
    type: 'auth_refresh';
} | {
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
     * The highest `seq` the client holds.
     */
    seq: number;
    type: 'ack';
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
    type: 'heartbeat';
} | {
    type: 'typing_indicator';
};
/**
 * A v2 chat: `id` is the idempotency key (a repeated id is answered from storage, never twice).
 */
export interface V2Chat {
    /**
     * Extra context for this chat, merged over `init`/`context_update`.
     */
    context?: {
        [k: string]: unknown;
    } | null;
    /**
     * The client's message id; `ack`, `chat_delta`, `chat_end` and chat errors name it.
     */
    id: string;
    /**
     * The user's text.
     */
    message: string;
    /**
     * The conversation; `default` when absent.
     */
    session_id?: string | null;
}
