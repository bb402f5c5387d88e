//! A minimal typed event emitter (no dependency): `on` returns its own unsubscribe function, and
//! a throwing listener cannot break the client or the other listeners.
/** Typed events keyed by name; payloads from the map `E`. */
export class Emitter {
    listeners = new Map();
    /** Adds a listener; returns a function that removes it. */
    on(event, listener) {
        let set = this.listeners.get(event);
        if (!set)
            this.listeners.set(event, (set = new Set()));
        set.add(listener);
        return () => this.off(event, listener);
    }
    /** Adds a listener that runs once. */
    once(event, listener) {
        const off = this.on(event, (payload) => {
            off();
            listener(payload);
        });
        return off;
    }
    /** Removes a listener. */
    off(event, listener) {
        this.listeners.get(event)?.delete(listener);
    }
    /** Calls every listener of `event`; a listener's exception is reported, not rethrown. */
    emit(event, payload) {
        for (const listener of [...(this.listeners.get(event) ?? [])]) {
            try {
                listener(payload);
            }
            catch (error) {
                // The app's bug must not take the connection down; surface it where developers look.
                console.error(`pam-client: a '${String(event)}' listener threw`, error);
            }
        }
    }
}
