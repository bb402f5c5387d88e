//! The one error type the SDK hands out: a server `error_code` (or an SDK code) and plain words.

/**
 * SDK-side codes next to the server's `ErrorCode`s. `NO_ANSWER`: a v2 chat's answer deadline
 * passed twice (it was sent again in between) with no answer (retryable).
 */
export type ClientErrorCode = 'CANCELLED' | 'CLOSED' | 'NETWORK' | 'NOT_CONNECTED' | 'REST_FAILED' | 'QUEUE_FULL' | 'NO_ANSWER';

/** A failed chat or request. `code` is a server `error_code` or a {@link ClientErrorCode}. */
export class PamError extends Error {
  /** The server's `error_code` (`RATE_LIMIT_EXCEEDED`, …) or an SDK code (`CANCELLED`, …). */
  readonly code: string;
  /** True when sending the same message again later may work. */
  readonly retryable: boolean;
  /** The HTTP status, for REST failures. */
  readonly status?: number;

  constructor(code: string, message: string, retryable = false, status?: number) {
    super(message);
    this.name = 'PamError';
    this.code = code;
    this.retryable = retryable;
    if (status !== undefined) this.status = status;
  }
}
