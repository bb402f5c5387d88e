//! The REST fallback: `POST /api/v1/pam/chat` with the client message id as `Idempotency-Key`
//! (a retry returns the stored answer), and legacy `dismiss` over REST.

import { delayMs, type Backoff } from './backoff.js';
import type { ChatHandle } from './chat.js';
import type { Clock } from './clock.js';
import { PamError } from './errors.js';
import type { ChatResult, FetchLike, PamClientOptions, TokenReason, UiAction } from './types.js';

/** @internal What the REST calls need from the client. */
export interface RestContext {
  fetch: FetchLike | undefined;
  httpBase: string;
  clock: Clock;
  backoff: Backoff;
  random: () => number;
  getToken: PamClientOptions['getToken'];
}

/** @internal A queued chat as the REST path sees it. */
export interface RestChat {
  handle: ChatHandle;
  message: string;
  sessionId: string | undefined;
  context: Record<string, unknown> | undefined;
  sentOn: number;
}

/**
 * @internal Sends a queued chat over REST: retried with backoff (same `Idempotency-Key`, so it is
 * answered once) on network errors, 408/429/5xx, up to 5 tries; a 401 asks for a fresh token once.
 * Ends or fails the chat's handle, then calls `forget`.
 */
export async function sendChatOverRest(ctx: RestContext, chat: RestChat, forget: () => void): Promise<void> {
  if (!ctx.fetch) return;
  chat.sentOn = -1;
  chat.handle.markSent();
  let reason: TokenReason = 'connect';
  for (let attempt = 0; ; attempt++) {
    try {
      const token = await ctx.getToken(reason);
      const request = { id: chat.handle.id, message: chat.message, sessionId: chat.sessionId, context: chat.context };
      const result = await restChat(ctx.fetch, ctx.httpBase, token, request);
      forget();
      chat.handle.end(result);
      return;
    } catch (thrown) {
      const error = thrown instanceof PamError ? thrown : new PamError('NETWORK', String(thrown), true);
      const expired = error.status === 401 && reason !== 'expired';
      if (expired) reason = 'expired';
      if (!expired && (!error.retryable || attempt >= 4 || chat.handle.finished)) {
        forget();
        chat.handle.fail(error);
        return;
      }
      const wait = expired ? 0 : delayMs(ctx.backoff, attempt, ctx.random);
      await new Promise<void>((resolve) => ctx.clock.setTimeout(resolve, wait));
    }
  }
}

/** @internal Legacy `dismiss` over REST with a current token. */
export async function dismissTimerOverRest(ctx: RestContext, timerId: string, userId: string): Promise<void> {
  if (!ctx.fetch) return;
  const token = await ctx.getToken('connect');
  await restDismissTimer(ctx.fetch, ctx.httpBase, token, timerId, userId);
}

/** The 200 body of `POST /api/v1/pam/chat`. */
export interface RestChatResponse {
  response: string;
  actions?: UiAction[];
  session_id?: string;
  conversation_id?: string;
  message_id?: string;
  processing_time_ms?: number;
  timestamp?: string;
}

/** One chat to send over REST. */
export interface RestChatRequest {
  id: string;
  message: string;
  sessionId?: string | undefined;
  context?: Record<string, unknown> | undefined;
}

/**
 * Sends one chat. Resolves with the answer; throws {@link PamError} with the server's `error`
 * code and HTTP status (`retryable` for 408/429/5xx and network failures).
 */
export async function restChat(fetchFn: FetchLike, httpBase: string, token: string, chat: RestChatRequest): Promise<ChatResult> {
  const body: Record<string, unknown> = { message: chat.message };
  if (chat.sessionId !== undefined) body.session_id = chat.sessionId;
  if (chat.context !== undefined) body.context = chat.context;
  const response = await post(fetchFn, `${httpBase}/api/v1/pam/chat`, token, body, { 'Idempotency-Key': chat.id });
  const answer = (await response.json()) as RestChatResponse;
  const result: ChatResult = {
    id: chat.id,
    text: answer.response,
    uiActions: answer.actions ?? [],
    via: 'rest',
    cached: false,
  };
  if (answer.session_id !== undefined) result.sessionId = answer.session_id;
  if (answer.processing_time_ms !== undefined) result.latencyMs = answer.processing_time_ms;
  return result;
}

/** Legacy `dismiss`: `POST /api/v1/pam/internal/dismiss-timer` (the route today's app calls). */
export async function restDismissTimer(fetchFn: FetchLike, httpBase: string, token: string, timerId: string, userId: string): Promise<void> {
  await post(fetchFn, `${httpBase}/api/v1/pam/internal/dismiss-timer`, token, { timer_id: timerId, user_id: userId }, {});
}

function post(fetchFn: FetchLike, url: string, token: string, body: unknown, extra: Record<string, string>) {
  const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${token}`, ...extra };
  return send(fetchFn, url, { method: 'POST', headers, body: JSON.stringify(body) });
}

/**
 * @internal One request; resolves with the 2xx response, throws {@link PamError} with the
 * server's `error` code and HTTP status otherwise (`retryable` for 408/429/5xx and network failures).
 */
export async function send(fetchFn: FetchLike, url: string, init: Parameters<FetchLike>[1]) {
  let response;
  try {
    response = await fetchFn(url, init);
  } catch (error) {
    throw new PamError('NETWORK', `could not reach the server: ${String(error)}`, true);
  }
  if (response.ok) return response;
  let code = 'REST_FAILED';
  let message = `the server answered ${response.status}`;
  try {
    const parsed = JSON.parse(await response.text()) as { error?: string; message?: string };
    if (typeof parsed.error === 'string') code = parsed.error;
    if (typeof parsed.message === 'string') message = parsed.message;
  } catch {
    // Not JSON (a proxy's page): keep the status as the message.
  }
  const retryable = response.status === 408 || response.status === 429 || response.status >= 500;
  throw new PamError(code, message, retryable, response.status);
}
