//! The REST fallback: `POST /api/v1/pam/chat` with the client message id as `Idempotency-Key`
//! (a retry returns the stored answer), and legacy `dismiss` over REST.
import { PamError } from './errors.js';
/**
 * Sends one chat. Resolves with the answer; throws {@link PamError} with the server's `error`
 * code and HTTP status (`retryable` for 408/429/5xx and network failures).
 */
export async function restChat(fetchFn, httpBase, token, chat) {
    const body = { message: chat.message };
    if (chat.sessionId !== undefined)
        body.session_id = chat.sessionId;
    if (chat.context !== undefined)
        body.context = chat.context;
    const response = await post(fetchFn, `${httpBase}/api/v1/pam/chat`, token, body, { 'Idempotency-Key': chat.id });
    const answer = (await response.json());
    const result = {
        id: chat.id,
        text: answer.response,
        uiActions: answer.actions ?? [],
        via: 'rest',
        cached: false,
    };
    if (answer.session_id !== undefined)
        result.sessionId = answer.session_id;
    if (answer.processing_time_ms !== undefined)
        result.latencyMs = answer.processing_time_ms;
    return result;
}
/** Legacy `dismiss`: `POST /api/v1/pam/internal/dismiss-timer` (the route today's app calls). */
export async function restDismissTimer(fetchFn, httpBase, token, timerId, userId) {
    await post(fetchFn, `${httpBase}/api/v1/pam/internal/dismiss-timer`, token, { timer_id: timerId, user_id: userId }, {});
}
async function post(fetchFn, url, token, body, extra) {
    let response;
    try {
        response = await fetchFn(url, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}`, ...extra },
            body: JSON.stringify(body),
        });
    }
    catch (error) {
        throw new PamError('NETWORK', `could not reach the server: ${String(error)}`, true);
    }
    if (response.ok)
        return response;
    let code = 'REST_FAILED';
    let message = `the server answered ${response.status}`;
    try {
        const parsed = JSON.parse(await response.text());
        if (typeof parsed.error === 'string')
            code = parsed.error;
        if (typeof parsed.message === 'string')
            message = parsed.message;
    }
    catch {
        // Not JSON (a proxy's page): keep the status as the message.
    }
    const retryable = response.status === 408 || response.status === 429 || response.status >= 500;
    throw new PamError(code, message, retryable, response.status);
}
