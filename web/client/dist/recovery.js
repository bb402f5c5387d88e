//! Crash recovery for v2 chats (the SDK side of the "after a node crash" contract): every chat in
//! flight has an answer deadline, a retryable `error` about a chat sends it again (same id) after
//! a backoff, and a 4504 right after a socket was lost uncleanly is retried, not final. The
//! server answers a repeated id at most once (a stored answer is replayed), so a re-send is safe.
import { retryDelayMs } from './backoff.js';
import { PamError } from './errors.js';
/** Default of `answerDeadlineMs`: a chat in flight this long with no sign of progress is sent again once, then fails. */
export const DEFAULT_ANSWER_DEADLINE_MS = 60_000;
/** Default of `chatRetries`: re-sends after retryable `error`s per chat before it fails. */
export const DEFAULT_CHAT_RETRIES = 5;
/**
 * Default of `chatRetryBackoff`. With equal jitter ({@link retryDelayMs}) the five re-sends wait
 * 1–2, 2–4, 4–8, 8–16 and 8–16 s: 23–46 s in all, past the ~15 s (`PAM_NODE_TTL_MS`) for which a
 * crashed node's claim on a chat makes another node answer "still being answered on another node".
 */
export const DEFAULT_CHAT_RETRY_BACKOFF = { minMs: 1_000, baseMs: 2_000, maxMs: 16_000 };
/** Default of `tooManyConnectionsRetryMs`: how long after an unclean loss a 4504 is retried. */
export const DEFAULT_TOO_MANY_CONNECTIONS_RETRY_MS = 30_000;
/** Close code 4504 `too_many_connections` (the per-user socket cap). */
export const TOO_MANY_CONNECTIONS = 4504;
/**
 * Retryable codes the SDK does not re-send by itself: every automatic re-send of a rate-limited
 * chat would be one more violation, and five close the socket with 4429. The app decides.
 */
const LEFT_TO_THE_APP = new Set(['RATE_LIMIT_EXCEEDED']);
/**
 * True for a close that lost the socket rather than ended it on purpose: 1006 (no close frame —
 * the TCP connection or the node died; also every socket the client dropped itself because the
 * server went silent) or 1005 (a close frame without a status). The node's count of that socket
 * against the per-user cap may outlive it by up to `PAM_NODE_TTL_MS`.
 */
export function isUncleanLoss(code) {
    return code === 1006 || code === 1005;
}
/** @internal A v2 chat went out on the live socket now: it joins the send order and its deadline starts. */
export function sentNow(client, chat) {
    chat.order = ++client.sendOrder;
    armDeadline(client, chat);
}
/**
 * @internal The socket is live and not resuming: every chat it owes an answer for (sent on it, or
 * acked on a stream it resumed) has a running deadline. Chats waiting out a retry have none.
 */
export function armInFlight(client) {
    for (const chat of client.pending.values()) {
        if (chat.deadline !== undefined || chat.retryTimer !== undefined || chat.handle.finished)
            continue;
        if (chat.sentOn === client.gen || (chat.acked && chat.sentOn > 0))
            armDeadline(client, chat);
    }
}
/**
 * @internal Progress on `chat` (its `ack`, a `chat_delta`, its `chat_end` or `error`): it and every
 * chat sent after it get a full deadline again — a connection's chats are answered one after the
 * other, so the ones behind a long answer are not timed out while it streams.
 */
export function progressed(client, chat) {
    for (const other of client.pending.values()) {
        if (other.deadline !== undefined && other.order >= chat.order)
            armDeadline(client, other);
    }
}
/** @internal The socket is gone: deadlines wait for the next live socket (time offline does not count). */
export function pauseDeadlines(client) {
    for (const chat of client.pending.values()) {
        client.clock.clearTimeout(chat.deadline);
        chat.deadline = undefined;
    }
}
function armDeadline(client, chat) {
    client.clock.clearTimeout(chat.deadline);
    chat.deadline = undefined;
    const ms = client.answerDeadlineMs;
    if (!(ms > 0))
        return;
    const gen = client.gen;
    chat.deadline = client.clock.setTimeout(() => deadlinePassed(client, chat, gen), ms);
}
/** First time: the chat is sent again (same id). Second time: it fails with `NO_ANSWER`. */
function deadlinePassed(client, chat, gen) {
    chat.deadline = undefined;
    if (gen !== client.gen || client.pending.get(chat.handle.id) !== chat || chat.handle.finished)
        return;
    const ms = client.answerDeadlineMs;
    if (chat.deadlineResent) {
        client.settle(chat.handle.id);
        chat.handle.fail(new PamError('NO_ANSWER', `no answer within ${ms} ms, even after sending the chat again`, true));
        return;
    }
    chat.deadlineResent = true;
    backToQueue(chat);
    client.fire('chat_retry', { id: chat.handle.id, reason: 'deadline', attempt: 1, delayMs: 0 });
    client.flush(); // Now on this socket; or, when there is none, on the next live one.
}
/**
 * @internal A retryable `error` about `chat` arrived on socket `gen` (`resuming`: as part of a
 * resume's replay). Schedules a re-send with the same id after a backoff and returns true; false
 * when the error is not one to re-send or the chat's re-sends are used up (the caller fails it).
 */
export function retryAfterError(client, chat, code, gen, resuming) {
    if (LEFT_TO_THE_APP.has(code) || chat.retries >= client.chatRetries)
        return false;
    const wasAcked = chat.acked;
    const attempt = chat.retries++;
    client.clock.clearTimeout(chat.deadline);
    chat.deadline = undefined;
    client.clock.clearTimeout(chat.retryTimer);
    backToQueue(chat);
    // Refused live, before any ack, by a node that is draining (it closes with 1012 once its running
    // turns are done): sending it there again would only be refused again. The next socket gets it.
    // (The "node answering this chat stopped" errors of a crash come in the resume's replay.)
    if (code === 'SERVICE_RESTART' && !wasAcked && !resuming)
        chat.notOn = gen;
    const delayMs = retryDelayMs(client.chatRetryBackoff, attempt, client.random);
    chat.retryTimer = client.clock.setTimeout(() => {
        chat.retryTimer = undefined;
        client.flush();
    }, delayMs);
    client.fire('chat_retry', { id: chat.handle.id, reason: 'error', code, attempt: chat.retries, delayMs });
    return true;
}
/** @internal May `chat` go out on socket `gen` now? Not while it waits out a retry, nor on a draining socket that refused it. */
export function mayResend(chat, gen) {
    return chat.retryTimer === undefined && chat.notOn !== gen;
}
/** Back to the queue, to be sent again with the same id: its text starts over. */
function backToQueue(chat) {
    chat.acked = false;
    chat.sentOn = 0;
    chat.handle.restart();
}
