//! Bookkeeping shapes shared by the client and the dialect handlers (not part of the public API).
/** @internal Stops a socket's events from reaching the client (it is being replaced). */
export function detach(ws) {
    ws.onopen = ws.onmessage = ws.onerror = null;
    ws.onclose = null;
}
/** @internal A v4-shaped uuid from `random`, where `crypto.randomUUID` is missing. */
export function fallbackId(random) {
    const hex = (n) => Math.floor(random() * 16 ** n).toString(16).padStart(n, '0');
    return `${hex(8)}-${hex(4)}-4${hex(3)}-${(8 + Math.floor(random() * 4)).toString(16)}${hex(3)}-${hex(12)}`;
}
