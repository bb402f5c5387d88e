//! Conversation history over REST: `GET /api/v1/pam/conversations` (the user's conversations,
//! most recently active first) and `GET /api/v1/pam/conversations/{session_id}/messages`
//! (one conversation's messages, newest first, a page at a time), with the same bearer token
//! the sockets use. Field names are camelCased like the rest of the SDK.

import { PamError } from './errors.js';
import { send, type RestContext } from './rest.js';
import type { TokenReason, UiAction } from './types.js';

/** One of the user's conversations. */
export interface ConversationSummary {
  /** The conversation: what `chat(…, { sessionId })` and `history(sessionId)` take. */
  sessionId: string;
  title: string | null;
  messageCount: number;
  /** RFC 3339 times. */
  lastActivity: string | null;
  createdAt: string | null;
  /** The first 120 characters of its newest message. */
  preview: string | null;
}

/** A stored message of a conversation. */
export interface HistoryMessage {
  /** The stored message's id: pass it as `before` to read what came earlier. */
  id: string;
  role: 'user' | 'assistant' | 'system';
  content: string;
  /** RFC 3339. */
  createdAt: string | null;
  /** The chat id (`chat(…, { id })`) the message belongs to, when known. */
  clientMsgId: string | null;
  /** Assistant messages: the model and provider that answered, and its actions. */
  model?: string;
  source?: string;
  uiActions?: UiAction[];
}

/** One page of a conversation, newest message first. */
export interface HistoryPage {
  sessionId: string;
  messages: HistoryMessage[];
  /** The `before` of the next (older) page; `null` when this page reaches the start. */
  nextBefore: string | null;
}

/** Which page of {@link PamClient.history} to read. */
export interface HistoryOptions {
  /** Only messages older than this message id (a page's `nextBefore`). */
  before?: string;
  /** Messages per page, 1–100 (the server's default is 50). */
  limit?: number;
}

/** How many conversations {@link PamClient.conversations} lists. */
export interface ConversationsOptions {
  /** 1–100 (the server's default is 50). */
  limit?: number;
}

interface WireMessage {
  id: string;
  role: HistoryMessage['role'];
  content: string;
  created_at?: string | null;
  client_msg_id?: string | null;
  model?: string;
  source?: string;
  ui_actions?: UiAction[];
}

interface WireConversation {
  session_id: string;
  title?: string | null;
  message_count?: number;
  last_activity?: string | null;
  created_at?: string | null;
  preview?: string | null;
}

/** @internal `GET …/conversations/{sessionId}/messages`. */
export async function fetchHistory(ctx: RestContext, sessionId: string, options: HistoryOptions = {}): Promise<HistoryPage> {
  const query = new URLSearchParams();
  if (options.before !== undefined) query.set('before', options.before);
  if (options.limit !== undefined) query.set('limit', String(options.limit));
  const search = query.toString();
  const suffix = search ? `?${search}` : '';
  const body = (await authorizedGet(ctx, `/api/v1/pam/conversations/${encodeURIComponent(sessionId)}/messages${suffix}`)) as {
    session_id?: string;
    messages?: WireMessage[];
    next_before?: string | null;
  };
  return { sessionId: body.session_id ?? sessionId, messages: (body.messages ?? []).map(message), nextBefore: body.next_before ?? null };
}

/** @internal `GET /api/v1/pam/conversations`. */
export async function fetchConversations(ctx: RestContext, options: ConversationsOptions = {}): Promise<ConversationSummary[]> {
  const suffix = options.limit !== undefined ? `?limit=${encodeURIComponent(String(options.limit))}` : '';
  const body = (await authorizedGet(ctx, `/api/v1/pam/conversations${suffix}`)) as { conversations?: WireConversation[] };
  return (body.conversations ?? []).map((c) => ({
    sessionId: c.session_id,
    title: c.title ?? null,
    messageCount: c.message_count ?? 0,
    lastActivity: c.last_activity ?? null,
    createdAt: c.created_at ?? null,
    preview: c.preview ?? null,
  }));
}

function message(wire: WireMessage): HistoryMessage {
  const out: HistoryMessage = {
    id: wire.id,
    role: wire.role,
    content: wire.content,
    createdAt: wire.created_at ?? null,
    clientMsgId: wire.client_msg_id ?? null,
  };
  if (wire.model !== undefined) out.model = wire.model;
  if (wire.source !== undefined) out.source = wire.source;
  if (wire.ui_actions !== undefined) out.uiActions = wire.ui_actions;
  return out;
}

/** A GET with a current token; a 401 asks `getToken('expired')` for a fresh one, once. */
async function authorizedGet(ctx: RestContext, path: string): Promise<unknown> {
  if (!ctx.fetch) throw new PamError('NETWORK', 'no fetch is available to read history');
  let reason: TokenReason = 'connect';
  for (;;) {
    const token = await ctx.getToken(reason);
    try {
      const response = await send(ctx.fetch, `${ctx.httpBase}${path}`, { method: 'GET', headers: { Authorization: `Bearer ${token}` } });
      return await response.json();
    } catch (error) {
      if (error instanceof PamError && error.status === 401 && reason === 'connect') {
        reason = 'expired';
        continue;
      }
      throw error;
    }
  }
}
