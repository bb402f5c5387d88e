/**
 * Every frame the server sends on a legacy socket: protocol frames and server pushes. Only chat_response and error carry message/content at the top level.
 */
export type LegacyServerFrame = (ConnectionFrame & {
    type: 'connection';
}) | (ChatResponse & {
    type: 'chat_response';
}) | (ErrorFrame & {
    type: 'error';
}) | {
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
});
/**
 * `error_code` values (protocol.md, "Error codes in frames", plus the close-table extras).
 */
export type ErrorCode = 'AUTH_INVALID' | 'TOKEN_EXPIRED' | 'FORBIDDEN' | 'AUTH_TIMEOUT' | 'AUTH_UNAVAILABLE' | 'INVALID_JSON' | 'UNKNOWN_TYPE' | 'VALIDATION_ERROR' | 'MESSAGE_TOO_LARGE' | 'RATE_LIMIT_EXCEEDED' | 'EMPTY_MESSAGE' | 'LLM_UNAVAILABLE' | 'STORAGE_UNAVAILABLE' | 'INTERNAL' | 'TIMEOUT' | 'SLOW_CONSUMER' | 'SERVICE_RESTART' | 'TOO_MANY_CONNECTIONS' | 'PROTOCOL_ERROR';
/**
 * Whether a fired timer was a countdown or an alarm at a wall-clock time.
 */
export type TimerType = 'timer' | 'alarm';
/**
 * How urgent a proactive alert is.
 */
export type AlertPriority = 'urgent' | 'high' | 'normal' | 'low';
/**
 * The legacy welcome frame, sent once after authentication.
 */
export interface ConnectionFrame {
    /**
     * This socket's id (also in the server's logs).
     */
    connection_id: string;
    /**
     * A greeting for people. Deliberately not in `message`/`content`/`response`: today's client
     * sends its queued chats on open, before this frame, and takes the first frame with a truthy
     * one of those keys as the pending chat's answer (every later answer would be one behind).
     */
    greeting: string;
    /**
     * Always `enabled`.
     */
    profile_integration: string;
    /**
     * Always `connected`.
     */
    status: string;
    /**
     * Server time (RFC 3339).
     */
    timestamp: string;
}
/**
 * The one terminal frame of a legacy chat.
 */
export interface ChatResponse {
    /**
     * The same text as `message`.
     */
    content: string;
    /**
     * True when the turn failed; `error_code` says why.
     */
    error: boolean;
    /**
     * Why the turn failed (only with `error: true`).
     */
    error_code?: ErrorCode | null;
    /**
     * Time from reading the chat to this frame.
     */
    latency_ms: number;
    /**
     * The whole answer (an apology when `error` is true).
     */
    message: string;
    /**
     * The model that answered.
     */
    model: string;
    /**
     * The conversation the chat belongs to.
     */
    session_id: string;
    /**
     * Who answered: `anthropic`, `openai`, `builtin` or `cache`.
     */
    source: string;
    /**
     * Server time (RFC 3339).
     */
    timestamp: string;
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
 * A protocol error; precedes every close the server starts (except 1000).
 */
export interface ErrorFrame {
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
    retryable?: boolean | null;
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
