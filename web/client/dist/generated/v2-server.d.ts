/**
 * Every frame the server sends on a v2 socket, each with its seq (strictly increasing per stream session).
 */
export type V2ServerFrame = {
    /**
     * Strictly increasing per stream session; `resume` names the last one seen.
     */
    seq: number;
} & ((Welcome & {
    type: 'welcome';
}) | {
    /**
     * The chat's `id`.
     */
    id: string;
    type: 'ack';
} | {
    /**
     * Text to append.
     */
    delta: string;
    /**
     * The chat's `id`.
     */
    id: string;
    type: 'chat_delta';
} | (ChatEnd & {
    type: 'chat_end';
}) | (V2Error & {
    type: 'error';
}) | {
    /**
     * Milliseconds until the token's `exp` (then close 4401).
     */
    expires_in_ms: number;
    type: 'auth_expiring';
} | {
    /**
     * How many frames were replayed.
     */
    replayed: number;
    /**
     * The resumed stream.
     */
    stream_id: string;
    type: 'resumed';
} | {
    /**
     * Why nothing was replayed.
     */
    reason: ResumeFailure;
    /**
     * The fresh stream the connection goes on with.
     */
    stream_id: string;
    type: 'resume_failed';
} | {
    /**
     * Server time in Unix milliseconds.
     */
    timestamp: number;
    type: 'ping';
} | {
    /**
     * The client ping's `timestamp`, verbatim (server time in ms when it sent none).
     */
    timestamp: {
        [k: string]: unknown;
    };
    type: 'pong';
} | (TimerExpired & {
    type: 'timer_expired';
}) | (ProactiveAlert & {
    type: 'proactive_alert';
}));
/**
 * `error_code` values (protocol.md, "Error codes in frames", plus the close-table extras).
 */
export type ErrorCode = 'AUTH_INVALID' | 'TOKEN_EXPIRED' | 'FORBIDDEN' | 'AUTH_TIMEOUT' | 'AUTH_UNAVAILABLE' | 'INVALID_JSON' | 'UNKNOWN_TYPE' | 'VALIDATION_ERROR' | 'MESSAGE_TOO_LARGE' | 'RATE_LIMIT_EXCEEDED' | 'EMPTY_MESSAGE' | 'LLM_UNAVAILABLE' | 'STORAGE_UNAVAILABLE' | 'INTERNAL' | 'TIMEOUT' | 'SLOW_CONSUMER' | 'SERVICE_RESTART' | 'TOO_MANY_CONNECTIONS' | 'PROTOCOL_ERROR';
/**
 * Why a `resume` replayed nothing (`resume_failed.reason`).
 */
export type ResumeFailure = 'unknown_stream' | 'too_old' | 'ahead' | 'epoch_changed' | 'busy';
/**
 * Whether a fired timer was a countdown or an alarm at a wall-clock time.
 */
export type TimerType = 'timer' | 'alarm';
/**
 * How urgent a proactive alert is.
 */
export type AlertPriority = 'urgent' | 'high' | 'normal' | 'low';
/**
 * The v2 welcome, sent once after authentication.
 */
export interface Welcome {
    /**
     * This socket's id (also in the server's logs).
     */
    connection_id: string;
    /**
     * Changes whenever the stored frames of streams were lost (e.g. the store restarted): a
     * `resume` naming another epoch fails with `epoch_changed`.
     */
    epoch: string;
    /**
     * How often the server pings (`PAM_PING_INTERVAL_MS`).
     */
    heartbeat_ms: number;
    /**
     * Always `pam.v2`.
     */
    protocol: string;
    /**
     * How long a stream stays resumable after its socket went away, in milliseconds.
     */
    resume_window_ms: number;
    /**
     * The resumable stream of server frames (server-chosen); `resume` names it after a
     * reconnect. Not the conversation: that is a chat's `session_id`.
     */
    stream_id: string;
}
/**
 * The terminal frame of a v2 chat: the full text, which replaces any streamed deltas.
 */
export interface ChatEnd {
    /**
     * True when a repeated `id` was answered from storage (no deltas, no model call).
     */
    cached: boolean;
    /**
     * Time to the model's first token, when a model streamed.
     */
    first_token_ms: number | null;
    /**
     * The chat's `id`.
     */
    id: string;
    /**
     * Time from reading the chat to this frame.
     */
    latency_ms: number;
    /**
     * The whole answer; replaces whatever the deltas said.
     */
    message: string;
    /**
     * The model that answered (`unknown` after a cancel).
     */
    model: string;
    /**
     * Who answered: `anthropic`, `openai`, `builtin` or `cache`.
     */
    source: string;
    /**
     * Actions the client should take (reload a list, open the map).
     */
    ui_actions: UiAction[];
}
/**
 * A client-side action the answer asks for (reload a list, open the map).
 */
export interface UiAction {
    /**
     * The entity the action is about (e.g. the event just created).
     */
    entity_id?: string | null;
    /**
     * Its title, for display.
     */
    entity_title?: string | null;
    /**
     * Its kind, e.g. `calendar_event`.
     */
    entity_type?: string | null;
    /**
     * Anything else the action carries.
     */
    metadata?: {
        [k: string]: unknown;
    } | null;
    /**
     * `reload_calendar` | `reload_expenses` | `reload_trips` | `open_map`.
     */
    type: string;
}
/**
 * A v2 error; `retryable` tells the client whether sending the same thing again may work.
 */
export interface V2Error {
    /**
     * What went wrong.
     */
    error_code: ErrorCode;
    /**
     * The chat the error is about, when it is about one.
     */
    id?: string | null;
    /**
     * A message fit for a person.
     */
    message: string;
    /**
     * Whether sending the same thing again may work.
     */
    retryable: boolean;
}
/**
 * A timer or alarm fired (`type: "timer_expired"`); sent again on every connect until dismissed.
 */
export interface TimerExpired {
    /**
     * When it fired (RFC 3339).
     */
    fire_at: string;
    /**
     * The push notification's id (what a dismiss names).
     */
    id: string;
    /**
     * What the user called the timer.
     */
    label: string;
    /**
     * The text to show.
     */
    message: string;
    /**
     * The system notification to raise.
     */
    notification: TimerNotification;
    /**
     * The timer's id.
     */
    timer_id: string;
    /**
     * Countdown or alarm.
     */
    timer_type: TimerType;
}
/**
 * What the browser shows as a system notification for a fired timer.
 */
export interface TimerNotification {
    /**
     * Notification text.
     */
    body: string;
    /**
     * Always `true`: the notification stays until the user acts on it.
     */
    requireInteraction: boolean;
    /**
     * Collapses repeats of the same timer into one notification.
     */
    tag: string;
    /**
     * Notification title.
     */
    title: string;
}
/**
 * An alert the server raises on its own (`type: "proactive_alert"`), e.g. a budget threshold crossed.
 */
export interface ProactiveAlert {
    /**
     * What to show.
     */
    content: AlertContent;
    /**
     * The push notification's id (what a dismiss names).
     */
    id: string;
    /**
     * When it was raised (RFC 3339).
     */
    timestamp: string;
}
/**
 * The body of a proactive alert.
 */
export interface AlertContent {
    /**
     * Follow-up actions the client may offer, e.g. `analyze_expenses`.
     */
    actions: string[];
    /**
     * e.g. `budget_alert`.
     */
    alert_type: string;
    /**
     * e.g. `financial_guidance`.
     */
    category: string;
    /**
     * The text to show.
     */
    message: string;
    /**
     * How urgent it is.
     */
    priority: AlertPriority;
    /**
     * The alert's kind as the client files it (e.g. `proactive_alert`).
     */
    type: string;
}
