/** Backoff bounds in milliseconds. */
export interface BackoffOptions {
    /** Shortest wait (default 500 ms). */
    minMs?: number;
    /** Longest wait (default 20 000 ms). */
    maxMs?: number;
    /** The ceiling of attempt 0 (default 1 000 ms); it doubles per attempt up to `maxMs`. */
    baseMs?: number;
}
/** Resolved bounds. */
export interface Backoff {
    readonly minMs: number;
    readonly maxMs: number;
    readonly baseMs: number;
}
/** Fills in the defaults (0.5–20 s, base 1 s) and keeps min ≤ base ≤ max. */
export declare function backoff(options?: BackoffOptions): Backoff;
/** The largest wait attempt `attempt` (0-based) may draw: min(max, base·2^attempt). */
export declare function ceilingMs(b: Backoff, attempt: number): number;
/**
 * The wait before reconnect attempt `attempt` (0-based), in whole milliseconds, within
 * [minMs, ceilingMs(attempt)]. `random` returns a number in [0, 1) (default `Math.random`).
 */
export declare function delayMs(b: Backoff, attempt: number, random?: () => number): number;
/**
 * The wait before re-send `attempt` (0-based) of a chat the server answered with a retryable
 * error: "equal jitter", uniformly within [max(minMs, ceiling/2), ceiling], ceiling =
 * {@link ceilingMs}. Unlike the reconnect's full jitter, the waits cannot all come out near the
 * floor, so a few re-sends are sure to span a known time (e.g. the ~15 s a crashed node's claim
 * on a chat lasts) while still spreading a fleet of clients apart.
 */
export declare function retryDelayMs(b: Backoff, attempt: number, random?: () => number): number;
