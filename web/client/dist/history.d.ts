import type { UiAction } from './types.js';
/** One of the user's conversations. */
export interface ConversationSummary {
    /** The conversation: what `chat(…, { sessionId })` and `history(sessionId)` take. */
    sessionId: string;
    title: string | null;
    messageCount: number;
    /** RFC 3339 times. */
    lastActivity: string | null;
    createdAt: string | null;
    /** The first 120 characters of its newest message. */
    preview: string | null;
}
/** A stored message of a conversation. */
export interface HistoryMessage {
    /** The stored message's id: pass it as `before` to read what came earlier. */
    id: string;
    role: 'user' | 'assistant' | 'system';
    content: string;
    /** RFC 3339. */
    createdAt: string | null;
    /** The chat id (`chat(…, { id })`) the message belongs to, when known. */
    clientMsgId: string | null;
    /** Assistant messages: the model and provider that answered, and its actions. */
    model?: string;
    source?: string;
    uiActions?: UiAction[];
}
/** One page of a conversation, newest message first. */
export interface HistoryPage {
    sessionId: string;
    messages: HistoryMessage[];
    /** The `before` of the next (older) page; `null` when this page reaches the start. */
    nextBefore: string | null;
}
/** Which page of {@link PamClient.history} to read. */
export interface HistoryOptions {
    /** Only messages older than this message id (a page's `nextBefore`). */
    before?: string;
    /** Messages per page, 1–100 (the server's default is 50). */
    limit?: number;
}
/** How many conversations {@link PamClient.conversations} lists. */
export interface ConversationsOptions {
    /** 1–100 (the server's default is 50). */
    limit?: number;
}
