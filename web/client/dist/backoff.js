//! Full-jitter exponential backoff: attempt n waits a uniformly random time between the floor
//! and min(cap, base·2ⁿ), so a fleet of clients dropped by one restart does not come back in step.
/** Fills in the defaults (0.5–20 s, base 1 s) and keeps min ≤ base ≤ max. */
export function backoff(options = {}) {
    const minMs = Math.max(0, options.minMs ?? 500);
    const maxMs = Math.max(minMs, options.maxMs ?? 20_000);
    const baseMs = Math.min(maxMs, Math.max(minMs, options.baseMs ?? 1_000));
    return { minMs, maxMs, baseMs };
}
/** The largest wait attempt `attempt` (0-based) may draw: min(max, base·2^attempt). */
export function ceilingMs(b, attempt) {
    // 2^31 is far past any cap; clamping the exponent keeps the arithmetic finite.
    return Math.min(b.maxMs, b.baseMs * 2 ** Math.min(Math.max(0, attempt), 31));
}
/**
 * The wait before reconnect attempt `attempt` (0-based), in whole milliseconds, within
 * [minMs, ceilingMs(attempt)]. `random` returns a number in [0, 1) (default `Math.random`).
 */
export function delayMs(b, attempt, random = Math.random) {
    const ceiling = ceilingMs(b, attempt);
    const r = Math.min(Math.max(random(), 0), 1);
    return Math.round(b.minMs + r * (ceiling - b.minMs));
}
/**
 * The wait before re-send `attempt` (0-based) of a chat the server answered with a retryable
 * error: "equal jitter", uniformly within [max(minMs, ceiling/2), ceiling], ceiling =
 * {@link ceilingMs}. Unlike the reconnect's full jitter, the waits cannot all come out near the
 * floor, so a few re-sends are sure to span a known time (e.g. the ~15 s a crashed node's claim
 * on a chat lasts) while still spreading a fleet of clients apart.
 */
export function retryDelayMs(b, attempt, random = Math.random) {
    const ceiling = ceilingMs(b, attempt);
    const floor = Math.min(ceiling, Math.max(b.minMs, ceiling / 2));
    const r = Math.min(Math.max(random(), 0), 1);
    return Math.round(floor + r * (ceiling - floor));
}
