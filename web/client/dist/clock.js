//! Time as the SDK sees it: injectable so unit tests can drive backoff, heartbeats and token
//! refresh with a fake clock instead of waiting on the wall clock.
/** The platform clock (`Date.now`, `setTimeout`, `clearTimeout`). */
export const systemClock = {
    now: () => Date.now(),
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (handle) => clearTimeout(handle),
};
