//! One chat's handle: callbacks (`onAck`, `onDelta`, `onEnd`, `onError`), a `result` promise and
//! an async iterator over the streamed deltas. The final text always replaces the deltas.

import { PamError } from './errors.js';
import type { ChatResult } from './types.js';

/** Where a chat is: waiting to be sent, sent, stored by the server, streaming, or finished. */
export type ChatStatus = 'queued' | 'sent' | 'acked' | 'streaming' | 'done' | 'failed';

type Waiter = { resolve: (r: IteratorResult<string>) => void; reject: (e: unknown) => void };

/**
 * A chat in flight. Deltas are for showing progress; {@link ChatHandle.result} (and `onEnd`)
 * carries the whole answer, which replaces whatever the deltas said — after a failed resume the
 * chat is re-sent and deltas may repeat, and a repeated id is answered from storage without any.
 */
export class ChatHandle implements AsyncIterable<string> {
  /** The client message id (the server's idempotency key). */
  readonly id: string;
  /** Resolves with the answer; rejects with a {@link PamError}. */
  readonly result: Promise<ChatResult>;
  private statusValue: ChatStatus = 'queued';
  private ackedOnce = false;
  private textValue = '';
  private final?: ChatResult;
  private failure?: PamError;
  private resolveResult!: (r: ChatResult) => void;
  private rejectResult!: (e: PamError) => void;
  private readonly ackCbs: Array<() => void> = [];
  private readonly deltaCbs: Array<(delta: string, text: string) => void> = [];
  private readonly endCbs: Array<(result: ChatResult) => void> = [];
  private readonly errorCbs: Array<(error: PamError) => void> = [];
  private readonly buffered: string[] = [];
  private readonly waiters: Waiter[] = [];
  /** Set by the client: asks the server to stop this chat. */
  private readonly cancelFn: (id: string) => void;

  /** @internal Made by {@link PamClient.chat}. */
  constructor(id: string, cancel: (id: string) => void) {
    this.id = id;
    this.cancelFn = cancel;
    this.result = new Promise<ChatResult>((resolve, reject) => {
      this.resolveResult = resolve;
      this.rejectResult = reject;
    });
    // A caller that only uses callbacks must not see an unhandled rejection.
    this.result.catch(() => undefined);
  }

  /** Where the chat is. */
  get status(): ChatStatus {
    return this.statusValue;
  }

  /** The text so far: the deltas while streaming, the final answer once done. */
  get text(): string {
    return this.textValue;
  }

  /** Calls `cb` once the server has stored the chat (v2 `ack`). */
  onAck(cb: () => void): this {
    this.ackCbs.push(cb);
    if (this.ackedOnce || this.statusValue === 'done') safe(cb);
    return this;
  }

  /** Calls `cb(delta, textSoFar)` for each streamed piece (v2 only). */
  onDelta(cb: (delta: string, text: string) => void): this {
    this.deltaCbs.push(cb);
    return this;
  }

  /** Calls `cb(result)` with the whole answer (at once if it already came). */
  onEnd(cb: (result: ChatResult) => void): this {
    this.endCbs.push(cb);
    if (this.final) {
      const final = this.final;
      safe(() => cb(final));
    }
    return this;
  }

  /** Calls `cb(error)` when the chat fails (at once if it already did). */
  onError(cb: (error: PamError) => void): this {
    this.errorCbs.push(cb);
    if (this.failure) {
      const failure = this.failure;
      safe(() => cb(failure));
    }
    return this;
  }

  /** Asks the server to stop; the chat still ends with the partial text (or fails if never sent). */
  cancel(): void {
    if (!this.finished) this.cancelFn(this.id);
  }

  /** The deltas as they stream; ends after the last one, throws the chat's error. */
  [Symbol.asyncIterator](): AsyncIterator<string> {
    return {
      next: () => {
        const delta = this.buffered.shift();
        if (delta !== undefined) return Promise.resolve({ value: delta, done: false });
        if (this.failure) return Promise.reject(this.failure);
        if (this.final) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
      },
      return: () => Promise.resolve({ value: undefined, done: true }),
    };
  }

  /** @internal True once ended or failed. */
  get finished(): boolean {
    return this.final !== undefined || this.failure !== undefined;
  }

  /** @internal The frame went out on a socket (or REST). */
  markSent(): void {
    if (this.statusValue === 'queued') this.statusValue = 'sent';
  }

  /** @internal Back to the queue: the socket closed before the server stored it. */
  markQueued(): void {
    if (this.statusValue === 'sent') this.statusValue = 'queued';
  }

  /** @internal The server stored it (`onAck` callbacks run once, however often it is re-sent). */
  ack(): void {
    if (this.finished || this.statusValue === 'acked' || this.statusValue === 'streaming') return;
    this.statusValue = 'acked';
    if (this.ackedOnce) return;
    this.ackedOnce = true;
    for (const cb of this.ackCbs) safe(cb);
  }

  /** @internal A streamed piece. */
  delta(delta: string): void {
    if (this.finished) return;
    this.statusValue = 'streaming';
    this.textValue += delta;
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve({ value: delta, done: false });
    else this.buffered.push(delta);
    for (const cb of this.deltaCbs) safe(() => cb(delta, this.textValue));
  }

  /**
   * @internal Back to the queue to be sent again with the same id (after a failed resume, a
   * retryable error or a passed answer deadline): the text starts over (the iterator keeps what it gave).
   */
  restart(): void {
    if (this.finished) return;
    this.textValue = '';
    this.statusValue = 'queued';
  }

  /** @internal The whole answer; replaces the deltas. */
  end(result: ChatResult): void {
    if (this.finished) return;
    this.final = result;
    this.textValue = result.text;
    this.statusValue = 'done';
    for (const waiter of this.waiters.splice(0)) waiter.resolve({ value: undefined, done: true });
    this.resolveResult(result);
    for (const cb of this.endCbs) safe(() => cb(result));
  }

  /** @internal The chat failed. */
  fail(error: PamError): void {
    if (this.finished) return;
    this.failure = error;
    this.statusValue = 'failed';
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
    this.rejectResult(error);
    for (const cb of this.errorCbs) safe(() => cb(error));
  }
}

function safe(fn: () => void): void {
  try {
    fn();
  } catch (error) {
    console.error('pam-client: a chat callback threw', error);
  }
}
