//! pam-client: the PAM gateway's TypeScript SDK (v2 with resume and streaming, legacy mode,
//! REST fallback, conversation history). No runtime dependencies.
export { PamClient } from './client.js';
export { ChatHandle } from './chat.js';
export { PamError } from './errors.js';
export { backoff, ceilingMs, delayMs, retryDelayMs } from './backoff.js';
export { classifyClose, closeCodeRow, describeClose } from './close-codes.js';
export { CLOSE_CODES } from './generated/close-codes.js';
export { systemClock } from './clock.js';
