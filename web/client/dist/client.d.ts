import { ChatHandle } from './chat.js';
import { Emitter } from './emitter.js';
import { type ConversationSummary, type ConversationsOptions, type HistoryOptions, type HistoryPage } from './history.js';
import type { ChatOptions, ConnectionState, Dialect, PamClientOptions, PamEvents } from './types.js';
/**
 * A PAM gateway client. Create it, subscribe with `on(…)`, call `connect()`, then `chat(…)`.
 * Chats made while disconnected are queued and sent once the socket is live (or over REST).
 */
export declare class PamClient extends Emitter<PamEvents> {
    private readonly httpBase;
    private readonly wsBase;
    private readonly backoffBounds;
    private readonly WebSocketCtor;
    private readonly fetchFn;
    private readonly environment;
    private readonly newId;
    private stateValue;
    private wantOpen;
    private attempt;
    private failedWithoutWelcome;
    private everLive;
    /** When a live socket was last lost uncleanly (1006/1005): a 4504 soon after may be a dead node's count. */
    private lostUncleanlyAt;
    private restMode;
    private tokenReason;
    private reconnectTimer;
    private readonly pendingDismiss;
    private unwatch;
    private context;
    private contextSentOn;
    constructor(options: PamClientOptions);
    /** The connection state. */
    get state(): ConnectionState;
    /** The dialect spoken. */
    get dialect(): Dialect;
    /** `socket`, or `rest` while chats go over `POST /api/v1/pam/chat`. */
    get transport(): 'socket' | 'rest';
    /** The v2 stream id (what a reconnect resumes), once known. */
    get streamId(): string | undefined;
    /** Opens the connection (idempotent); it then reconnects by itself until `close()` or a stop. */
    connect(): this;
    /** Closes for good: the socket closes with 1000, queued and running chats fail with `CLOSED`. */
    close(): void;
    /**
     * Sends a chat (queued while disconnected). The handle streams deltas (v2), and ends with the
     * whole answer, which replaces the deltas; the chat's `id` is its idempotency key.
     */
    chat(text: string, options?: ChatOptions): ChatHandle;
    /**
     * Sets context for the chats that follow (merged over what was set before; a key set to
     * `undefined` is dropped). Sent as `context_update` now when live, and again on every new socket.
     */
    updateContext(context: Record<string, unknown>): void;
    /** Dismisses a pushed timer or alert by its `id` (v2 `dismiss`; legacy: the REST route for timers). */
    dismiss(id: string): void;
    /**
     * One page of a conversation's stored messages, newest first (`GET
     * /api/v1/pam/conversations/{sessionId}/messages`): pass the page's `nextBefore` as `before` to
     * read further back. Works whatever the socket's state. Rejects with {@link PamError}: `status`
     * 404 (`NOT_FOUND`) when the user has no such conversation, 400 for a bad `limit`/`before`.
     */
    history(sessionId?: string, options?: HistoryOptions): Promise<HistoryPage>;
    /** The user's conversations, most recently active first (`GET /api/v1/pam/conversations`). */
    conversations(options?: ConversationsOptions): Promise<ConversationSummary[]>;
    private dismissOverRest;
    private cancel;
    private open;
    private onMessage;
    private onClosed;
    private scheduleReconnect;
    private stop;
    private setState;
    private listenToEnvironment;
    private reconnectNow;
}
