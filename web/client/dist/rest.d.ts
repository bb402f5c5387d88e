import type { ChatResult, FetchLike, UiAction } from './types.js';
/** The 200 body of `POST /api/v1/pam/chat`. */
export interface RestChatResponse {
    response: string;
    actions?: UiAction[];
    session_id?: string;
    conversation_id?: string;
    message_id?: string;
    processing_time_ms?: number;
    timestamp?: string;
}
/** One chat to send over REST. */
export interface RestChatRequest {
    id: string;
    message: string;
    sessionId?: string | undefined;
    context?: Record<string, unknown> | undefined;
}
/**
 * Sends one chat. Resolves with the answer; throws {@link PamError} with the server's `error`
 * code and HTTP status (`retryable` for 408/429/5xx and network failures).
 */
export declare function restChat(fetchFn: FetchLike, httpBase: string, token: string, chat: RestChatRequest): Promise<ChatResult>;
/** Legacy `dismiss`: `POST /api/v1/pam/internal/dismiss-timer` (the route today's app calls). */
export declare function restDismissTimer(fetchFn: FetchLike, httpBase: string, token: string, timerId: string, userId: string): Promise<void>;
