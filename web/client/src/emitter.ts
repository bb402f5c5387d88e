//! A minimal typed event emitter (no dependency): `on` returns its own unsubscribe function, and
//! a throwing listener cannot break the client or the other listeners.

/** A listener for payload `T`. */
export type Listener<T> = (payload: T) => void;

/** Typed events keyed by name; payloads from the map `E`. */
export class Emitter<E> {
  private readonly listeners = new Map<keyof E, Set<Listener<never>>>();

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof E>(event: K, listener: Listener<E[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  /** Adds a listener that runs once. */
  once<K extends keyof E>(event: K, listener: Listener<E[K]>): () => void {
    const off = this.on(event, (payload) => {
      off();
      listener(payload);
    });
    return off;
  }

  /** Removes a listener. */
  off<K extends keyof E>(event: K, listener: Listener<E[K]>): void {
    this.listeners.get(event)?.delete(listener as Listener<never>);
  }

  /** Calls every listener of `event`; a listener's exception is reported, not rethrown. */
  protected emit<K extends keyof E>(event: K, payload: E[K]): void {
    for (const listener of [...(this.listeners.get(event) ?? [])]) {
      try {
        (listener as Listener<E[K]>)(payload);
      } catch (error) {
        // The app's bug must not take the connection down; surface it where developers look.
        console.error(`pam-client: a '${String(event)}' listener threw`, error);
      }
    }
  }
}
