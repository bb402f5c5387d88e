//! Bookkeeping shapes shared by the client and the dialect handlers (not part of the public API).
/** @internal A new chat's bookkeeping (nothing sent yet). */
export function newPendingChat(handle, message, sessionId, context, bytes) {
    return { handle, message, sessionId, context, bytes, sentOn: 0, acked: false, dropAnswer: false, order: 0, deadline: undefined, deadlineResent: false, retries: 0, retryTimer: undefined, notOn: 0 };
}
/** @internal Cancels a chat's deadline and retry timers (it finished, or the client stopped). */
export function clearChatTimers(clock, chat) {
    clock.clearTimeout(chat.deadline);
    clock.clearTimeout(chat.retryTimer);
    chat.deadline = undefined;
    chat.retryTimer = undefined;
}
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
/** @internal Fails (and forgets) the chats that match, cancelling their timers. */
export function failWhere(pending, clock, error, matches) {
    for (const chat of [...pending.values()]) {
        if (!matches(chat))
            continue;
        pending.delete(chat.handle.id);
        clearChatTimers(clock, chat);
        chat.handle.fail(error);
    }
}
/**
 * @internal Socket `gen` closed: its unacked chats go back to the queue (v2 re-sends them with
 * the same id; legacy, which has no ids or resume, re-sends whatever was unanswered).
 */
export function requeue(pending, gen, legacy) {
    for (const chat of [...pending.values()]) {
        if (chat.sentOn !== gen || (chat.acked && !legacy))
            continue;
        if (chat.dropAnswer)
            pending.delete(chat.handle.id);
        chat.sentOn = 0;
        chat.handle.markQueued();
    }
}
/** @internal Stands in for a socket that never opened (no token, constructor threw). */
export function closedSocket() {
    return { readyState: 3, send() { }, close() { }, onopen: null, onmessage: null, onclose: null, onerror: null };
}
