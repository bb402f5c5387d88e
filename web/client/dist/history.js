//! Conversation history over REST: `GET /api/v1/pam/conversations` (the user's conversations,
//! most recently active first) and `GET /api/v1/pam/conversations/{session_id}/messages`
//! (one conversation's messages, newest first, a page at a time), with the same bearer token
//! the sockets use. Field names are camelCased like the rest of the SDK.
import { PamError } from './errors.js';
import { send } from './rest.js';
/** @internal `GET …/conversations/{sessionId}/messages`. */
export async function fetchHistory(ctx, sessionId, options = {}) {
    const query = new URLSearchParams();
    if (options.before !== undefined)
        query.set('before', options.before);
    if (options.limit !== undefined)
        query.set('limit', String(options.limit));
    const search = query.toString();
    const suffix = search ? `?${search}` : '';
    const body = (await authorizedGet(ctx, `/api/v1/pam/conversations/${encodeURIComponent(sessionId)}/messages${suffix}`));
    return { sessionId: body.session_id ?? sessionId, messages: (body.messages ?? []).map(message), nextBefore: body.next_before ?? null };
}
/** @internal `GET /api/v1/pam/conversations`. */
export async function fetchConversations(ctx, options = {}) {
    const suffix = options.limit !== undefined ? `?limit=${encodeURIComponent(String(options.limit))}` : '';
    const body = (await authorizedGet(ctx, `/api/v1/pam/conversations${suffix}`));
    return (body.conversations ?? []).map((c) => ({
        sessionId: c.session_id,
        title: c.title ?? null,
        messageCount: c.message_count ?? 0,
        lastActivity: c.last_activity ?? null,
        createdAt: c.created_at ?? null,
        preview: c.preview ?? null,
    }));
}
function message(wire) {
    const out = {
        id: wire.id,
        role: wire.role,
        content: wire.content,
        createdAt: wire.created_at ?? null,
        clientMsgId: wire.client_msg_id ?? null,
    };
    if (wire.model !== undefined)
        out.model = wire.model;
    if (wire.source !== undefined)
        out.source = wire.source;
    if (wire.ui_actions !== undefined)
        out.uiActions = wire.ui_actions;
    return out;
}
/** A GET with a current token; a 401 asks `getToken('expired')` for a fresh one, once. */
async function authorizedGet(ctx, path) {
    if (!ctx.fetch)
        throw new PamError('NETWORK', 'no fetch is available to read history');
    let reason = 'connect';
    for (;;) {
        const token = await ctx.getToken(reason);
        try {
            const response = await send(ctx.fetch, `${ctx.httpBase}${path}`, { method: 'GET', headers: { Authorization: `Bearer ${token}` } });
            return await response.json();
        }
        catch (error) {
            if (error instanceof PamError && error.status === 401 && reason === 'connect') {
                reason = 'expired';
                continue;
            }
            throw error;
        }
    }
}
