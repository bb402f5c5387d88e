//! The one error type the SDK hands out: a server `error_code` (or an SDK code) and plain words.
/** A failed chat or request. `code` is a server `error_code` or a {@link ClientErrorCode}. */
export class PamError extends Error {
    /** The server's `error_code` (`RATE_LIMIT_EXCEEDED`, …) or an SDK code (`CANCELLED`, …). */
    code;
    /** True when sending the same message again later may work. */
    retryable;
    /** The HTTP status, for REST failures. */
    status;
    constructor(code, message, retryable = false, status) {
        super(message);
        this.name = 'PamError';
        this.code = code;
        this.retryable = retryable;
        if (status !== undefined)
            this.status = status;
    }
}
