import type { PamClient } from './client.js';
/** @internal Handles one parsed v2 server frame from socket generation `gen`. */
export declare function onV2Frame(client: PamClient, gen: number, raw: Record<string, unknown>): void;
