//! pam-client: the PAM gateway's TypeScript SDK (v2 with resume and streaming, legacy mode,
//! REST fallback, conversation history). No runtime dependencies.

export { PamClient } from './client.js';
export { ChatHandle, type ChatStatus } from './chat.js';
export { PamError, type ClientErrorCode } from './errors.js';
export { backoff, ceilingMs, delayMs, retryDelayMs } from './backoff.js';
export { classifyClose, closeCodeRow, describeClose, type CloseClass } from './close-codes.js';
export { CLOSE_CODES, type CloseCodeRow, type ReconnectAdvice } from './generated/close-codes.js';
export { systemClock, type TimerHandle } from './clock.js';
export type { RestChatResponse } from './rest.js';
export type { ConversationSummary, ConversationsOptions, HistoryMessage, HistoryOptions, HistoryPage } from './history.js';
export type * from './types.js';
