//! The public types of the SDK: options, events and results. Wire frames come from the
//! generated files (docs/schema), re-exported here under stable names.

import type { Backoff, BackoffOptions } from './backoff.js';
import type { Clock } from './clock.js';
import type { ErrorCode } from './generated/error-codes.js';
import type { ProactiveAlert, ResumeFailure, TimerExpired, UiAction } from './generated/v2-server.js';

export type { ChatEnd, ProactiveAlert, AlertContent, AlertPriority, ResumeFailure, TimerExpired, TimerNotification, UiAction, V2ServerFrame, Welcome } from './generated/v2-server.js';
export type { V2ClientFrame, V2Chat } from './generated/v2-client.js';
export type { LegacyServerFrame, ChatResponse, ConnectionFrame } from './generated/legacy-server.js';
export type { LegacyClientFrame } from './generated/legacy-client.js';
export type { ErrorCode } from './generated/error-codes.js';
export type { Backoff, BackoffOptions, Clock };

/**
 * An event handler slot. The parameter is `any` on purpose: the DOM's, Node's and `ws`'s event
 * classes differ, and the client reads only `data` (message) and `code`/`reason` (close).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type SocketHandler = ((event: any) => void) | null;

/** The WebSocket surface the client needs (the browser's, Node ≥ 22's, or `ws`). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  /** Called on open. */
  onopen: SocketHandler;
  /** Called with `{ data }` per message (a string, or bytes of UTF-8 JSON). */
  onmessage: SocketHandler;
  /** Called with `{ code, reason }` once closed. */
  onclose: SocketHandler;
  /** Called on an error (a close follows). */
  onerror: SocketHandler;
}

/** A WebSocket constructor (`globalThis.WebSocket` by default). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** The `fetch` surface the client needs (`globalThis.fetch` by default). */
export type FetchLike = (
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string },
) => Promise<{ status: number; ok: boolean; json(): Promise<unknown>; text(): Promise<string> }>;

/** Why `getToken` is called: for a new socket, before an expiry (`auth_refresh`), after a 4401/401. */
export type TokenReason = 'connect' | 'expiring' | 'expired';

/** Browser globals the client listens to (`online`, `offline`, `visibilitychange`); absent in Node. */
export interface EnvironmentLike {
  addEventListener(type: string, listener: () => void): void;
  removeEventListener(type: string, listener: () => void): void;
  navigator?: { onLine?: boolean };
  document?: { visibilityState?: string; addEventListener?(type: string, listener: () => void): void; removeEventListener?(type: string, listener: () => void): void };
}

/** Which wire protocol to speak. */
export type Dialect = 'v2' | 'legacy';

/** Options of {@link PamClient}. */
export interface PamClientOptions {
  /** The gateway's base URL, `https://…` or `wss://…` (a path prefix is kept). */
  url: string;
  /** The user's uuid: required for `legacy` (it is in the socket path), unused by v2 sockets. */
  userId?: string;
  /** Returns a current access token (JWT); called for each socket, before expiry and after 4401. */
  getToken: (reason: TokenReason) => string | Promise<string>;
  /** `v2` (default) or `legacy` (today's app protocol: no ids, resume or streaming). */
  dialect?: Dialect;
  /** WebSocket constructor (default `globalThis.WebSocket`). */
  WebSocket?: WebSocketConstructor;
  /** fetch (default `globalThis.fetch`), for the REST fallback and legacy `dismiss`. */
  fetch?: FetchLike;
  /** Timers (default the platform's). */
  clock?: Clock;
  /** Uniform random in [0, 1) for backoff jitter (default `Math.random`). */
  random?: () => number;
  /** Reconnect backoff bounds (default full jitter, 0.5–20 s). */
  backoff?: BackoffOptions;
  /**
   * Failed socket attempts, none of which ever reached `welcome`, after which chats go over
   * `POST /api/v1/pam/chat` instead (default 3; 0 = never fall back). Sockets keep being retried.
   */
  restFallbackAfter?: number;
  /** A socket that has not reached `welcome`/`connection` by then is dropped (default 10 000 ms). */
  connectTimeoutMs?: number;
  /** Legacy: client ping period (default 15 000 ms; 3 missed pongs drop the socket). */
  legacyPingMs?: number;
  /** Legacy: a chat unanswered this long is also sent over REST, as today's app does (default 30 000 ms; 0 = never). */
  legacyAnswerTimeoutMs?: number;
  /** Browser globals for online/offline/visibility (default `globalThis` when it has them; `null` = none). */
  environment?: EnvironmentLike | null;
  /** Chats waiting for an answer (queued or running) before `chat()` fails with `QUEUE_FULL` (default 100). */
  maxQueued?: number;
  /**
   * Bytes of the chats waiting for an answer (message as UTF-8 plus context as JSON) before
   * `chat()` fails with `QUEUE_FULL` (default 1 MiB): an offline page must not hold without end.
   */
  maxQueuedBytes?: number;
  /** Makes client message ids (default `crypto.randomUUID`). */
  newId?: () => string;
  /**
   * v2: a chat in flight on a live socket this long with no `ack`, `chat_delta`, `chat_end` or
   * `error` for it or a chat sent before it is sent again with its id, once; the next time it
   * passes, the chat fails with `NO_ANSWER` (default 60 000 ms; 0 = no deadline). Time without a
   * live socket does not count: the deadline starts again when the chat is back on one.
   */
  answerDeadlineMs?: number;
  /**
   * v2: how often a chat is sent again (same id) after an `error` about it with `retryable: true`
   * (`LLM_UNAVAILABLE`, `SERVICE_RESTART`, `STORAGE_UNAVAILABLE`, …; not `RATE_LIMIT_EXCEEDED`)
   * before that error fails it (default 5; 0 = never).
   */
  chatRetries?: number;
  /**
   * v2: the waits before those re-sends; re-send n waits uniformly within [max(min, c/2), c],
   * c = min(max, base·2ⁿ) (default `{ minMs: 1000, baseMs: 2000, maxMs: 16000 }`: 1–2, 2–4,
   * 4–8, 8–16, 8–16 s).
   */
  chatRetryBackoff?: BackoffOptions;
  /**
   * A 4504 (`too_many_connections`) within this long after a live socket was lost uncleanly
   * (1006/1005, or dropped by the client because the server went silent) is retried with the
   * reconnect backoff: a crashed node's sockets count against the per-user cap for up to
   * `PAM_NODE_TTL_MS` (15 s). Later, or with no such loss, 4504 stops the client (default 30 000 ms; 0 = always stop).
   */
  tooManyConnectionsRetryMs?: number;
}

/** Connection states. */
export type ConnectionState = 'idle' | 'connecting' | 'live' | 'reconnecting' | 'offline' | 'stopped';

/** Options of {@link PamClient.chat}. */
export interface ChatOptions {
  /** The conversation (`default` when absent); `^[A-Za-z0-9_-]{1,100}$`. */
  sessionId?: string;
  /** Extra context for this chat (merged over the socket's). */
  context?: Record<string, unknown>;
  /** The client message id (default a fresh uuid); reuse it only to retry the same message. */
  id?: string;
}

/** The answer to one chat. `text` is the full answer; it replaces whatever the deltas said. */
export interface ChatResult {
  /** The client message id. */
  id: string;
  /** The whole answer. */
  text: string;
  /** Actions the app should take (reload a list, open the map). */
  uiActions: UiAction[];
  /** How it came: a v2 socket, a legacy socket or the REST fallback. */
  via: 'v2' | 'legacy' | 'rest';
  /** True when a repeated id was answered from storage (v2). */
  cached: boolean;
  /** The model that answered, when the server says. */
  model?: string;
  /** `anthropic`, `openai`, `builtin` or `cache`, when the server says. */
  source?: string;
  /** Server-side time to the answer, when the server says. */
  latencyMs?: number;
  /** Time to the first token, when a model streamed. */
  firstTokenMs?: number | null;
  /** The conversation, when the server says (legacy, REST). */
  sessionId?: string;
}

/** A server error not tied to one chat (v2 `error` without `id`, legacy `error` with no chat pending). */
export interface ServerErrorEvent {
  code: ErrorCode | string;
  message: string;
  retryable: boolean;
}

/** The events of {@link PamClient} and their payloads. */
export interface PamEvents {
  /** Any state change. */
  state: { state: ConnectionState };
  /** A socket is being opened (`attempt` 0 is the first since the last live socket). */
  connecting: { attempt: number };
  /** The server said `welcome` (v2) or `connection` (legacy): the socket is usable. */
  live: { connectionId: string; streamId?: string; epoch?: string; dialect: Dialect };
  /** The socket closed and another is opened after `delayMs`. */
  reconnecting: { delayMs: number; attempt: number; code: number; reason: string };
  /** A v2 stream resumed: `replayed` missed frames were delivered. */
  resumed: { streamId: string; replayed: number };
  /** A v2 resume failed; chats still in flight were re-sent with the same ids. */
  resume_failed: { streamId: string; reason: ResumeFailure; resent: number };
  /**
   * A v2 chat goes out again with its id: after a retryable `error` (`code`; in `delayMs`,
   * re-send `attempt` of `chatRetries`), or at once because its answer deadline passed (`deadline`).
   */
  chat_retry: { id: string; reason: 'error' | 'deadline'; code?: string; attempt: number; delayMs: number };
  /** The client gave up (or `close()` was called): `code` and a plain-words `reason`. */
  stopped: { code: number; reason: string };
  /** Sockets kept failing before any `welcome`: chats now go over REST (sockets keep being retried). */
  rest_fallback: { failedAttempts: number };
  /** The browser went offline / came back. */
  offline: Record<string, never>;
  online: Record<string, never>;
  /** A timer or alarm fired (pushed by the server; sent again on connect until dismissed). */
  timer_expired: TimerExpired;
  /** A proactive alert (e.g. a budget alert). */
  proactive_alert: ProactiveAlert;
  /** A server error not tied to a chat. */
  server_error: ServerErrorEvent;
}

/** Internal: resolved options. */
export interface ResolvedOptions {
  wsBase: string;
  httpBase: string;
  backoff: Backoff;
}
