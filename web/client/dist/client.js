//! `PamClient`: one logical connection to the gateway that survives sockets. It owns the state
//! machine (connecting → live → reconnecting/offline → stopped), the backoff, the queue of chats
//! by client message id, the REST fallback and the browser's online/visibility signals; the
//! dialects' frame handling lives in v2.ts and legacy.ts.
import { Acks, RecentIds } from './acks.js';
import { backoff, delayMs } from './backoff.js';
import { ChatHandle } from './chat.js';
import { systemClock } from './clock.js';
import { classifyClose, closeCodeRow, describeClose } from './close-codes.js';
import { Emitter } from './emitter.js';
import { PamError } from './errors.js';
import { armAnswerTimeout, onLegacyFrame, startLegacyHeartbeat } from './legacy.js';
import { dismissTimerOverRest, sendChatOverRest } from './rest.js';
import { fetchConversations, fetchHistory } from './history.js';
import { pickEnvironment, watchEnvironment } from './environment.js';
import { onV2Frame } from './v2.js';
import { clearChatTimers, closedSocket, detach, failWhere, fallbackId, newPendingChat, requeue } from './internal.js';
import { armInFlight, DEFAULT_ANSWER_DEADLINE_MS, DEFAULT_CHAT_RETRIES, DEFAULT_CHAT_RETRY_BACKOFF, DEFAULT_TOO_MANY_CONNECTIONS_RETRY_MS, isUncleanLoss, mayResend, pauseDeadlines, sentNow, TOO_MANY_CONNECTIONS, } from './recovery.js';
/**
 * A PAM gateway client. Create it, subscribe with `on(…)`, call `connect()`, then `chat(…)`.
 * Chats made while disconnected are queued and sent once the socket is live (or over REST).
 */
export class PamClient extends Emitter {
    /** @internal */ clock;
    /** @internal */ dialectValue;
    /** @internal */ pending = new Map();
    /** @internal */ stream;
    /** @internal Awaiting `resumed`/`resume_failed` on the live socket: chats wait. */ resuming = false;
    /** @internal Generation of the current socket (bumped per socket and by `close()`). */ gen = 0;
    /** @internal Generation of the socket that reached `welcome`/`connection`. */ liveGen = -1;
    /** @internal */ heartbeat;
    /** @internal */ lastRefreshAt = -Infinity;
    /** @internal v2: `welcome.heartbeat_ms` of the live socket. */ heartbeatMs = 0;
    /** @internal v2: the epoch of the live socket's welcome (the fresh stream's, should a resume fail). */ pendingEpoch;
    /** @internal Legacy: pings sent since the last frame. */ missedPongs = 0;
    /** @internal Consecutive closes for the client's own frames (1008/1009…) without a completed chat. */ policyStrikes = 0;
    /** @internal */ options;
    /** @internal v2: the `ack {seq}` frames of the current socket. */ acks;
    /** @internal The pushes given to the app, by kind and id (a re-sent one is not given again). */ pushesSeen = new RecentIds();
    /** @internal v2: ids of chats answered or failed lately (a late frame about one is not news). */ finishedIds = new RecentIds();
    /** @internal v2: chats sent so far (each send's place in the order; recovery.ts). */ sendOrder = 0;
    /** @internal v2: the answer deadline (`answerDeadlineMs`). */ answerDeadlineMs;
    /** @internal v2: re-sends per chat after retryable errors (`chatRetries`). */ chatRetries;
    /** @internal v2: the waits before those re-sends (`chatRetryBackoff`). */ chatRetryBackoff;
    /** @internal Jitter source. */ random;
    httpBase;
    wsBase;
    backoffBounds;
    WebSocketCtor;
    fetchFn;
    environment;
    newId;
    stateValue = 'idle';
    /** @internal The current socket. */ ws = null;
    wantOpen = false;
    attempt = 0;
    failedWithoutWelcome = 0;
    everLive = false;
    /** When a live socket was last lost uncleanly (1006/1005): a 4504 soon after may be a dead node's count. */
    lostUncleanlyAt = -Infinity;
    restMode = false;
    tokenReason = 'connect';
    reconnectTimer;
    /** @internal No welcome (or resume outcome) yet: the socket is dropped when it fires. */ connectTimer;
    pendingDismiss = [];
    unwatch;
    context;
    contextSentOn = 0;
    constructor(options) {
        super();
        if (!options || typeof options.url !== 'string' || !/^(https?|wss?):\/\//.test(options.url)) {
            throw new TypeError('PamClient: `url` must be an http(s):// or ws(s):// URL');
        }
        if (typeof options.getToken !== 'function')
            throw new TypeError('PamClient: `getToken` is required');
        this.options = options;
        this.dialectValue = options.dialect ?? 'v2';
        if (this.dialectValue === 'legacy' && !options.userId)
            throw new TypeError('PamClient: the legacy dialect needs `userId`');
        const base = options.url.replace(/\/+$/, '');
        this.httpBase = base.replace(/^ws(s?):/, 'http$1:');
        this.wsBase = this.httpBase.replace(/^http(s?):/, 'ws$1:');
        this.backoffBounds = backoff(options.backoff);
        this.clock = options.clock ?? systemClock;
        this.acks = new Acks(this.clock, (seq) => this.send({ type: 'ack', seq }));
        this.random = options.random ?? Math.random;
        this.answerDeadlineMs = options.answerDeadlineMs ?? DEFAULT_ANSWER_DEADLINE_MS;
        this.chatRetries = Math.max(0, options.chatRetries ?? DEFAULT_CHAT_RETRIES);
        this.chatRetryBackoff = backoff(options.chatRetryBackoff ?? DEFAULT_CHAT_RETRY_BACKOFF);
        const g = globalThis;
        this.WebSocketCtor = options.WebSocket ?? g.WebSocket;
        this.fetchFn = options.fetch ?? (g.fetch ? g.fetch.bind(globalThis) : undefined);
        this.newId = options.newId ?? (() => g.crypto?.randomUUID?.() ?? fallbackId(this.random));
        this.environment = pickEnvironment(options.environment);
        // No WebSocket at all (an old runtime): REST from the start.
        if (!this.WebSocketCtor)
            this.restMode = true;
    }
    /** The connection state. */
    get state() {
        return this.stateValue;
    }
    /** The dialect spoken. */
    get dialect() {
        return this.dialectValue;
    }
    /** `socket`, or `rest` while chats go over `POST /api/v1/pam/chat`. */
    get transport() {
        return this.restMode ? 'rest' : 'socket';
    }
    /** The v2 stream id (what a reconnect resumes), once known. */
    get streamId() {
        return this.stream?.id;
    }
    /** Opens the connection (idempotent); it then reconnects by itself until `close()` or a stop. */
    connect() {
        if (this.wantOpen)
            return this;
        this.wantOpen = true;
        this.attempt = 0;
        this.policyStrikes = 0;
        this.listenToEnvironment();
        if (this.environment?.navigator?.onLine === false)
            this.setState('offline');
        else if (this.WebSocketCtor)
            void this.open();
        else
            this.flush();
        return this;
    }
    /** Closes for good: the socket closes with 1000, queued and running chats fail with `CLOSED`. */
    close() {
        if (!this.wantOpen && this.stateValue === 'stopped')
            return;
        const ws = this.ws;
        this.ws = null;
        this.gen++;
        if (ws) {
            detach(ws);
            try {
                ws.close(1000, 'client closed');
            }
            catch {
                // Already closing.
            }
        }
        this.stop(1000, 'closed by the app');
    }
    /**
     * Sends a chat (queued while disconnected). The handle streams deltas (v2), and ends with the
     * whole answer, which replaces the deltas; the chat's `id` is its idempotency key.
     */
    chat(text, options = {}) {
        const id = options.id ?? this.newId();
        const existing = this.pending.get(id);
        if (existing)
            return existing.handle;
        const handle = new ChatHandle(id, (chatId) => this.cancel(chatId));
        const max = this.options.maxQueued ?? 100;
        if (this.pending.size >= max) {
            handle.fail(new PamError('QUEUE_FULL', `${max} chats are already waiting for an answer`, true));
            return handle;
        }
        const bytes = utf8Bytes(text) + (options.context ? utf8Bytes(JSON.stringify(options.context)) : 0);
        const maxBytes = this.options.maxQueuedBytes ?? 1024 * 1024;
        let waiting = 0;
        for (const queued of this.pending.values())
            waiting += queued.bytes;
        if (waiting + bytes > maxBytes) {
            handle.fail(new PamError('QUEUE_FULL', `the chats waiting for an answer would exceed ${maxBytes} bytes`, true));
            return handle;
        }
        const chat = newPendingChat(handle, text, options.sessionId, options.context, bytes);
        this.pending.set(id, chat);
        if (!this.wantOpen && this.stateValue === 'stopped') {
            handle.fail(new PamError('CLOSED', 'the client is closed; call connect() first'));
            this.pending.delete(id);
        }
        else {
            this.flush();
        }
        return handle;
    }
    /**
     * Sets context for the chats that follow (merged over what was set before; a key set to
     * `undefined` is dropped). Sent as `context_update` now when live, and again on every new socket.
     */
    updateContext(context) {
        const merged = { ...this.context, ...context };
        for (const key of Object.keys(merged))
            if (merged[key] === undefined)
                delete merged[key];
        this.context = merged;
        this.contextSentOn = 0;
        this.flush();
    }
    /** Dismisses a pushed timer or alert by its `id` (v2 `dismiss`; legacy: the REST route for timers). */
    dismiss(id) {
        if (this.dialectValue === 'legacy') {
            void this.dismissOverRest(id);
            return;
        }
        if (this.isLive())
            this.send({ type: 'dismiss', id });
        else
            this.pendingDismiss.push(id);
    }
    /**
     * One page of a conversation's stored messages, newest first (`GET
     * /api/v1/pam/conversations/{sessionId}/messages`): pass the page's `nextBefore` as `before` to
     * read further back. Works whatever the socket's state. Rejects with {@link PamError}: `status`
     * 404 (`NOT_FOUND`) when the user has no such conversation, 400 for a bad `limit`/`before`.
     */
    history(sessionId = 'default', options = {}) {
        return fetchHistory(this.restContext(), sessionId, options);
    }
    /** The user's conversations, most recently active first (`GET /api/v1/pam/conversations`). */
    conversations(options = {}) {
        return fetchConversations(this.restContext(), options);
    }
    async dismissOverRest(id) {
        try {
            await dismissTimerOverRest(this.restContext(), id, this.options.userId ?? '');
        }
        catch (error) {
            const e = error instanceof PamError ? error : new PamError('NETWORK', String(error), true);
            this.emit('server_error', { code: e.code, message: e.message, retryable: e.retryable });
        }
    }
    /** @internal */
    restContext() {
        const { fetchFn, httpBase, clock, backoffBounds, random } = this;
        return { fetch: fetchFn, httpBase, clock, backoff: backoffBounds, random, getToken: this.options.getToken };
    }
    cancel(id) {
        const chat = this.pending.get(id);
        if (!chat)
            return;
        if (this.dialectValue === 'v2' && chat.sentOn === this.gen && this.isLive()) {
            // The server stops it and ends it with the partial text (its answer deadline still runs).
            this.send({ type: 'cancel', id });
            return;
        }
        clearChatTimers(this.clock, chat);
        const cancelled = new PamError('CANCELLED', 'the chat was cancelled');
        if (this.dialectValue === 'legacy' && chat.sentOn === this.gen && chat.sentOn !== 0) {
            chat.dropAnswer = true;
        }
        else {
            this.pending.delete(id);
        }
        chat.handle.fail(cancelled);
    }
    // ---- internals used by v2.ts and legacy.ts ----
    /** @internal The current socket is live and not waiting for a resume outcome. */
    isLive() {
        return this.ws !== null && this.liveGen === this.gen && !this.resuming;
    }
    /** @internal Sends one frame on the current socket (dropped when there is none). */
    send(frame) {
        try {
            this.ws?.send(JSON.stringify(frame));
        }
        catch {
            // The socket is closing; its close handler re-queues what is unanswered.
        }
    }
    /** @internal Emits an event (the dialect handlers' way out). */
    fire(event, payload) {
        this.emit(event, payload);
    }
    /**
     * @internal A `timer_expired`/`proactive_alert` for the app, unless one with the same id was
     * given to it already (the server re-sends a push it has no proof of receipt for, on any socket).
     */
    firePush(event, push) {
        const id = push.id;
        if (typeof id === 'string' && !this.pushesSeen.firstTime(`${event}:${id}`))
            return;
        this.emit(event, push);
    }
    /** @internal The server said `welcome`/`connection`: the attempt counts as a success. */
    markLive(gen, payload) {
        if (gen !== this.gen)
            return;
        this.clock.clearTimeout(this.connectTimer);
        this.liveGen = gen;
        this.attempt = 0;
        this.failedWithoutWelcome = 0;
        this.everLive = true;
        this.lostUncleanlyAt = -Infinity;
        this.restMode = false;
        this.setState('live');
        this.emit('live', payload);
    }
    /** @internal Sends what is queued: dismissals, then chats in order (legacy: one at a time). */
    flush() {
        if (this.restMode) {
            if (!this.wantOpen)
                return; // Queued until connect().
            for (const chat of this.pending.values())
                if (chat.sentOn === 0 && mayResend(chat, this.gen))
                    void sendChatOverRest(this.restContext(), chat, () => this.pending.delete(chat.handle.id));
            return;
        }
        if (!this.isLive())
            return;
        if (this.context && this.contextSentOn !== this.gen) {
            // The server keeps context per connection: each new socket gets it before any chat.
            this.send({ type: 'context_update', context: this.context });
            this.contextSentOn = this.gen;
        }
        for (const id of this.pendingDismiss.splice(0))
            this.send({ type: 'dismiss', id });
        for (const chat of [...this.pending.values()]) {
            // Answered over REST while off the socket: nothing left to send or to wait for.
            if (chat.handle.finished && chat.sentOn !== this.gen && chat.sentOn !== -1)
                this.pending.delete(chat.handle.id);
            if (chat.handle.finished || chat.sentOn === this.gen || chat.sentOn === -1 || chat.acked || !mayResend(chat, this.gen))
                continue;
            // Legacy answers carry no id: one chat at a time keeps answers matched to questions.
            if (this.dialectValue === 'legacy' && [...this.pending.values()].some((c) => c.sentOn === this.gen))
                return;
            const frame = { type: 'chat', message: chat.message };
            if (this.dialectValue === 'v2')
                frame.id = chat.handle.id;
            if (chat.sessionId !== undefined)
                frame.session_id = chat.sessionId;
            if (chat.context !== undefined)
                frame.context = chat.context;
            this.send(frame);
            chat.sentOn = this.gen;
            chat.handle.markSent();
            if (this.dialectValue === 'legacy')
                armAnswerTimeout(this, chat, this.gen);
            else
                sentNow(this, chat);
        }
        // Chats acked on the stream this socket resumed are owed an answer here too.
        if (this.dialectValue === 'v2')
            armInFlight(this);
    }
    /** @internal A chat finished (answered or failed): forget it and send the next (legacy). */
    settle(id) {
        const chat = this.pending.get(id);
        if (chat)
            clearChatTimers(this.clock, chat);
        this.finishedIds.firstTime(id);
        this.pending.delete(id);
        if (this.dialectValue === 'legacy')
            this.flush();
    }
    /** @internal Drops the current socket as if it closed with `code` (no welcome, dead heartbeat). */
    drop(gen, code, reason) {
        if (gen !== this.gen || !this.ws)
            return;
        const ws = this.ws;
        detach(ws);
        try {
            ws.close(1000, reason.slice(0, 100));
        }
        catch {
            // Never opened.
        }
        this.onClosed(gen, code, reason);
    }
    // ---- socket lifecycle ----
    async open() {
        const gen = ++this.gen;
        this.setState('connecting');
        this.emit('connecting', { attempt: this.attempt });
        let token;
        try {
            token = await this.options.getToken(this.tokenReason);
        }
        catch (error) {
            if (gen !== this.gen || !this.wantOpen)
                return;
            this.ws = closedSocket();
            return this.onClosed(gen, 1006, `could not get a token: ${String(error)}`);
        }
        if (gen !== this.gen || !this.wantOpen || !this.WebSocketCtor)
            return;
        this.tokenReason = 'connect';
        const url = this.dialectValue === 'v2'
            ? `${this.wsBase}/api/v2/pam/ws`
            : `${this.wsBase}/api/v1/pam/ws/${encodeURIComponent(this.options.userId ?? '')}?token=${encodeURIComponent(token)}`;
        let ws;
        try {
            ws = new this.WebSocketCtor(url);
        }
        catch (error) {
            this.ws = closedSocket();
            return this.onClosed(gen, 1006, `could not open a socket: ${String(error)}`);
        }
        this.ws = ws;
        this.connectTimer = this.clock.setTimeout(() => this.drop(gen, 1006, 'the server did not welcome the socket in time'), this.options.connectTimeoutMs ?? 10_000);
        ws.onopen = () => {
            if (gen !== this.gen)
                return;
            // v2 sends the token in the first frame, never in the URL (proxies log URLs).
            if (this.dialectValue === 'v2')
                this.send({ type: 'auth', token });
            else
                startLegacyHeartbeat(this, gen, this.options.legacyPingMs ?? 15_000);
        };
        ws.onmessage = (event) => this.onMessage(gen, event.data);
        ws.onclose = (event) => this.onClosed(gen, event.code, event.reason);
        ws.onerror = () => undefined; // `onclose` follows with the code.
    }
    onMessage(gen, data) {
        if (gen !== this.gen)
            return;
        let frame;
        try {
            const text = typeof data === 'string' ? data : new TextDecoder().decode(data);
            frame = JSON.parse(text);
        }
        catch {
            return; // The server sends only JSON text; anything else is not ours to act on.
        }
        if (!frame || typeof frame !== 'object' || typeof frame.type !== 'string')
            return;
        if (this.dialectValue === 'v2')
            onV2Frame(this, gen, frame);
        else
            onLegacyFrame(this, gen, frame);
    }
    onClosed(gen, code, reason) {
        if (gen !== this.gen || !this.ws)
            return;
        this.ws = null;
        this.clock.clearTimeout(this.connectTimer);
        this.clock.clearTimeout(this.heartbeat);
        this.acks.reset();
        pauseDeadlines(this);
        const wasLive = this.liveGen === gen;
        this.resuming = false;
        if (!this.wantOpen)
            return;
        const why = describeClose(code, reason);
        let kind = classifyClose(code);
        if (wasLive && isUncleanLoss(code))
            this.lostUncleanlyAt = this.clock.now();
        // Right after a crash the dead node's sockets still count against the per-user cap (until
        // its registration expires): a 4504 then is transient, and retried within the window.
        const capWindow = this.options.tooManyConnectionsRetryMs ?? DEFAULT_TOO_MANY_CONNECTIONS_RETRY_MS;
        if (code === TOO_MANY_CONNECTIONS && capWindow > 0 && this.clock.now() - this.lostUncleanlyAt <= capWindow)
            kind = 'reconnect';
        if (kind === 'stop')
            return this.stop(code, why);
        if (kind === 'no_loop') {
            // Our own frame broke a rule: fail what this socket carried unacked, so it is not replayed.
            const error = new PamError(closeCodeRow(code)?.errorCode ?? 'PROTOCOL_ERROR', why);
            failWhere(this.pending, this.clock, error, (chat) => chat.sentOn === gen && !chat.acked);
            if (++this.policyStrikes > 1)
                return this.stop(code, why);
        }
        if (kind === 'refresh')
            this.tokenReason = 'expired';
        requeue(this.pending, gen, this.dialectValue === 'legacy');
        if (!wasLive) {
            this.failedWithoutWelcome++;
            const after = this.options.restFallbackAfter ?? 3;
            if (!this.everLive && !this.restMode && after > 0 && this.failedWithoutWelcome >= after && this.fetchFn) {
                this.restMode = true;
                this.emit('rest_fallback', { failedAttempts: this.failedWithoutWelcome });
                this.flush();
            }
        }
        if (this.environment?.navigator?.onLine === false)
            return this.setState('offline');
        this.scheduleReconnect(code, why);
    }
    scheduleReconnect(code, reason) {
        const delay = delayMs(this.backoffBounds, this.attempt, this.random);
        this.attempt++;
        this.setState('reconnecting');
        this.emit('reconnecting', { delayMs: delay, attempt: this.attempt, code, reason });
        this.clock.clearTimeout(this.reconnectTimer);
        this.reconnectTimer = this.clock.setTimeout(() => void this.open(), delay);
    }
    stop(code, reason) {
        this.wantOpen = false;
        this.clock.clearTimeout(this.reconnectTimer);
        this.clock.clearTimeout(this.connectTimer);
        this.clock.clearTimeout(this.heartbeat);
        this.acks.reset();
        this.unwatch?.();
        this.unwatch = undefined;
        const error = new PamError(code === 1000 ? 'CLOSED' : (closeCodeRow(code)?.errorCode ?? 'CLOSED'), reason);
        failWhere(this.pending, this.clock, error, (chat) => chat.sentOn !== -1); // A REST request in flight still answers.
        this.setState('stopped');
        this.emit('stopped', { code, reason });
    }
    setState(state) {
        if (state === this.stateValue)
            return;
        this.stateValue = state;
        this.emit('state', { state });
    }
    // ---- browser signals ----
    listenToEnvironment() {
        if (!this.environment || this.unwatch)
            return;
        this.unwatch = watchEnvironment(this.environment, {
            online: () => {
                this.emit('online', {});
                if (this.wantOpen && (this.stateValue === 'offline' || this.stateValue === 'reconnecting'))
                    this.reconnectNow(true);
            },
            offline: () => {
                this.emit('offline', {});
                if (this.stateValue === 'reconnecting') {
                    this.clock.clearTimeout(this.reconnectTimer);
                    this.setState('offline');
                }
            },
            visible: () => {
                if (this.wantOpen && this.stateValue === 'reconnecting')
                    this.reconnectNow(false);
            },
        });
    }
    reconnectNow(resetBackoff) {
        this.clock.clearTimeout(this.reconnectTimer);
        if (resetBackoff)
            this.attempt = 0;
        void this.open();
    }
}
/** The UTF-8 length of `text`, in bytes. */
function utf8Bytes(text) {
    return new TextEncoder().encode(text).length;
}
