import { ChatHandle } from './chat.js';
import { type Clock, type TimerHandle } from './clock.js';
import { Emitter } from './emitter.js';
import type { ChatOptions, ConnectionState, Dialect, PamClientOptions, PamEvents } from './types.js';
/** @internal A chat the client still owes an answer for. `sentOn`: socket generation, 0 = unsent, -1 = REST. */
export interface PendingChat {
    handle: ChatHandle;
    message: string;
    sessionId: string | undefined;
    context: Record<string, unknown> | undefined;
    sentOn: number;
    acked: boolean;
    /** Legacy: cancelled locally; its answer is still awaited (to keep answers in order) and dropped. */
    dropAnswer: boolean;
}
/** @internal The v2 stream this client resumes after a reconnect. */
export interface StreamPosition {
    id: string;
    epoch: string;
    lastSeq: number;
}
/**
 * A PAM gateway client. Create it, subscribe with `on(…)`, call `connect()`, then `chat(…)`.
 * Chats made while disconnected are queued and sent once the socket is live (or over REST).
 */
export declare class PamClient extends Emitter<PamEvents> {
    /** @internal */ readonly clock: Clock;
    /** @internal */ readonly dialectValue: Dialect;
    /** @internal */ readonly pending: Map<string, PendingChat>;
    /** @internal */ stream: StreamPosition | undefined;
    /** @internal Awaiting `resumed`/`resume_failed` on the live socket: chats wait. */ resuming: boolean;
    /** @internal Generation of the current socket (bumped per socket and by `close()`). */ gen: number;
    /** @internal Generation of the socket that reached `welcome`/`connection`. */ liveGen: number;
    /** @internal */ heartbeat: TimerHandle | undefined;
    /** @internal */ lastRefreshAt: number;
    /** @internal v2: `welcome.heartbeat_ms` of the live socket. */ heartbeatMs: number;
    /** @internal v2: the epoch of the live socket's welcome (the fresh stream's, should a resume fail). */ pendingEpoch: string | undefined;
    /** @internal Legacy: pings sent since the last frame. */ missedPongs: number;
    /** @internal Consecutive closes for the client's own frames (1008/1009…) without a completed chat. */ policyStrikes: number;
    private readonly options;
    private readonly httpBase;
    private readonly wsBase;
    private readonly backoffBounds;
    private readonly WebSocketCtor;
    private readonly fetchFn;
    private readonly environment;
    private readonly random;
    private readonly newId;
    private stateValue;
    private ws;
    private wantOpen;
    private attempt;
    private failedWithoutWelcome;
    private everLive;
    private restMode;
    private tokenReason;
    private reconnectTimer;
    private connectTimer;
    private readonly pendingDismiss;
    private readonly envHandlers;
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
    /** Dismisses a pushed timer or alert by its `id` (v2 `dismiss`; legacy: the REST route for timers). */
    dismiss(id: string): void;
    private dismissOverRest;
    private cancel;
    /** @internal The current socket is live and not waiting for a resume outcome. */
    isLive(): boolean;
    /** @internal Sends one frame on the current socket (dropped when there is none). */
    send(frame: Record<string, unknown>): void;
    /** @internal Emits an event (the dialect handlers' way out). */
    fire<K extends keyof PamEvents>(event: K, payload: PamEvents[K]): void;
    /** @internal The server said `welcome`/`connection`: the attempt counts as a success. */
    markLive(gen: number, payload: PamEvents['live']): void;
    /** @internal Asks `getToken('expiring')` and sends `auth_refresh` (at most once per 5 s). */
    refreshToken(gen: number): Promise<void>;
    /** @internal Sends what is queued: dismissals, then chats in order (legacy: one at a time). */
    flush(): void;
    /** @internal A chat finished (answered or failed): forget it and send the next (legacy). */
    settle(id: string): void;
    /** @internal Drops the current socket as if it closed with `code` (no welcome, dead heartbeat). */
    drop(gen: number, code: number, reason: string): void;
    private open;
    private onMessage;
    private onClosed;
    private scheduleReconnect;
    private stop;
    private sendOverRest;
    private setState;
    private listenToEnvironment;
    private forgetEnvironment;
    private reconnectNow;
}
