import type { PamClient } from './client.js';
/** @internal Handles one parsed legacy server frame from socket generation `gen`. */
export declare function onLegacyFrame(client: PamClient, gen: number, frame: Record<string, unknown>): void;
/** @internal Pings every `everyMs`; the third unanswered ping drops the socket (as today's app). */
export declare function startLegacyHeartbeat(client: PamClient, gen: number, everyMs: number): void;
