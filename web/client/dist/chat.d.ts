import { PamError } from './errors.js';
import type { ChatResult } from './types.js';
/** Where a chat is: waiting to be sent, sent, stored by the server, streaming, or finished. */
export type ChatStatus = 'queued' | 'sent' | 'acked' | 'streaming' | 'done' | 'failed';
/**
 * A chat in flight. Deltas are for showing progress; {@link ChatHandle.result} (and `onEnd`)
 * carries the whole answer, which replaces whatever the deltas said — after a failed resume the
 * chat is re-sent and deltas may repeat, and a repeated id is answered from storage without any.
 */
export declare class ChatHandle implements AsyncIterable<string> {
    /** The client message id (the server's idempotency key). */
    readonly id: string;
    /** Resolves with the answer; rejects with a {@link PamError}. */
    readonly result: Promise<ChatResult>;
    private statusValue;
    private ackedOnce;
    private textValue;
    private final?;
    private failure?;
    private resolveResult;
    private rejectResult;
    private readonly ackCbs;
    private readonly deltaCbs;
    private readonly endCbs;
    private readonly errorCbs;
    private readonly buffered;
    private readonly waiters;
    /** Set by the client: asks the server to stop this chat. */
    private readonly cancelFn;
    /** Where the chat is. */
    get status(): ChatStatus;
    /** The text so far: the deltas while streaming, the final answer once done. */
    get text(): string;
    /** Calls `cb` once the server has stored the chat (v2 `ack`). */
    onAck(cb: () => void): this;
    /** Calls `cb(delta, textSoFar)` for each streamed piece (v2 only). */
    onDelta(cb: (delta: string, text: string) => void): this;
    /** Calls `cb(result)` with the whole answer (at once if it already came). */
    onEnd(cb: (result: ChatResult) => void): this;
    /** Calls `cb(error)` when the chat fails (at once if it already did). */
    onError(cb: (error: PamError) => void): this;
    /** Asks the server to stop; the chat still ends with the partial text (or fails if never sent). */
    cancel(): void;
    /** The deltas as they stream; ends after the last one, throws the chat's error. */
    [Symbol.asyncIterator](): AsyncIterator<string>;
}
