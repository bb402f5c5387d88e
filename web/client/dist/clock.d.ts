/** An opaque timer handle from {@link Clock.setTimeout}. */
export type TimerHandle = unknown;
/** The timers and time source the client uses (default: the platform's). */
export interface Clock {
    /** Milliseconds since the Unix epoch. */
    now(): number;
    /** Runs `fn` once after `ms` milliseconds. */
    setTimeout(fn: () => void, ms: number): TimerHandle;
    /** Cancels a timer from {@link Clock.setTimeout}; unknown handles are ignored. */
    clearTimeout(handle: TimerHandle): void;
}
/** The platform clock (`Date.now`, `setTimeout`, `clearTimeout`). */
export declare const systemClock: Clock;
