//! One chat's handle: callbacks (`onAck`, `onDelta`, `onEnd`, `onError`), a `result` promise and
//! an async iterator over the streamed deltas. The final text always replaces the deltas.
import { PamError } from './errors.js';
/**
 * A chat in flight. Deltas are for showing progress; {@link ChatHandle.result} (and `onEnd`)
 * carries the whole answer, which replaces whatever the deltas said — after a failed resume the
 * chat is re-sent and deltas may repeat, and a repeated id is answered from storage without any.
 */
export class ChatHandle {
    /** The client message id (the server's idempotency key). */
    id;
    /** Resolves with the answer; rejects with a {@link PamError}. */
    result;
    statusValue = 'queued';
    ackedOnce = false;
    textValue = '';
    final;
    failure;
    resolveResult;
    rejectResult;
    ackCbs = [];
    deltaCbs = [];
    endCbs = [];
    errorCbs = [];
    buffered = [];
    waiters = [];
    /** Set by the client: asks the server to stop this chat. */
    cancelFn;
    /** @internal Made by {@link PamClient.chat}. */
    constructor(id, cancel) {
        this.id = id;
        this.cancelFn = cancel;
        this.result = new Promise((resolve, reject) => {
            this.resolveResult = resolve;
            this.rejectResult = reject;
        });
        // A caller that only uses callbacks must not see an unhandled rejection.
        this.result.catch(() => undefined);
    }
    /** Where the chat is. */
    get status() {
        return this.statusValue;
    }
    /** The text so far: the deltas while streaming, the final answer once done. */
    get text() {
        return this.textValue;
    }
    /** Calls `cb` once the server has stored the chat (v2 `ack`). */
    onAck(cb) {
        this.ackCbs.push(cb);
        if (this.ackedOnce || this.statusValue === 'done')
            safe(cb);
        return this;
    }
    /** Calls `cb(delta, textSoFar)` for each streamed piece (v2 only). */
    onDelta(cb) {
        this.deltaCbs.push(cb);
        return this;
    }
    /** Calls `cb(result)` with the whole answer (at once if it already came). */
    onEnd(cb) {
        this.endCbs.push(cb);
        if (this.final) {
            const final = this.final;
            safe(() => cb(final));
        }
        return this;
    }
    /** Calls `cb(error)` when the chat fails (at once if it already did). */
    onError(cb) {
        this.errorCbs.push(cb);
        if (this.failure) {
            const failure = this.failure;
            safe(() => cb(failure));
        }
        return this;
    }
    /** Asks the server to stop; the chat still ends with the partial text (or fails if never sent). */
    cancel() {
        if (!this.finished)
            this.cancelFn(this.id);
    }
    /** The deltas as they stream; ends after the last one, throws the chat's error. */
    [Symbol.asyncIterator]() {
        return {
            next: () => {
                const delta = this.buffered.shift();
                if (delta !== undefined)
                    return Promise.resolve({ value: delta, done: false });
                if (this.failure)
                    return Promise.reject(this.failure);
                if (this.final)
                    return Promise.resolve({ value: undefined, done: true });
                return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
            },
            return: () => Promise.resolve({ value: undefined, done: true }),
        };
    }
    /** @internal True once ended or failed. */
    get finished() {
        return this.final !== undefined || this.failure !== undefined;
    }
    /** @internal The frame went out on a socket (or REST). */
    markSent() {
        if (this.statusValue === 'queued')
            this.statusValue = 'sent';
    }
    /** @internal Back to the queue: the socket closed before the server stored it. */
    markQueued() {
        if (this.statusValue === 'sent')
            this.statusValue = 'queued';
    }
    /** @internal The server stored it (`onAck` callbacks run once, however often it is re-sent). */
    ack() {
        if (this.finished || this.statusValue === 'acked' || this.statusValue === 'streaming')
            return;
        this.statusValue = 'acked';
        if (this.ackedOnce)
            return;
        this.ackedOnce = true;
        for (const cb of this.ackCbs)
            safe(cb);
    }
    /** @internal A streamed piece. */
    delta(delta) {
        if (this.finished)
            return;
        this.statusValue = 'streaming';
        this.textValue += delta;
        const waiter = this.waiters.shift();
        if (waiter)
            waiter.resolve({ value: delta, done: false });
        else
            this.buffered.push(delta);
        for (const cb of this.deltaCbs)
            safe(() => cb(delta, this.textValue));
    }
    /**
     * @internal Back to the queue to be sent again with the same id (after a failed resume, a
     * retryable error or a passed answer deadline): the text starts over (the iterator keeps what it gave).
     */
    restart() {
        if (this.finished)
            return;
        this.textValue = '';
        this.statusValue = 'queued';
    }
    /** @internal The whole answer; replaces the deltas. */
    end(result) {
        if (this.finished)
            return;
        this.final = result;
        this.textValue = result.text;
        this.statusValue = 'done';
        for (const waiter of this.waiters.splice(0))
            waiter.resolve({ value: undefined, done: true });
        this.resolveResult(result);
        for (const cb of this.endCbs)
            safe(() => cb(result));
    }
    /** @internal The chat failed. */
    fail(error) {
        if (this.finished)
            return;
        this.failure = error;
        this.statusValue = 'failed';
        for (const waiter of this.waiters.splice(0))
            waiter.reject(error);
        this.rejectResult(error);
        for (const cb of this.errorCbs)
            safe(() => cb(error));
    }
}
function safe(fn) {
    try {
        fn();
    }
    catch (error) {
        console.error('pam-client: a chat callback threw', error);
    }
}
