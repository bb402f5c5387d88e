import type { EnvironmentLike } from './types.js';
/** What the client does on each signal. */
export interface EnvironmentHandlers {
    online(): void;
    offline(): void;
    /** The page became visible again. */
    visible(): void;
}
/** The environment to watch: the given one, or `globalThis` when it has `addEventListener`. */
export declare function pickEnvironment(given: EnvironmentLike | null | undefined): EnvironmentLike | null;
/** Subscribes to the signals; returns the function that unsubscribes. */
export declare function watchEnvironment(env: EnvironmentLike, handlers: EnvironmentHandlers): () => void;
