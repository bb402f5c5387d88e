/** A listener for payload `T`. */
export type Listener<T> = (payload: T) => void;
/** Typed events keyed by name; payloads from the map `E`. */
export declare class Emitter<E> {
    private readonly listeners;
    /** Adds a listener; returns a function that removes it. */
    on<K extends keyof E>(event: K, listener: Listener<E[K]>): () => void;
    /** Adds a listener that runs once. */
    once<K extends keyof E>(event: K, listener: Listener<E[K]>): () => void;
    /** Removes a listener. */
    off<K extends keyof E>(event: K, listener: Listener<E[K]>): void;
    /** Calls every listener of `event`; a listener's exception is reported, not rethrown. */
    protected emit<K extends keyof E>(event: K, payload: E[K]): void;
}
